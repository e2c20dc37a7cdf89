"""One async interface to LLMs: any OpenAI-compatible endpoint (`openai:<model>`) or an in-process
transformers model (`local:<name>`). See base.py for the types every backend returns."""

from __future__ import annotations

from llm_client.base import (
    ECHO_MAX_TOKENS,
    Capabilities,
    ChoiceSlotsClient,
    Completion,
    LLMClient,
    LLMError,
    PromptRowsClient,
    SpecError,
    TokenLogprobs,
    Usage,
    messages_to_prompt,
)

__all__ = ["ECHO_MAX_TOKENS", "Capabilities", "ChoiceSlotsClient", "Completion", "LLMClient", "LLMError",
           "PromptRowsClient", "SpecError", "TokenLogprobs", "Usage", "make_client", "messages_to_prompt"]


def make_client(spec: str, *, base_url: str | None = None, concurrency: int = 8, requests_per_minute: int | None = None,
                tokens_per_minute: int | None = None, timeout_s: float = 60.0, max_retries: int = 6,
                cache_path: str | None = None, device: str = "auto", backoff_s: float = 0.5) -> LLMClient:
    """Build a client from a spec: `openai:<model>` or `local:<embedded name | HF id | path>`."""
    kind, sep, model = spec.partition(":")
    if not sep or not model:
        raise SpecError(f"LLM spec {spec!r} must look like openai:<model> or local:<name>")
    if kind == "openai":
        from llm_client.openai_backend import OpenAIClient

        return OpenAIClient(model, base_url=base_url, concurrency=concurrency, requests_per_minute=requests_per_minute,
                            tokens_per_minute=tokens_per_minute, timeout_s=timeout_s, max_retries=max_retries,
                            cache_path=cache_path, backoff_s=backoff_s)
    if kind == "local":
        from llm_client.local_backend import LocalClient  # imports torch: only when asked for

        return LocalClient(model, device=device, cache_path=cache_path)
    raise SpecError(f"LLM spec {spec!r}: unknown backend {kind!r}; use openai:<model> or local:<name>")
