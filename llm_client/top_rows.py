"""Top-logprob rows as JSON text: an echoed body's rows are cut out as text, decoded once for the caller, and the
same text is what the response cache stores (encoding thousands of small dicts again per request cost more
than the rest of caching)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import msgspec

_ROWS = msgspec.json.Decoder(list[dict[str, float | None] | None])
_ROWS_STRICT = msgspec.json.Decoder(list[dict[str, float]])


def join_rows(rows: Sequence[bytes | msgspec.Raw]) -> bytes:
    """One JSON array of the rows' texts (each a JSON object or null); Raw joins without a copy of its own."""
    return b"[" + b",".join(rows) + b"]"


def decode_rows(joined: bytes) -> list[dict[str, float]]:
    """The rows of a `join_rows` array as dicts; a null row is empty, and an alternative without a logprob (a
    non-finite one written as null) is left out. msgspec.DecodeError when the text is not such an array."""
    try:
        return _ROWS_STRICT.decode(joined)  # nearly every body: no null row and no null logprob
    except msgspec.DecodeError:
        pass
    return [cast(dict[str, float], v) if v and None not in v.values()
            else {k: p for k, p in (v or {}).items() if p is not None} for v in _ROWS.decode(joined)]
