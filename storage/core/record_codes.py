"""A record's sample kind and data split stored as small integer codes, not text: a record's columns other than
its activations are a few bytes, and the text of these two was 11 of them (the record index held the sample text
again). The column types convert both ways, so every query and row still speaks the words (`top`, `quantile:3`,
`test`). Codes are stored: never renumber; new kinds take new codes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import SmallInteger
from sqlalchemy.types import TypeDecorator

from activations.vocab import DataSplit, SampleKind

# The commonest kinds get 0 and 1, which SQLite stores in the record header alone (no value bytes).
SAMPLE_CODES: dict[str, int] = {SampleKind.TOP: 0, SampleKind.RANDOM: 1, SampleKind.BOTTOM: 2}
QUANTILE_BASE = 16  # quantile:<i> is code 16 + i
SPLIT_CODES: dict[str, int] = {DataSplit.TRAIN: 0, DataSplit.VALID: 1, DataSplit.TEST: 2}
_SAMPLES = {code: str(kind) for kind, code in SAMPLE_CODES.items()}
_SPLITS = {code: str(split) for split, code in SPLIT_CODES.items()}
_MAX_CODE = 32767  # SMALLINT


def sample_code(sample: str) -> int:
    if sample in SAMPLE_CODES:
        return SAMPLE_CODES[sample]
    bin_index = SampleKind.quantile_bin(sample)
    if bin_index is None or QUANTILE_BASE + bin_index > _MAX_CODE:
        raise ValueError(f"sample kind {sample!r} has no stored code; expected top, random, bottom or quantile:<i>")
    return QUANTILE_BASE + bin_index


def sample_of(code: int) -> str:
    if code >= QUANTILE_BASE:
        return SampleKind.quantile(code - QUANTILE_BASE)
    if code not in _SAMPLES:
        raise ValueError(f"stored sample code {code} is unknown to this version (known: {sorted(_SAMPLES)}, "
                         f">= {QUANTILE_BASE} for quantiles)")
    return _SAMPLES[code]


def split_code(split: str) -> int:
    if split not in SPLIT_CODES:
        raise ValueError(f"data split {split!r} has no stored code; expected train, valid or test")
    return SPLIT_CODES[split]


def split_of(code: int) -> str:
    if code not in _SPLITS:
        raise ValueError(f"stored data split code {code} is unknown (known: {sorted(_SPLITS)})")
    return _SPLITS[code]


class _Names(dict[int | None, str | None]):
    """code -> text, filled on first sight of a code: reading a row is one dict lookup per column (every read of
    records converts thousands of rows)."""

    def __init__(self, decode: Callable[[int], str]) -> None:
        super().__init__({None: None})
        self._decode = decode

    def __missing__(self, code: int) -> str:
        self[code] = name = self._decode(code)
        return name


class _CodeColumn(TypeDecorator[str]):
    impl = SmallInteger
    cache_ok = True
    _encode: Callable[[str], int]
    _names: _Names

    def process_bind_param(self, value: Any, dialect: Any) -> int | None:
        return None if value is None else type(self)._encode(str(value))

    def process_result_value(self, value: Any, dialect: Any) -> str | None:
        return self._names[value]

    def result_processor(self, dialect: Any, coltype: Any) -> Callable[[Any], str | None]:
        return self._names.__getitem__


class SampleColumn(_CodeColumn):
    """ActivationRecord.sample in a SMALLINT."""

    cache_ok = True  # read from each class's own attributes: without it every statement compiles anew
    _encode = staticmethod(sample_code)
    _names = _Names(sample_of)


class SplitColumn(_CodeColumn):
    """ActivationRecord.data_split in a SMALLINT."""

    cache_ok = True
    _encode = staticmethod(split_code)
    _names = _Names(split_of)
