"""Activation arrays as compact binary: the narrowest float type that holds every value exactly (float16,
else float32, else float64), little-endian, behind a one-byte header that records the choice.

Collected activations are float32 (or bf16/fp16 on a GPU), so they come back bit for bit; values imported
from JSON decimals that float32 cannot hold keep float64, so no reader ever sees a different number.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import chain
from typing import Any, cast

import numpy as np

# Header byte -> little-endian numpy dtype. Codes are stored: never renumber.
_DTYPES: dict[int, np.dtype[Any]] = {1: np.dtype("<f2"), 2: np.dtype("<f4"), 3: np.dtype("<f8")}
_F8 = _DTYPES[3]


def encode(values: Sequence[float] | Sequence[Sequence[float]] | np.ndarray) -> bytes:
    """The narrowest exact encoding. A 2-D input (a simulated distribution, one row per token) is stored
    row-major; `decode_rows` gets its row count from the record's token count."""
    wide = _wide(values)
    # Stored values are finite (records validate), so exact equality decides (compared in float64). Every
    # float16 is a float32, so values float32 cannot hold (simulated probabilities) skip the float16 try.
    single = wide.astype(_DTYPES[2])
    if not (single == wide).all():
        return bytes([3]) + wide.tobytes()
    half = wide.astype(_DTYPES[1])
    if (half == wide).all():
        return bytes([1]) + half.tobytes()
    return bytes([2]) + single.tobytes()


def _wide(values: Sequence[float] | Sequence[Sequence[float]] | np.ndarray) -> np.ndarray:
    """The values as one flat little-endian float64 array; nested lists are flattened by an iterator, which
    numpy reads faster than it parses them."""
    if isinstance(values, np.ndarray):
        return np.ascontiguousarray(values, dtype=_F8).ravel()
    if len(values) and isinstance(values[0], Sequence):
        return np.fromiter(chain.from_iterable(cast(Sequence[Sequence[float]], values)), dtype=_F8)
    return np.asarray(values, dtype=_F8)


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
