"""The one interface every LLM backend speaks: request results, usage, capability flags, the final error."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

# Tokens an echo request (the prompt's own logprobs) asks to generate: one, not zero, since vLLM reads
# max_tokens=0 as "echo only" but llama.cpp's server reads it as "no limit" and transformers serve refuses it.
# The generated token's row is told apart from the prompt's rows by its text offset.
ECHO_MAX_TOKENS = 1


@dataclass
class Capabilities:
    """What a backend can do, so callers pick a method or fail with a clear message up front."""

    chat: bool  # chat() renders messages with a real chat template / chat endpoint
    prompt_logprobs: bool  # complete(echo=True, logprobs=k) returns per-prompt-token logprobs
    top_logprobs: bool  # generated tokens come with their top alternatives


@dataclass
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float | None = None  # None when the price is unknown; never a made-up 0


@dataclass
class TokenLogprobs:
    """One token position."""

    token: str
    logprob: float | None  # None for the first prompt token (nothing to condition on)
    top: dict[str, float] = field(default_factory=dict)  # top alternatives: token text -> logprob


@dataclass
class Completion:
    text: str  # generated text ("" when max_tokens=0)
    usage: Usage
    # per prompt token, with echo=True and logprobs=k (from PromptRowsClient.prompt_rows: only the rows asked for)
    prompt_logprobs: list[TokenLogprobs] | None = None
    text_offsets: list[int] | None = None  # char offset of each prompt(+generated) token, as vLLM returns
    generated_logprobs: list[TokenLogprobs] | None = None  # per generated token, when top_logprobs asked
    cached: bool = False
    attempts: int = 1  # 1 + retries
    # The top alternatives of prompt_logprobs then generated_logprobs, as the JSON array they were decoded from
    # (top_rows.join_rows; set by prompt_rows): the response cache stores this text rather than the dicts.
    tops_json: bytes | None = field(default=None, compare=False, repr=False)


class SpecError(ValueError):
    """An LLM spec or base URL is unusable (the user's input); the message says what to pass instead. The CLI
    shows it as one line, like the user errors of the layers above."""


class LLMError(Exception):
    """The final failure of a call, after retries. `reason` says what went wrong; `retryable` whether a
    later rerun may succeed (rate limits, outages) or not (bad request, auth); `endpoint` whether the
    endpoint is at fault rather than this request (unreachable, timed out, auth, unknown model, no key):
    every other request to it would fail the same way until it is fixed."""

    def __init__(self, reason: str, *, retryable: bool, attempts: int = 1, endpoint: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable
        self.attempts = attempts
        self.endpoint = endpoint


@runtime_checkable
class LLMClient(Protocol):
    @property
    def spec(self) -> str:
        """e.g. "openai:gpt-4o-mini", "local:gemma-3-270m"."""
        ...

    model: str  # the model name within its backend (prices are looked up by it)
    capabilities: Capabilities

    async def chat(self, messages: list[dict], *, max_tokens: int = 256, temperature: float = 0.0,
                   top_logprobs: int | None = None, stop: list[str] | None = None,
                   seed: int | None = None) -> Completion: ...

    async def complete(self, prompt: str, *, max_tokens: int = 256, temperature: float = 0.0,
                       echo: bool = False, logprobs: int | None = None, stop: list[str] | None = None,
                       seed: int | None = None) -> Completion: ...

    def count_tokens(self, text: str) -> int:
        """Prompt size in the backend's tokens: exact for local models, a conservative estimate remotely."""
        ...

    def stats(self) -> dict: ...

    async def aclose(self) -> None: ...


@runtime_checkable
class PromptRowsClient(Protocol):
    """A client that echoes prompts with their top logprobs and keeps only the prompt tokens a caller reads
    (the all-at-once simulator reads the token at each activation slot): parsing, the cache and memory then
    cost per kept row, not per prompt token. Several prompts may travel in one request."""

    async def prompt_rows(self, prompts: Sequence[str], *, top_logprobs: int,
                          rows_at: Sequence[Sequence[int]]) -> list[Completion]:
        """One Completion per prompt, in order. Its `prompt_logprobs` holds, for each distinct prompt token
        that contains one of `rows_at[i]`'s char offsets, that token's row (in prompt order), and
        `text_offsets` the char offset of each kept row: exactly the rows a lookup by offset finds in the full
        echo. Nothing is generated. Raises LLMError when the call fails."""
        ...


@runtime_checkable
class ChoiceSlotsClient(Protocol):
    """A client that can answer a list of choices slot by slot from its true next-token distribution (a local
    model): the answer is teacher-forced, so every slot gets a probability for each choice, and a slot never
    holds anything but a choice."""

    async def choice_slots(self, messages: list[dict], *, choices: Sequence[str], n_slots: int, opener: str = "[",
                           separator: str = ",", closer: str = "]") -> Completion:
        """After the rendered prompt and `opener`, read the next-token logprob of each choice (each must be one
        token), feed the most likely one and `separator`, `n_slots` times. The Completion's text is the
        answer written out (`[1,0,1]`); its `generated_logprobs` holds one row per slot: the chosen choice, its
        logprob, and `top` = every choice's logprob. Raises LLMError when a choice is not a single token."""
        ...


def messages_to_prompt(messages: list[dict]) -> str:
    """Plain rendering of chat messages, for models without a chat template and completion-only callers."""
    return "\n\n".join(str(m["content"]) for m in messages)


def check_messages(messages: list[dict]) -> None:
    if not messages:
        raise ValueError("chat() needs at least one message")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or "role" not in m or "content" not in m:
            raise ValueError(f"message {i} must be a dict with 'role' and 'content', got {m!r}")
