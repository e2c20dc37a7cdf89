"""A client that sends nothing: it answers every call with an empty completion and records the prompt
size, so a batch can be walked end to end to estimate requests, tokens and cost before spending."""

from __future__ import annotations

from llm_client.accounting import estimate_cost
from llm_client.base import Completion, LLMClient, Usage, messages_to_prompt


class RecordingClient:
    """Wraps a real client's spec, model, capabilities and tokenizer; `requests` and `prompt_tokens` count
    what would have been sent. Closing it closes the real client."""

    def __init__(self, real: LLMClient) -> None:
        self.spec = real.spec
        self.model = real.model
        self.capabilities = real.capabilities
        self._real = real
        self.requests = 0
        self.prompt_tokens = 0

    def count_tokens(self, text: str) -> int:
        return self._real.count_tokens(text)

    async def chat(self, messages: list[dict], **_: object) -> Completion:
        return self._record(messages_to_prompt(messages))

    async def complete(self, prompt: str, **_: object) -> Completion:
        return self._record(prompt)

    def _record(self, prompt: str) -> Completion:
        self.requests += 1
        self.prompt_tokens += self.count_tokens(prompt)
        return Completion(text="", usage=Usage())

    def estimate(self, completion_tokens_per_request: int) -> dict:
        completion = self.requests * completion_tokens_per_request
        return {"requests": self.requests, "prompt_tokens": self.prompt_tokens, "completion_tokens_max": completion,
                "cost_usd_max": estimate_cost(self.model, self.prompt_tokens, completion)}

    def stats(self) -> dict:
        return {"requests": self.requests, "prompt_tokens": self.prompt_tokens}

    async def aclose(self) -> None:
        await self._real.aclose()
