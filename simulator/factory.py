"""Build a simulator from its spec (docs/architecture.md): `embedding[:<model>]`, `logprob:<llm spec>`,
`json:<llm spec>`, where an llm spec is `local:<name>` or `openai:<model>`."""

from __future__ import annotations

from activations.errors import UserError
from simulator.base import Simulator
from simulator.prompts import PROMPT_VERSION

SPEC_HELP = ("use embedding[:<sentence-transformers model>], logprob:<llm spec> or json:<llm spec>, where an llm spec "
             "is local:<gemma-3-270m | smollm2-135m | HF id | path> or openai:<model>")


def prompt_version(spec: str) -> int | None:
    """The version of the all-at-once prompt a `logprob:` simulator fills in (simulator.prompts.PROMPT_VERSION);
    None for the others, whose prompts it is not (embedding has none, json: asks for a JSON list)."""
    return PROMPT_VERSION if spec.strip().startswith("logprob:") else None


def make_simulator(spec: str, *, base_url: str | None = None, device: str = "auto", concurrency: int = 8,
                   cache_path: str | None = None, batch_size: int = 16, top_k: int = 20) -> Simulator:
    """A ready simulator. Raises UserError naming the problem for a bad spec or an LLM that lacks the
    capability the simulator needs (prompt logprobs for logprob:, chat for json:)."""
    kind, _, rest = spec.strip().partition(":")
    if kind == "embedding":
        from simulator.embedding import EmbeddingSimulator

        return EmbeddingSimulator(rest or None, device=device)
    if kind not in ("logprob", "json"):
        raise UserError(f"unknown simulator spec {spec!r}: {SPEC_HELP}")
    backend, _, model = rest.partition(":")
    if backend not in ("local", "openai") or not model:
        raise UserError(f"simulator spec {spec!r}: {kind}: needs an llm spec after it; {SPEC_HELP}")
    if kind == "logprob" and backend == "local":
        # In-process: the simulator drives the model itself to reuse the prefix KV cache across records.
        from llm_client.local_models import load_model
        from simulator.logprob_local import LocalLogprobSimulator

        return LocalLogprobSimulator(load_model(model, device=device), batch_size=batch_size)
    from llm_client import make_client

    client = make_client(rest, base_url=base_url, concurrency=concurrency, cache_path=cache_path, device=device)
    if kind == "logprob":
        from simulator.logprob_remote import RemoteLogprobSimulator

        return RemoteLogprobSimulator(client, top_k=top_k)
    from simulator.json_sim import JsonSimulator

    return JsonSimulator(client, top_k=min(top_k, 20))
