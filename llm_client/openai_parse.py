"""Turn OpenAI-format JSON bodies into Completions, and name what is wrong with a body that cannot be used.

Bodies arrive as raw bytes (the client asks the openai package for `cast_to=bytes`) and are decoded once,
here, into the compact structures callers read: building the openai package's pydantic models, or rows for
tokens nobody reads, costs more CPU than the rest of a request at high volume.

An echoed completion (`/v1/completions` with echo and logprobs) carries the top logprobs of every prompt
token, and those dicts are nearly all of its size and of the time json.loads spends on it. The all-at-once
simulator reads one token in ten (the activation slots), so `parse_prompt_rows` cuts each `top_logprobs`
array into its elements without parsing them (a scan for the closing braces, checked against the token
count: a key that holds a brace makes the counts disagree, and the body is then parsed whole) and each
`token_logprobs` array at its commas, parses the rest of the body, and decodes only the elements of the
rows asked for: about a seventh of json.loads's time on the simulator's bodies.
"""

from __future__ import annotations

import json
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Sequence
from typing import Any

from llm_client.base import Completion, TokenLogprobs, Usage


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

_WS = " \t\r\n"


class _Whole(Exception):
    """The body is not shaped as the cutting expects: parse it whole instead."""


class _Objects:
    """A cut-out top_logprobs array: the text between the braces of each element ("" for null, which reads
    as {} like an empty object), decoded on demand."""

    __slots__ = ("contents", "n")

    def __init__(self, contents: list[str]) -> None:
        self.contents, self.n = contents, len(contents)

    def get(self, rows: list[int]) -> list[dict]:
        """The elements of `rows`, decoded in one json.loads."""
        contents = self.contents
        try:
            values = json.loads("[{" + "},{".join([contents[j] for j in rows]) + "}]") if rows else []
        except json.JSONDecodeError:
            raise _Whole from None
        if len(values) != len(rows) or not all(isinstance(v, dict) for v in values):
            raise _Whole
        return values


class _Numbers:
    """A cut-out token_logprobs array (numbers and nulls only): the text of each element."""

    __slots__ = ("n", "parts")

    def __init__(self, inner: str) -> None:
        self.parts = inner.split(",") if inner.strip() else []
        self.n = len(self.parts)

    def get(self, rows: list[int]) -> list[float | None]:
        out: list[float | None] = []
        for j in rows:
            part = self.parts[j].strip()
            try:
                out.append(None if part == "null" else float(part))
            except ValueError:
                raise _Whole from None
        return out


def _scan_objects(text: str, i: int) -> tuple[list[str], int]:
    """The contents of the elements of the array whose '[' is just before `i` (the text between an object's
    braces; "" for null), and the index after its ']'. Each element is null or an object of string keys and
    number values; an object ends at the first '}' followed by ',' or ']'. A '}' inside a key can only split
    an element in two, never merge two, so when the count equals the token count no key held one (and a '}]'
    inside a key ends the array early, which the caller's checks of what follows the array, of the whole
    skeleton's syntax and of the count turn into _Whole)."""
    contents: list[str] = []
    append = contents.append
    find = text.find
    while True:
        c = text[i]
        if c == "{":
            j = find("}", i)
            while True:
                if j < 0:
                    raise _Whole
                k = j + 1
                d = text[k]
                while d in _WS:
                    k += 1
                    d = text[k]
                if d == "," or d == "]":
                    break
                j = find("}", k)  # that '}' was inside a key
            append(text[i + 1:j])
            if d == "]":
                return contents, k + 1
            i = k + 1
        elif c in _WS:
            i += 1
        elif c == "n" and text.startswith("null", i):
            append("")
            k = i + 4
            d = text[k]
            while d in _WS:
                k += 1
                d = text[k]
            if d == "]":
                return contents, k + 1
            if d != ",":
                raise _Whole
            i = k + 1
        elif c == "]" and not contents:
            return contents, i + 1
        else:
            raise _Whole


def _next_array(text: str, pos: int) -> tuple[int, str]:
    """The index just after the '[' of the next `"top_logprobs": [` or `"token_logprobs": [` at or after
    `pos`, and which of the two it is; (-1, "") when there is none. Inside a JSON string every quote is
    escaped, so a name between bare quotes and followed by ':' is a key (a backslash before the first quote
    marks a string that merely ends with the name). A key whose value is not an array, say a top dict's
    alternative token spelt "top_logprobs", has a number after the colon and is passed over."""
    find = text.find
    while (at := find('_logprobs"', pos)) >= 0:
        pos = at + 10
        if text.startswith('"top', at - 4):
            kind, first = "top", at - 4
        elif text.startswith('"token', at - 6):
            kind, first = "token", at - 6
        else:
            continue
        if first and text[first - 1] == "\\":
            continue
        i = pos
        while text[i] in _WS:
            i += 1
        if text[i] != ":":
            continue
        i += 1
        while text[i] in _WS:
            i += 1
        if text[i] == "[":
            return i + 1, kind
    return -1, ""


def _skeleton(text: str) -> tuple[Any, list[_Objects | _Numbers]]:
    """The body parsed with each top_logprobs and token_logprobs array cut out: in their place stands the
    array's number in the returned list (a value those keys never have), and only the rows a caller reads
    are ever decoded. Those arrays are nearly all of an echoed body."""
    pieces: list[str] = []
    cut: list[_Objects | _Numbers] = []
    pos = 0
    try:
        while True:
            start, kind = _next_array(text, pos)
            if start < 0:
                break
            array: _Objects | _Numbers
            if kind == "top":
                contents, end = _scan_objects(text, start)
                array = _Objects(contents)
            else:
                close = text.find("]", start)
                if close < 0 or any(text.find(c, start, close) >= 0 for c in '"{['):
                    raise _Whole  # not a flat array of numbers
                array, end = _Numbers(text[start:close]), close + 1
            after = end
            while text[after] in _WS:
                after += 1
            if text[after] not in ",}":  # an array is a value inside the logprobs object
                raise _Whole
            pieces += (text[pos:start - 1], str(len(cut)))
            cut.append(array)
            pos = end
        pieces.append(text[pos:])
        return json.loads("".join(pieces)), cut
    except (IndexError, json.JSONDecodeError):  # IndexError: the text ended inside an array
        raise _Whole from None


