"""Activation arrays as compact binary: the narrowest float type that holds every value exactly (float16,
else float32, else float64), little-endian, behind a one-byte header that records the choice.

Collected activations are float32 (or bf16/fp16 on a GPU), so they come back bit for bit; values imported
from JSON decimals that float32 cannot hold keep float64, so no reader ever sees a different number.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

# Header byte -> little-endian numpy dtype. Codes are stored: never renumber.
_DTYPES: dict[int, np.dtype[Any]] = {1: np.dtype("<f2"), 2: np.dtype("<f4"), 3: np.dtype("<f8")}
_CODES = {dtype: code for code, dtype in _DTYPES.items()}


def encode(values: Sequence[float] | Sequence[Sequence[float]] | np.ndarray) -> bytes:
    """The narrowest exact encoding. A 2-D input (a simulated distribution, one row per token) is stored
    row-major; `decode_rows` gets its row count from the record's token count."""
    wide = np.ascontiguousarray(values, dtype="<f8")
    for dtype in (_DTYPES[1], _DTYPES[2]):
        narrow = wide.astype(dtype)
        # Stored values are finite (records validate), so exact equality decides.
        if np.array_equal(narrow.astype("<f8"), wide):
            return bytes([_CODES[dtype]]) + narrow.tobytes()
    return bytes([_CODES[_DTYPES[3]]]) + wide.tobytes()


def _array(data: bytes) -> np.ndarray:
    dtype = _DTYPES.get(data[0]) if data else None
    if dtype is None:
        raise ValueError(f"stored activations start with an unknown type byte {data[:1]!r}; expected one of "
                         f"{sorted(_DTYPES)}")
    return np.frombuffer(data, dtype=dtype, offset=1).astype(np.float64)


def decode(data: bytes) -> list[float]:
    return _array(data).tolist()


def decode_rows(data: bytes, n_rows: int) -> list[list[float]]:
    """A 2-D array stored row-major in `n_rows` rows."""
    return _array(data).reshape(n_rows, -1).tolist() if n_rows else []


def encode_ids(token_ids: Sequence[int]) -> bytes:
    return np.asarray(token_ids, dtype="<i4").tobytes()


def decode_ids(data: bytes) -> list[int]:
    return np.frombuffer(data, dtype="<i4").tolist()
