"""Turn OpenAI-format JSON bodies into Completions, and name what is wrong with a body that cannot be used.

Bodies arrive as plain dicts (the client asks the openai package for `cast_to=object`): building its
pydantic models for every response costs more CPU than the rest of a request at high volume.
"""

from __future__ import annotations

from typing import Any

from llm_client.base import Completion, TokenLogprobs, Usage


class Garbage(Exception):
    """The endpoint answered 200 with something unusable (not JSON, no choices, no text)."""


def _usage(response: dict) -> tuple[Usage, bool]:
    usage = response.get("usage")
    if not isinstance(usage, dict):
        return Usage(), False
    return Usage(prompt_tokens=usage.get("prompt_tokens") or 0,
                 completion_tokens=usage.get("completion_tokens") or 0), True


def _first_choice(response: Any) -> dict:
    if isinstance(response, str):  # the openai client hands back non-JSON bodies as text
        raise Garbage(f"body is not JSON: {response[:120]!r}")
    choices = response.get("choices") if isinstance(response, dict) else None
    if not choices or not isinstance(choices[0], dict):
        raise Garbage("no choices in the response")
    return choices[0]


def parse_chat(response: Any) -> tuple[Completion, bool]:
    choice = _first_choice(response)
    text = (choice.get("message") or {}).get("content")
    if not isinstance(text, str):
        raise Garbage("choices[0].message has no text content")
    generated = None
    content = (choice.get("logprobs") or {}).get("content")
    if content is not None:
        try:
            generated = [
                TokenLogprobs(token=t["token"], logprob=t["logprob"],
                              top={a["token"]: a["logprob"] for a in (t.get("top_logprobs") or [])})
                for t in content
            ]
        except (KeyError, TypeError) as exc:
            raise Garbage(f"malformed logprobs.content ({exc!r})") from None
    usage, reported = _usage(response)
    return Completion(text=text, usage=usage, generated_logprobs=generated), reported


def parse_completion(response: Any, prompt: str, *, echo: bool) -> tuple[Completion, bool]:
    """vLLM's legacy format: choices[0].logprobs = {tokens, token_logprobs, top_logprobs, text_offset}.
    With echo the prompt's tokens come first; a token is the prompt's when its offset is inside the prompt."""
    choice = _first_choice(response)
    text = choice.get("text")
    if not isinstance(text, str):
        raise Garbage("choices[0] has no text")
    if echo and text.startswith(prompt):
        text = text[len(prompt):]
    prompt_lp = generated_lp = offsets = None
    lp = choice.get("logprobs") or {}
    if lp.get("tokens") is not None:
        tokens, values = lp["tokens"], lp.get("token_logprobs") or []
        tops = lp.get("top_logprobs") or [None] * len(tokens)
        offsets = lp.get("text_offset")
        if (len(values) != len(tokens) or len(tops) != len(tokens)
                or (offsets is not None and len(offsets) != len(tokens))):
            raise Garbage(f"logprobs arrays disagree in length ({len(tokens)} tokens, {len(values)} logprobs)")
        rows = [TokenLogprobs(token=t, logprob=v, top=dict(top or {})) for t, v, top in zip(tokens, values, tops)]
        if echo:
            if offsets is None:
                raise Garbage("echo asked but the response has no text_offset to split prompt from output")
            n_prompt = sum(1 for o in offsets if o < len(prompt))
            prompt_lp, generated_lp = rows[:n_prompt], rows[n_prompt:]
        else:
            generated_lp = rows
    usage, reported = _usage(response)
    completion = Completion(text=text, usage=usage, prompt_logprobs=prompt_lp, text_offsets=offsets,
                            generated_logprobs=generated_lp)
    return completion, reported
