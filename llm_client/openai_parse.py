"""Turn OpenAI-format JSON bodies into Completions, and name what is wrong with a body that cannot be used.

Bodies arrive as raw bytes (the client asks the openai package for `cast_to=bytes`) and are decoded once,
here, into the compact structures callers read: building the openai package's pydantic models, or rows for
tokens nobody reads, costs more CPU than the rest of a request at high volume.

An echoed completion (`/v1/completions` with echo and logprobs) carries the top logprobs of every prompt
token, and those dicts are nearly all of its size and of the time a JSON parser spends on it. The all-at-once
simulator reads one token in ten (the activation slots), so `parse_prompt_rows` decodes the body with msgspec
against a typed shape that keeps each top_logprobs element as raw text, and decodes only the rows asked for:
on the simulator's 1.7 MB bodies, about a fifth of json.loads's time.
"""

from __future__ import annotations

import json
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from typing import Any

import msgspec

from llm_client.base import Completion, TokenLogprobs, Usage
from llm_client.top_rows import decode_rows, join_rows


class Garbage(Exception):
    """The endpoint answered 200 with something unusable (not JSON, no choices, no text)."""


class ChoicesMismatch(Exception):
    """A request with a list of prompts came back with another number of choices: the endpoint did not take
    the list as a list of prompts. Not retried; the caller sends the prompts one by one instead."""


def load_body(raw: bytes | str) -> Any:
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise Garbage(f"body is not JSON: {raw[:120]!r}") from None


def _usage(response: dict) -> tuple[Usage, bool]:
    usage = response.get("usage")
    if not isinstance(usage, dict):
        return Usage(), False
    return Usage(prompt_tokens=usage.get("prompt_tokens") or 0,
                 completion_tokens=usage.get("completion_tokens") or 0), True


def _choices(response: Any) -> list[dict]:
    if isinstance(response, str):  # a JSON string, or text from a caller that decoded the body itself
        raise Garbage(f"body is not JSON: {response[:120]!r}")
    choices = response.get("choices") if isinstance(response, dict) else None
    if not choices or not isinstance(choices, list) or not all(isinstance(c, dict) for c in choices):
        raise Garbage("no choices in the response")
    return choices


def _first_choice(response: Any) -> dict:
    return _choices(response)[0]


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


def _legacy_arrays(lp: dict, where: str) -> tuple[list, list, Any, list | None]:
    """tokens, token_logprobs, top_logprobs, text_offset; lengths checked."""
    tokens, values = lp["tokens"], lp.get("token_logprobs") or []
    tops = lp.get("top_logprobs")
    offsets = lp.get("text_offset")
    n_tops = len(tops) if isinstance(tops, list) else len(tokens) if tops is None else -1
    if (not isinstance(tokens, list) or len(values) != len(tokens) or n_tops != len(tokens)
            or (offsets is not None and len(offsets) != len(tokens))):
        raise Garbage(f"{where}: logprobs arrays disagree in length ({len(tokens)} tokens, {len(values)} logprobs)")
    return tokens, values, tops, offsets


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
        tokens, values, tops, offsets = _legacy_arrays(lp, "choices[0]")
        tops = tops if tops is not None else [None] * len(tokens)
        # The decoded top dicts are ours alone: rows take them as they are.
        rows = [TokenLogprobs(token=t, logprob=v, top=top or {}) for t, v, top in zip(tokens, values, tops)]
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


# --- echoed prompts, only the rows asked for ------------------------------------------------------------
# msgspec decodes the body against these shapes in C and leaves each top_logprobs element as raw JSON text
# (msgspec.Raw): those dicts are nearly all of an echoed body, and only the slot rows are ever decoded. Unknown
# keys are ignored, as a server may send more than this.


class _EchoLogprobs(msgspec.Struct):
    tokens: list[str] | None = None
    token_logprobs: list[Any] | None = None
    top_logprobs: list[msgspec.Raw] | None = None
    text_offset: list[int] | None = None


class _EchoChoice(msgspec.Struct):
    text: Any = None
    index: Any = None
    logprobs: _EchoLogprobs | None = None


class _EchoUsage(msgspec.Struct):
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


class _EchoBody(msgspec.Struct):
    choices: list[_EchoChoice] | None = None
    usage: _EchoUsage | None = None


_ECHO_BODY = msgspec.json.Decoder(_EchoBody)


def _decode_echo(raw: bytes | str) -> _EchoBody:
    try:
        try:
            return _ECHO_BODY.decode(raw)
        except msgspec.ValidationError:
            raise
        except msgspec.DecodeError:
            # Not strict JSON: some servers write -Infinity or NaN for a logprob. Python's parser takes those;
            # written back strictly they are nulls (no logprob), which the rows read as such.
            return _ECHO_BODY.decode(msgspec.json.encode(load_body(raw)))
    except msgspec.ValidationError as exc:
        raise Garbage(f"malformed completion logprobs ({exc})") from None


