"""The scored set and the one 0..10 scale: which of a feature's records a simulation is scored on, and their
real activations as the scores compare them.

Real activations are scored as recorded, signed by the polarity explained and never clipped (OpenAI's
definition), only multiplied by 10 / the polarity's maximum so r² and absolute deviation explained compare them
with the simulator's 0..10 values; a positive factor leaves every correlation as it is (docs/score-definitions.md).
The example scorers' firing threshold is a level on the same scale, clipped at zero (`prompt_scale`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from activations.records import ActivationRecord, FeatureRecords
from activations.vocab import DataSplit, Polarity, SampleKind
from scorer.stored_config import simulated_samples

# OpenAI scored top-activating and random records: what the valid split chooses and calibrates on. The test split
# adds every quantile bin (SIMULATED_SAMPLES), scored on its own subsets only (scorer.subsets). A negative
# explanation's side has its own top records: the bottom ones (the most negative windows of a signed collection).
SCORED_SAMPLES = (SampleKind.TOP, SampleKind.RANDOM)
NEGATIVE_SCORED_SAMPLES = (SampleKind.BOTTOM, SampleKind.RANDOM)


def side_sample(polarity: str) -> SampleKind:
    """The sample kind holding the top records of the side explained: top, or bottom for negative polarity."""
    return SampleKind.BOTTOM if polarity == Polarity.NEGATIVE else SampleKind.TOP


def scored_samples(polarity: str) -> tuple[SampleKind, ...]:
    """The samples the valid split chooses and calibrates on: the side's top records and the random ones."""
    return NEGATIVE_SCORED_SAMPLES if polarity == Polarity.NEGATIVE else SCORED_SAMPLES


@dataclass
class ScoringInput:
    """The records a simulation is scored on (each with its row id) and their real values, polarity-signed and
    unclipped, scaled so the polarity's maximum is 10."""

    records: list[ActivationRecord]
    real: list[list[float]]

    @property
    def tokens(self) -> list[list[str]]:
        return [list(r.tokens) for r in self.records]


def polarity_max(feature: FeatureRecords, polarity: str) -> float:
    """The activation that maps to 10: the feature's max, or for negative polarity the most negative value
    of its records, negated."""
    if polarity == Polarity.NEGATIVE:
        return max((-a for r in feature.records for a in r.activations), default=0.0)
    return feature.max_activation


def real_scale(feature: FeatureRecords, polarity: str) -> Callable[[Sequence[float]], list[float]]:
    """Activations -> signed by `polarity` and scaled so the polarity's maximum is 10, NOT clipped: what the
    simulation is scored against. A feature that never reaches above zero on that side keeps its raw units (a
    factor of 0 would turn its real activations into a constant and every score into an undefined one)."""
    sign = -1.0 if polarity == Polarity.NEGATIVE else 1.0
    peak = polarity_max(feature, polarity)
    factor = sign * (10.0 / peak if peak > 0 else 1.0)
    return lambda activations: [factor * a for a in activations]


def prompt_scale(feature: FeatureRecords, polarity: str) -> Callable[[Sequence[float]], list[float]]:
    """Activations -> the 0..10 prompt scale: the real scale clipped at zero, for the example scorers, whose
    firing threshold (FIRING_LEVEL) is a level on that scale."""
    real = real_scale(feature, polarity)
    return lambda activations: [max(v, 0.0) for v in real(activations)]


def scoring_input(feature: FeatureRecords, data_split: str, polarity: str,
                  samples: Sequence[str] | None = None) -> ScoringInput:
    """The one builder of what a simulation is scored on: the records of `data_split` sampled as `samples`
    ("quantile" is every bin; default: the polarity's `scored_samples`), their activations signed by `polarity`,
    scaled so the polarity's maximum is 10, never clipped."""
    real = real_scale(feature, polarity)
    chosen = feature.select(samples=samples or scored_samples(polarity), data_splits=[data_split])
    return ScoringInput(records=chosen, real=[real(r.activations) for r in chosen])


def reported_input(feature: FeatureRecords, polarity: str) -> ScoringInput:
    """What the reported simulation covers: the test split's top, random and quantile records (negative polarity:
    its bottom and random records)."""
    return scoring_input(feature, DataSplit.TEST, polarity, simulated_samples(polarity))
