"""JSON simulator for chat-only endpoints: the model returns `[[token, value], ...]` for a record; the
reply is validated strictly (same count, same token text, values in 0..10) and a mismatch is a failed
simulation with the reason. Where the endpoint returns top logprobs, each value's expected value comes from
the alternatives at that value's token; otherwise the stated value is used."""

from __future__ import annotations

import asyncio
import bisect
import json
import re
from collections.abc import Sequence

from activations.errors import UserError
from llm_client import Completion, LLMClient, LLMError
from simulator.base import MAX_VALUE, SequenceSimulation, SimulationError, Simulator, check_inputs, expected_value
from simulator.prompts import INSTRUCTIONS
from simulator.values import distribution_from_top, value_probs

_PAIR = re.compile(r'\[\s*("(?:[^"\\]|\\.)*")\s*,\s*(-?\d+(?:\.\d+)?)\s*\]')
_FENCE = re.compile(r"^```(?:json)?\s*|\s*```$")


def json_prompt(explanation: str, tokens: Sequence[str]) -> list[dict]:
    one_line = " ".join(explanation.split())
    return [{"role": "user", "content": (
        f"{INSTRUCTIONS}\nExplanation of the neuron's behavior: the main thing this neuron does is find {one_line}\n\n"
        f"Tokens (a JSON list):\n{json.dumps(list(tokens), ensure_ascii=False)}\n\n"
        f"Reply with only a JSON list with one [token, activation] pair per token, in the same order, each token "
        f"copied exactly, each activation an integer from 0 to {MAX_VALUE}. Example: [[\"The\", 0], [\" cat\", 7]]")}]


def parse_reply(text: str, tokens: Sequence[str], where: str) -> tuple[list[float], list[int] | None]:
    """Stated values per token, and the char offset of each value in `text` (None when they cannot be
    located, e.g. unusual formatting; then no logprobs are read)."""
    body = _FENCE.sub("", text.strip())
    start, end = body.find("["), body.rfind("]")
    try:
        data = json.loads(body[start:end + 1]) if start >= 0 else None
    except json.JSONDecodeError as exc:
        raise SimulationError(f"{where}: the reply is not valid JSON ({exc.msg} at char {exc.pos}): "
                              f"{text[:200]!r}") from None
    if not isinstance(data, list):
        raise SimulationError(f"{where}: the reply has no JSON list of [token, value] pairs: {text[:200]!r}")
    if len(data) != len(tokens):
        raise SimulationError(f"{where}: the reply has {len(data)} pairs for {len(tokens)} tokens")
    values: list[float] = []
    for i, (item, token) in enumerate(zip(data, tokens)):
        if not (isinstance(item, list) and len(item) == 2 and isinstance(item[0], str)
                and isinstance(item[1], (int, float)) and not isinstance(item[1], bool)):
            raise SimulationError(f"{where}, pair {i}: expected [token, number], got {item!r}")
        # Leading/trailing whitespace is invisible to many chat models; any other difference is a mismatch.
        if item[0].strip() != token.strip():
            raise SimulationError(f"{where}, pair {i}: token {item[0]!r} does not match the record's token {token!r}")
        if not 0 <= item[1] <= MAX_VALUE:
            raise SimulationError(f"{where}, pair {i} ({token!r}): value {item[1]} is outside 0..{MAX_VALUE}")
        values.append(float(item[1]))
    offset = text.find(body[start:end + 1])
    spans = [offset + m.start(2) for m in _PAIR.finditer(body[start:end + 1])]
    return values, spans if len(spans) == len(tokens) and offset >= 0 else None


def logprob_values(completion: Completion, stated: list[float], spans: list[int] | None, where: str
                   ) -> tuple[list[float], list[list[float]] | None]:
    """Expected values from the top alternatives at each value's first token, where they include a value;
    the stated value elsewhere. Distributions only when every token has one."""
    rows = completion.generated_logprobs
    if not rows or spans is None or "".join(r.token for r in rows) != completion.text:
        return stated, None
    starts, pos = [], 0
    for r in rows:
        starts.append(pos)
        pos += len(r.token)
    out, dists = [], []
    for n, (value, c) in enumerate(zip(stated, spans)):
        top = rows[bisect.bisect_right(starts, c) - 1].top
        if any(value_probs(top)):
            dist = distribution_from_top(top, f"{where}, token {n}")
            out.append(expected_value(dist))
            dists.append(dist)
        else:
            out.append(value)
    return out, dists if len(dists) == len(stated) else None


class JsonSimulator(Simulator):
    def __init__(self, client: LLMClient, *, top_k: int = 10) -> None:
        if not client.capabilities.chat:
            raise UserError(f"simulator json:{client.spec}: this LLM has no chat interface (no chat template); "
                             f"use logprob:{client.spec}")
        self.client = client
        self.spec = f"json:{client.spec}"
        self.top_k = top_k if client.capabilities.top_logprobs else None

    async def _one(self, explanation: str, tokens: Sequence[str], index: int) -> SequenceSimulation:
        where = f"record {index}"
        try:
            completion = await self.client.chat(json_prompt(explanation, tokens), max_tokens=16 * len(tokens) + 32,
                                                top_logprobs=self.top_k)
        except LLMError as exc:
            raise SimulationError(f"{where}: the LLM call failed: {exc.reason}") from exc
        stated, spans = parse_reply(completion.text, tokens, where)
        values, dists = logprob_values(completion, stated, spans, where)
        return SequenceSimulation(list(tokens), values, dists)

    async def simulate(self, explanation: str, records: Sequence[Sequence[str]]) -> list[SequenceSimulation]:
        check_inputs(explanation, records)
        return list(await asyncio.gather(*(self._one(explanation, tokens, i) for i, tokens in enumerate(records))))