def _top_rows(tops: list[msgspec.Raw], rows: list[int], where: str) -> tuple[list[dict[str, float]], bytes]:
    """The top-alternative dicts of `rows`, decoded in one call, and the JSON text they were decoded from."""
    joined = join_rows([tops[j] for j in rows])
    try:
        return decode_rows(joined), joined
    except msgspec.DecodeError as exc:
        raise Garbage(f"{where}: malformed completion logprobs ({exc})") from None


def _logprob(value: Any, where: str) -> float | None:
    if value is None or (isinstance(value, (int, float)) and not isinstance(value, bool)):
        return value
    raise Garbage(f"{where}: malformed completion logprobs (token logprob {value!r} is not a number)")


def _prompt_choice(choice: _EchoChoice, where: str, prompt: str, wanted: Sequence[int]) -> tuple[Completion, bool]:
    """The rows of `choice` that hold the char offsets `wanted`; whether it had logprobs at all."""
    text = choice.text
    if not isinstance(text, str):
        raise Garbage(f"{where} has no text")
    if text.startswith(prompt):
        text = text[len(prompt):]
    lp = choice.logprobs
    if lp is None or lp.tokens is None:
        # The endpoint ignored echo/logprobs: no rows, and the caller says what that means for it.
        return Completion(text=text, usage=Usage()), False
    tokens, offsets = lp.tokens, lp.text_offset
    n = len(tokens)
    if offsets is None:
        raise Garbage("echo asked but the response has no text_offset to split prompt from output")
    values, tops = lp.token_logprobs, lp.top_logprobs
    if len(offsets) != n or values is None or len(values) != n or (tops is not None and len(tops) != n):
        raise Garbage(f"{where}: logprobs arrays disagree in length ({n} tokens, {len(offsets)} offsets)")
    # Offsets ascend (a lookup by offset relies on it): the prompt's tokens are those before its length.
    n_prompt = bisect_left(offsets, len(prompt))
    keep = sorted({j for j in (bisect_right(offsets, s, 0, n_prompt) - 1 for s in wanted) if j >= 0})
    read = keep + list(range(n_prompt, n))
    top_rows, tops_json = _top_rows(tops, read, where) if tops is not None else ([{} for _ in read], None)
    rows = [TokenLogprobs(tokens[j], _logprob(values[j], where), top) for j, top in zip(read, top_rows)]
    completion = Completion(text=text, usage=Usage(n_prompt, n - n_prompt), prompt_logprobs=rows[:len(keep)],
                            text_offsets=[offsets[j] for j in keep], generated_logprobs=rows[len(keep):],
                            tops_json=tops_json)
    return completion, True


def parse_prompt_rows(raw: bytes | str, prompts: Sequence[str],
                      rows_at: Sequence[Sequence[int]]) -> tuple[list[Completion], Usage, bool]:
    """Completions of an echo request with one prompt or a list of them (vLLM's legacy format, one choice
    per prompt in `index` order), each keeping only the prompt rows that hold its `rows_at` char offsets.
    Returns them, the request's usage, and whether the endpoint reported usage. A choice's own usage counts
    its echoed tokens (a single prompt's is the request's)."""
    body = _decode_echo(raw)
    choices = body.choices
    if not choices:
        raise Garbage("no choices in the response")
    if len(prompts) > 1:
        if len(choices) != len(prompts):
            raise ChoicesMismatch(f"{len(choices)} choice(s) for a list of {len(prompts)} prompts")
        index = [c.index for c in choices]
        if sorted(i for i in index if isinstance(i, int)) == list(range(len(prompts))):
            by_index = {i: c for i, c in zip(index, choices)}
            choices = [by_index[i] for i in range(len(prompts))]
    out = []
    with_rows = True
    for i, (prompt, wanted) in enumerate(zip(prompts, rows_at)):
        completion, has_rows = _prompt_choice(choices[i], f"choices[{i}]", prompt, wanted)
        out.append(completion)
        with_rows = with_rows and has_rows
    reported = body.usage is not None
    usage = Usage(prompt_tokens=body.usage.prompt_tokens or 0,
                  completion_tokens=body.usage.completion_tokens or 0) if body.usage is not None else Usage()
    if len(out) == 1 or not with_rows:
        for completion in out:  # one prompt: the request's usage is its own; no rows: nothing to split by
            completion.usage = Usage(usage.prompt_tokens // len(out), usage.completion_tokens // len(out))
    return out, usage, reported
