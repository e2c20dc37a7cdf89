"""Types the importers produce, and strict field access that names the file and field on error."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Literal, overload

from activations.errors import UserError
from activations.records import ActivationRecord, FeatureId, FeatureRecords, RecordError
from activations.splits import balanced_splits
from activations.vocab import SampleKind

# The fractions of `interleaved_data_split` (every 4th record valid, every 4th test), which quantile records
# keep; top and random records are balanced at the same fractions.
IMPORT_FRACTIONS = (0.5, 0.25, 0.25)


class ImportFormatError(UserError):
    """A file does not match its format; the message names the file and the field."""


@dataclass
class ImportedScoredSequence:
    tokens: list[str]
    true_activations: list[float]
    expected_activations: list[float]
    ev_correlation: float | None = None


@dataclass
class ImportedScore:
    """A score computed from a file's per-example results, on any subset, with what made it."""

    method: str
    subset: str
    value: float | None
    undefined_reason: str | None
    simulator: str  # import:<format>: labels the score as imported
    scorer_config: dict[str, Any]  # the settings that made the number (stored with its hash)
    n_records: int | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class ImportProvenance:
    """Where an imported explanation came from; `config` identifies it, so importing it again adds nothing."""

    explainer: str  # import:<format>
    config: dict[str, Any]
    params: dict[str, Any]  # shown with the explanation: the tool's run settings, explainer model, ...
    source: str  # the file it was read from


@dataclass
class ImportedExplanation:
    text: str
    scores: dict[str, float | None] = field(default_factory=dict)  # method -> value (top_and_random)
    sequences: list[ImportedScoredSequence] = field(default_factory=list)
    scored: list[ImportedScore] = field(default_factory=list)
    provenance: ImportProvenance | None = None  # None: keyed by the file's name and the item's place in it


@dataclass
class ImportedFeature:
    records: FeatureRecords | None  # None when the file carries only explanations
    feature: Any  # activations.records.FeatureId
    explanations: list[ImportedExplanation] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    sae_info: dict[str, Any] = field(default_factory=dict)


def with_balanced_splits(records: list[ActivationRecord], feature: FeatureId) -> list[ActivationRecord]:
    """The records, top and random ones re-split so valid and test hold as many of each (activations.splits).
    A file names no windows, so each record is its own window; top records rank by their peak. Quantile records,
    and every record of a feature without both samples, keep the split they were built with."""
    tops = sorted((i for i, r in enumerate(records) if r.sample == SampleKind.TOP),
                  key=lambda i: -records[i].max_activation)  # stable: equal peaks keep file order
    randoms = [i for i, r in enumerate(records) if r.sample == SampleKind.RANDOM]
    splits = balanced_splits(tops, randoms, IMPORT_FRACTIONS, f"import:{feature}")
    return [replace(r, data_split=splits[i]) if i in splits else r for i, r in enumerate(records)]


class Fields:
    """Read fields of a parsed JSON value, raising ImportFormatError with the file and JSON path."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, path: str, problem: str) -> ImportFormatError:
        return ImportFormatError(f"{self.source}: field {path!r}: {problem}")

    def get(self, obj: Any, key: str, path: str, *, required: bool = True, default: Any = None) -> Any:
        if not isinstance(obj, dict):
            raise self.fail(path, f"expected an object, got {type(obj).__name__}")
        if key not in obj:
            if required:
                raise self.fail(f"{path}.{key}" if path else key, "missing")
            return default
        return obj[key]

    def int_(self, obj: Any, key: str, path: str) -> int:
        value = self.get(obj, key, path)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(f"{path}.{key}", f"expected an integer, got {value!r}")
        return value

    def list_(self, obj: Any, key: str, path: str, *, required: bool = True) -> list:
        value = self.get(obj, key, path, required=required, default=[])
        if not isinstance(value, list):
            raise self.fail(f"{path}.{key}", f"expected a list, got {type(value).__name__}")
        return value

    @overload
    def number(self, value: Any, path: str, *, allow_none: Literal[False] = False) -> float: ...
    @overload
    def number(self, value: Any, path: str, *, allow_none: bool) -> float | None: ...

    def number(self, value: Any, path: str, *, allow_none: bool = False) -> float | None:
        if value is None and allow_none:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise self.fail(path, f"expected a finite number, got {value!r}")
        return float(value)

    def numbers(self, value: Any, path: str) -> list[float]:
        if not isinstance(value, list):
            raise self.fail(path, f"expected a list of numbers, got {type(value).__name__}")
        return [self.number(v, f"{path}[{i}]") for i, v in enumerate(value)]

    def strings(self, value: Any, path: str) -> list[str]:
        if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
            raise self.fail(path, "expected a list of strings")
        return value

    def record_error(self, path: str, exc: RecordError) -> ImportFormatError:
        return self.fail(path, str(exc))
