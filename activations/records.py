"""The record data model: feature ids, activation records, per-feature statistics, prompt normalisation.

Every other layer speaks these types. Construction validates, so a bad record never travels further than
the place that built it, and the error names the feature and record it came from.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from activations.errors import UserError
from activations.vocab import DataSplit, SampleKind

FeatureKind = Literal["mlp_neuron", "sae_latent"]
FEATURE_KINDS: tuple[str, ...] = ("mlp_neuron", "sae_latent")
DATA_SPLITS: tuple[str, ...] = tuple(d.value for d in DataSplit)
_SAMPLE = re.compile(rf"^({SampleKind.TOP}|{SampleKind.BOTTOM}|{SampleKind.RANDOM}|{SampleKind.QUANTILE}:\d+)$")


class RecordError(UserError):
    """A record or feature failed validation; the message names which one and what is wrong."""


@dataclass(frozen=True, order=True)
class FeatureId:
    """Identity of one feature: an MLP neuron, or a latent of an SAE hooked at `layer`."""

    model: str
    layer: int
    kind: str
    index: int
    sae: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in FEATURE_KINDS:
            raise RecordError(f"feature {self.model}/{self.layer}/{self.index}: kind {self.kind!r} is not one of "
                              f"{FEATURE_KINDS}")
        if self.kind == "sae_latent" and not self.sae:
            raise RecordError(f"feature {self.model}/{self.layer}/{self.index}: an sae_latent needs an SAE id")
        if self.kind == "mlp_neuron" and self.sae:
            raise RecordError(f"feature {self.model}/{self.layer}/{self.index}: an mlp_neuron has no SAE "
                              f"(got {self.sae!r})")
        if self.layer < 0 or self.index < 0:
            raise RecordError(f"feature {self}: layer and index must be >= 0")

    def __str__(self) -> str:
        middle = f"{self.sae}/" if self.sae else ""
        return f"{self.model}/L{self.layer}/{middle}{self.kind}/{self.index}"


@dataclass(frozen=True)
class Provenance:
    """Where a record's window came from: corpus name, document id within it, and token offset."""

    corpus: str | None = None
    document: str | None = None
    offset: int | None = None


@dataclass(frozen=True)
class ActivationRecord:
    """One context window: tokens as the subject tokenizer decodes them, one activation per token.

    `sample` says how it was sampled (`top`, `random`, `quantile:<i>`); `data_split` says which disjoint
    part of the data it belongs to (`train` for explaining, `valid` for choosing among candidates, `test`
    for the reported score).
    """

    tokens: tuple[str, ...]
    activations: tuple[float, ...]
    sample: str = SampleKind.TOP
    data_split: str = DataSplit.TRAIN
    provenance: Provenance = field(default_factory=Provenance)
    label: str = ""  # names the record in error messages, e.g. "top[3]"
    record_id: int | None = field(default=None, compare=False)  # its row id, once stored
    # The subject tokenizer's ids behind `tokens`, when known (collection); imports have only strings.
    token_ids: tuple[int, ...] | None = field(default=None, compare=False)

    def __init__(
        self,
        tokens: Sequence[str],
        activations: Sequence[float],
        sample: str = SampleKind.TOP,
        data_split: str = DataSplit.TRAIN,
        provenance: Provenance | None = None,
        label: str = "",
        feature: FeatureId | str | None = None,
        record_id: int | None = None,
        token_ids: Sequence[int] | None = None,
    ) -> None:
        where = f"feature {feature}, record {label or '?'}" if feature is not None else f"record {label or '?'}"
        tokens_t = tuple(tokens)
        try:
            acts_t = tuple(float(a) for a in activations)
        except (TypeError, ValueError) as exc:
            raise RecordError(f"{where}: activations must be numbers ({exc})") from None
        if not tokens_t:
            raise RecordError(f"{where}: empty record (no tokens)")
        if not all(isinstance(t, str) for t in tokens_t):
            raise RecordError(f"{where}: every token must be a string")
        if len(tokens_t) != len(acts_t):
            raise RecordError(f"{where}: {len(tokens_t)} tokens but {len(acts_t)} activations")
        bad = next((i for i, a in enumerate(acts_t) if not math.isfinite(a)), None)
        if bad is not None:
            raise RecordError(f"{where}: activation {bad} (token {tokens_t[bad]!r}) is {acts_t[bad]}, "
                              "not a finite number")
        if not isinstance(sample, str) or not _SAMPLE.match(sample):
            raise RecordError(f"{where}: sample {sample!r} must be top, random or quantile:<i>")
        if data_split not in DATA_SPLITS:
            raise RecordError(f"{where}: data_split {data_split!r} must be one of {DATA_SPLITS}")
        object.__setattr__(self, "tokens", tokens_t)
        object.__setattr__(self, "activations", acts_t)
        object.__setattr__(self, "sample", sample)
        object.__setattr__(self, "data_split", data_split)
        object.__setattr__(self, "provenance", provenance or Provenance())
        object.__setattr__(self, "label", label)
        object.__setattr__(self, "record_id", record_id)
        if token_ids is not None and len(token_ids) != len(tokens_t):
            raise RecordError(f"{where}: {len(tokens_t)} tokens but {len(token_ids)} token ids")
        ids = token_ids if isinstance(token_ids, tuple) or token_ids is None else tuple(token_ids)
        object.__setattr__(self, "token_ids", ids)

    @classmethod
    def stored(cls, tokens: tuple[str, ...], activations: tuple[float, ...], sample: str, data_split: str,
               provenance: Provenance, label: str, record_id: int, token_ids: tuple[int, ...] | None
               ) -> ActivationRecord:
        """A record read back from the store: its values were validated when it was written, so they are set
        as given (tuples, floats) without checking them again, which costs more than reading them."""
        record = object.__new__(cls)
        vars(record).update(tokens=tokens, activations=activations, sample=sample, data_split=data_split,
                            provenance=provenance, label=label, record_id=record_id, token_ids=token_ids)
        return record

    @property
    def max_activation(self) -> float:
        return max(self.activations)