def _column(value: Any, cut: list[_Objects | _Numbers], kind: type, n: int,
            where: str) -> Callable[[list[int]], list]:
    """Read rows of one logprobs array, cut out (its number in `cut`) or parsed."""
    if isinstance(value, int) and not isinstance(value, bool):
        if not 0 <= value < len(cut) or not isinstance(cut[value], kind) or cut[value].n != n:
            raise _Whole  # not ours, or a key held a brace and the scan split an element
        return cut[value].get
    if not isinstance(value, list) or len(value) != n:
        raise Garbage(f"{where}: logprobs arrays disagree in length ({n} tokens)")
    return lambda rows: [value[j] for j in rows]


def _prompt_choice(choice: dict, where: str, prompt: str, wanted: Sequence[int],
                   cut: list[_Objects | _Numbers]) -> tuple[Completion, bool]:
    """The rows of `choice` that hold the char offsets `wanted`; whether it had logprobs at all."""
    text = choice.get("text")
    if not isinstance(text, str):
        raise Garbage(f"{where} has no text")
    if text.startswith(prompt):
        text = text[len(prompt):]
    lp = choice.get("logprobs") or {}
    if not isinstance(lp, dict) or lp.get("tokens") is None:
        # The endpoint ignored echo/logprobs: no rows, and the caller says what that means for it.
        return Completion(text=text, usage=Usage()), False
    tokens, offsets = lp["tokens"], lp.get("text_offset")
    if not isinstance(tokens, list):
        raise Garbage(f"{where}: logprobs.tokens is not a list")
    n = len(tokens)
    if offsets is None:
        raise Garbage("echo asked but the response has no text_offset to split prompt from output")
    if not isinstance(offsets, list) or len(offsets) != n:
        raise Garbage(f"{where}: logprobs arrays disagree in length ({n} tokens, {len(offsets)} offsets)")
    values = _column(lp.get("token_logprobs"), cut, _Numbers, n, where)
    tops = lp.get("top_logprobs")
    top_rows = (lambda rows: [{} for _ in rows]) if tops is None else _column(tops, cut, _Objects, n, where)
    # Offsets ascend (a lookup by offset relies on it): the prompt's tokens are those before its length.
    n_prompt = bisect_left(offsets, len(prompt))
    keep = sorted({j for j in (bisect_right(offsets, s, 0, n_prompt) - 1 for s in wanted) if j >= 0})
    read = keep + list(range(n_prompt, n))
    rows = [TokenLogprobs(tokens[j], v, top or {}) for j, v, top in zip(read, values(read), top_rows(read))]
    completion = Completion(text=text, usage=Usage(n_prompt, n - n_prompt), prompt_logprobs=rows[:len(keep)],
                            text_offsets=[offsets[j] for j in keep], generated_logprobs=rows[len(keep):])
    return completion, True


def parse_prompt_rows(raw: bytes | str, prompts: Sequence[str],
                      rows_at: Sequence[Sequence[int]]) -> tuple[list[Completion], Usage, bool]:
    """Completions of an echo request with one prompt or a list of them (vLLM's legacy format, one choice
    per prompt in `index` order), each keeping only the prompt rows that hold its `rows_at` char offsets.
    Returns them, the request's usage, and whether the endpoint reported usage. A choice's own usage counts
    its echoed tokens (a single prompt's is the request's)."""
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    except UnicodeDecodeError:
        raise Garbage(f"body is not UTF-8 JSON: {raw[:120]!r}") from None
    try:
        try:
            return _prompt_rows(_skeleton(text), prompts, rows_at)
        except _Whole:
            return _prompt_rows((load_body(text), []), prompts, rows_at)
    except _Whole:  # parsed whole, a logprobs array is a number
        raise Garbage("malformed completion logprobs (a number where an array belongs)") from None
    except (KeyError, TypeError, AttributeError, IndexError) as exc:
        raise Garbage(f"malformed completion logprobs ({exc!r})") from None


def _prompt_rows(parsed: tuple[Any, list[_Objects | _Numbers]], prompts: Sequence[str],
                 rows_at: Sequence[Sequence[int]]) -> tuple[list[Completion], Usage, bool]:
    response, cut = parsed
    choices = _choices(response)
    if len(prompts) > 1:
        if len(choices) != len(prompts):
            raise ChoicesMismatch(f"{len(choices)} choice(s) for a list of {len(prompts)} prompts")
        index = [c.get("index") for c in choices]
        if sorted(i for i in index if isinstance(i, int)) == list(range(len(prompts))):
            by_index = {i: c for i, c in zip(index, choices)}
            choices = [by_index[i] for i in range(len(prompts))]
    out = []
    with_rows = True
    for i, (prompt, wanted) in enumerate(zip(prompts, rows_at)):
        completion, has_rows = _prompt_choice(choices[i], f"choices[{i}]", prompt, wanted, cut)
        out.append(completion)
        with_rows = with_rows and has_rows
    usage, reported = _usage(response)
    if len(out) == 1 or not with_rows:
        for completion in out:  # one prompt: the request's usage is its own; no rows: nothing to split by
            completion.usage = Usage(usage.prompt_tokens // len(out), usage.completion_tokens // len(out))
    return out, usage, reported