@dataclass(frozen=True)
class FeatureStats:
    """Running statistics of one feature over every token of a collection."""

    max_activation: float
    mean: float | None = None  # None where a source does not report it (e.g. Neuronpedia dashboards)
    variance: float | None = None
    firing_fraction: float | None = None
    n_tokens: int | None = None
    quantile_boundaries: tuple[float, ...] = ()
    min_activation: float | None = None

    @property
    def dead(self) -> bool:
        return self.firing_fraction == 0.0 or (self.firing_fraction is None and self.max_activation <= 0.0)


@dataclass
class FeatureRecords:
    """A feature with its records and statistics: what explainers, simulators and storage exchange."""

    feature: FeatureId
    records: list[ActivationRecord]
    stats: FeatureStats | None = None

    def select(self, *, samples: Sequence[str] | None = None,
               data_splits: Sequence[str] | None = None) -> list[ActivationRecord]:
        """Records whose sample kind is one of `samples` ("quantile" matches every bin) and whose data split
        is one of `data_splits`."""
        out = self.records
        if samples is not None:
            out = [r for r in out if any(r.sample == s or r.sample.startswith(s + ":") for s in samples)]
        if data_splits is not None:
            out = [r for r in out if r.data_split in data_splits]
        return out

    @property
    def max_activation(self) -> float:
        """The feature's max: from statistics when known, otherwise from its records."""
        if self.stats is not None:
            return self.stats.max_activation
        return max((r.max_activation for r in self.records), default=0.0)


def interleaved_data_split(position: int) -> str:
    """Deterministic train/valid/test assignment by position, for imported records whose source gives none:
    every 4th record of a sample goes to valid and test each, so all three see the same range of activation
    strengths. Importers keep it for quantile records; top and random ones are then balanced
    (importers.common.with_balanced_splits)."""
    return (DataSplit.TRAIN, DataSplit.TRAIN, DataSplit.VALID, DataSplit.TEST)[position % 4]


def normalize_activations(activations: Sequence[float], max_activation: float) -> list[int]:
    """OpenAI's prompt scale: min(10, floor(10 * max(x, 0) / max_activation)); all 0 when max <= 0."""
    if max_activation <= 0:
        return [0 for _ in activations]
    return [min(10, math.floor(10 * max(a, 0.0) / max_activation)) for a in activations]


@dataclass(frozen=True)
class NeighbourWindow:
    """A top record of one of a feature's nearest neighbours, and the feature's own activations on the same window
    (None: it has no record there, so its activations on it are not known). The detection, fuzzing and embedding
    scorers judge these as hard negatives, and the contrastive explainer shows them as counterexamples."""

    neighbour_index: int
    similarity: float | None
    record: ActivationRecord  # the neighbour's activations
    own_activations: tuple[float, ...] | None
