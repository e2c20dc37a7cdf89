"""Explain-and-score one feature, without touching the database: explain from train records, choose the
best of N candidates on the valid split, simulate the held-out test split and score it.

Real activations are scored as recorded, signed by the polarity explained and never clipped (OpenAI's
definition), only multiplied by 10 / the polarity's maximum so r² and absolute deviation explained compare them
with the simulator's 0..10 values; a positive factor leaves every correlation as it is (docs/score-definitions.md).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from activations.records import ActivationRecord, FeatureRecords
from activations.vocab import (
    ClassificationSubset,
    DataSplit,
    FailureKind,
    OutcomeStatus,
    Polarity,
    SampleKind,
    ScoreRole,
)
from autointerp.pipeline.calibrated import calibrated_scores
from explainer import ExplanationResult, explain
from explainer.sampling import DEFAULT_SAMPLE
from llm_client.base import LLMClient, LLMError
from scorer import Example, ExampleSet, ScoredRecord, ScoreValue, score_ev_correlation, score_records
from scorer.examples import EXAMPLE_TOKENS, FIRING_LEVEL, peak_span, peak_start, quiet_spans
from scorer.stored_config import SIMULATED_SAMPLES
from simulator.base import SequenceSimulation, SimulationError, Simulator
from storage.scoring_inputs import NeighbourWindow

# OpenAI scored top-activating and random records: what the valid split chooses and calibrates on. The test split
# adds every quantile bin (SIMULATED_SAMPLES), scored on its own subsets only (scorer.subsets).
SCORED_SAMPLES = (SampleKind.TOP, SampleKind.RANDOM)
T = TypeVar("T")


@dataclass
class ScoringInput:
    """The records a simulation is scored on (each with its row id) and their real values, polarity-signed and
    unclipped, scaled so the polarity's maximum is 10."""

    records: list[ActivationRecord]
    real: list[list[float]]

    @property
    def tokens(self) -> list[list[str]]:
        return [list(r.tokens) for r in self.records]


@dataclass
class SimulationOutcome:
    simulations: list[SequenceSimulation] | None
    failure: str | None
    scores: list[ScoreValue] = field(default_factory=list)
    failure_kind: FailureKind | None = None


@dataclass
class FeatureOutcome:
    candidates: list[ExplanationResult]
    selected: int | None
    test: SimulationOutcome | None
    valid_scores: dict[int, float | None] = field(default_factory=dict)
    test_input: ScoringInput | None = None

    @property
    def failure(self) -> str | None:
        if self.selected is None:
            reasons = {c.failure_reason for c in self.candidates if c.failure_reason}
            return "; ".join(sorted(reasons)) or "no usable explanation"
        if self.test is not None and self.test.failure:
            return f"simulation failed: {self.test.failure}"
        return None

    @property
    def failure_kind(self) -> FailureKind | None:
        """ENDPOINT when any part failed on the endpoint; INPUT when nothing could be sent; else ANSWER."""
        if self.selected is None:
            kinds = {c.failure_kind for c in self.candidates}
            if FailureKind.ENDPOINT in kinds:
                return FailureKind.ENDPOINT
            return FailureKind.INPUT if kinds == {FailureKind.INPUT} else FailureKind.ANSWER
        if self.test is not None and self.test.failure:
            return self.test.failure_kind
        return None


def polarity_max(feature: FeatureRecords, polarity: str) -> float:
    """The activation that maps to 10: the feature's max, or for negative polarity the most negative value
    of its records, negated."""
    if polarity == Polarity.NEGATIVE:
        return max((-a for r in feature.records for a in r.activations), default=0.0)
    return feature.max_activation


def _real_scale(feature: FeatureRecords, polarity: str) -> Callable[[Sequence[float]], list[float]]:
    """Activations -> signed by `polarity` and scaled so the polarity's maximum is 10, NOT clipped: what the
    simulation is scored against. A feature that never reaches above zero on that side keeps its raw units (a
    factor of 0 would turn its real activations into a constant and every score into an undefined one)."""
    sign = -1.0 if polarity == Polarity.NEGATIVE else 1.0
    peak = polarity_max(feature, polarity)
    factor = sign * (10.0 / peak if peak > 0 else 1.0)
    return lambda activations: [factor * a for a in activations]


def _prompt_scale(feature: FeatureRecords, polarity: str) -> Callable[[Sequence[float]], list[float]]:
    """Activations -> the 0..10 prompt scale: the real scale clipped at zero, for the example scorers, whose
    firing threshold (FIRING_LEVEL) is a level on that scale."""
    real = _real_scale(feature, polarity)
    return lambda activations: [max(v, 0.0) for v in real(activations)]


def scoring_input(feature: FeatureRecords, data_split: str, polarity: str,
                  samples: Sequence[str] = SCORED_SAMPLES) -> ScoringInput:
    """The one builder of what a simulation is scored on: the records of `data_split` sampled as `samples`
    ("quantile" is every bin), their activations signed by `polarity`, scaled so the polarity's maximum is 10,
    never clipped."""
    real = _real_scale(feature, polarity)
    chosen = feature.select(samples=samples, data_splits=[data_split])
    return ScoringInput(records=chosen, real=[real(r.activations) for r in chosen])


def reported_input(feature: FeatureRecords, polarity: str) -> ScoringInput:
    """What the reported simulation covers: the test split's top, random and quantile records."""
    return scoring_input(feature, DataSplit.TEST, polarity, SIMULATED_SAMPLES)


def _round_robin(groups: Sequence[Sequence[T]]) -> list[T]:
    """The first of each group, then the second of each, ...: a cut of the result spreads over the groups."""
    return [g[i] for i in range(max((len(g) for g in groups), default=0)) for g in groups if i < len(g)]


def example_input(feature: FeatureRecords, polarity: str, neighbours: Sequence[NeighbourWindow] | None, *,
                  n_activating: int = 10, n_random: int = 10, n_neighbours: int = 10) -> ExampleSet:
    """The one builder of what the example scorers (detection, fuzzing, embedding) judge, on the polarity's 0..10
    scale: activating spans from the test split's top and quantile records (every quantile represented;
    negative polarity: any test record), quiet spans of its random records (test and valid first, which the
    explainer never saw), and the neighbours' top spans where this feature does not fire (hard negatives)."""
    scaled = _prompt_scale(feature, polarity)
    samples = None if polarity == Polarity.NEGATIVE else [SampleKind.TOP, SampleKind.QUANTILE]
    test = feature.select(samples=samples, data_splits=[DataSplit.TEST])
    by_sample: dict[str, list[Example]] = {}
    for record in test:
        values = scaled(record.activations)
        if max(values) >= FIRING_LEVEL:
            by_sample.setdefault(record.sample, []).append(peak_span(record.tokens, values))
    # Top first, then quantile bins from the highest down, so a short cut still spans the range.
    order = sorted(by_sample, key=lambda s: (s != SampleKind.TOP, -int(s.split(":")[1]) if ":" in s else 0))
    examples = ExampleSet(_round_robin([by_sample[s] for s in order])[:n_activating])

    def quiet(data_splits: Sequence[str]) -> list[Example]:
        return _round_robin([quiet_spans(r.tokens, scaled(r.activations))
                             for r in feature.select(samples=[SampleKind.RANDOM], data_splits=data_splits)])

    # Train spans only when test and valid run short: a quiet span shows nothing the explainer could have used.
    randoms = (quiet([DataSplit.TEST, DataSplit.VALID]) + quiet([DataSplit.TRAIN]))[:n_random]
    if randoms:
        examples.negatives[ClassificationSubset.RANDOM] = randoms
    else:
        examples.missing[ClassificationSubset.RANDOM] = (
            f"no {EXAMPLE_TOKENS}-token span of the random records stays below {FIRING_LEVEL:g} on the 0..10 scale "
            "(the feature fires nearly everywhere)")
    if neighbours is None:
        examples.missing[ClassificationSubset.NEIGHBOURS] = (
            "no nearest neighbours stored for this feature (collection computes them)")
        return examples
    per_neighbour: dict[int, list[Example]] = {}
    for window in neighbours:
        values = list(window.record.activations)
        peak = max(values)
        if peak <= 0:
            continue
        start = peak_start(values)
        span = slice(start, start + EXAMPLE_TOKENS)
        if window.own_activations is not None and max(scaled(window.own_activations[span])) >= FIRING_LEVEL:
            continue  # this feature fires here too: not a negative
        per_neighbour.setdefault(window.neighbour_index, []).append(
            Example(window.record.tokens[span], tuple(10.0 * max(v, 0.0) / peak for v in values[span])))
    hard = _round_robin(list(per_neighbour.values()))[:n_neighbours]
    if hard:
        examples.negatives[ClassificationSubset.NEIGHBOURS] = hard
    else:
        examples.missing[ClassificationSubset.NEIGHBOURS] = (
            "this feature fires on every stored top window of its neighbours (or they have none)")
    return examples


async def simulate(simulator: Simulator, explanation: str, data: ScoringInput) -> SimulationOutcome:
    if not data.records:
        return SimulationOutcome(None, "no top or random records in this data split to simulate",
                                 failure_kind=FailureKind.INPUT)
    try:
        sims = await simulator.simulate(explanation, data.tokens)
    except SimulationError as exc:
        cause = exc.__cause__
        kind = FailureKind.ENDPOINT if isinstance(cause, LLMError) and cause.endpoint else FailureKind.ANSWER
        return SimulationOutcome(None, exc.reason, failure_kind=kind)
    return SimulationOutcome(sims, None)


def score(data: ScoringInput, simulations: Sequence[SequenceSimulation], *, role: str = ScoreRole.OWN,
          seed: int = 0) -> list[ScoreValue]:
    scored = [ScoredRecord(record.sample, real, sim.expected_activations)
              for record, real, sim in zip(data.records, data.real, simulations)]
    return score_records(scored, role=role, seed=seed)


async def _choose(candidates: list[ExplanationResult], simulator: Simulator,
                  valid: ScoringInput) -> tuple[int | None, dict[int, float | None]]:
    """Best ok candidate by pooled correlation on the valid split (never the test split)."""
    ok = [c for c in candidates if c.status == OutcomeStatus.OK]
    if len(ok) <= 1:
        return (ok[0].candidate if ok else None), {}
    outcomes = await asyncio.gather(*(simulate(simulator, c.text or "", valid) for c in ok))
    scores: dict[int, float | None] = {
        c.candidate: score_ev_correlation(valid.real, [s.expected_activations for s in o.simulations]).value
        if o.simulations else None
        for c, o in zip(ok, outcomes)
    }
    ranked = sorted(ok, key=lambda c: (scores[c.candidate] is None, -(scores[c.candidate] or 0.0), c.candidate))
    return ranked[0].candidate, scores


async def explain_and_score(
    feature: FeatureRecords, client: LLMClient, simulator: Simulator, *, fmt: str, n_candidates: int, polarity: str,
    temperature: float, max_tokens: int, seed: int = 0, simulate_test: bool = True,
    output_logits: Mapping[str, Any] | None = None, calibrate: bool = False, sample: str = DEFAULT_SAMPLE,
) -> FeatureOutcome:
    """Explain, choose, and (with `simulate_test`, i.e. when the run scores by simulation) simulate and score
    the winner on the test split."""
    train = FeatureRecords(feature.feature, feature.select(data_splits=[DataSplit.TRAIN]), feature.stats)
    candidates = await explain(client, train, fmt=fmt, n_candidates=n_candidates, polarity=polarity,
                               temperature=temperature, max_tokens=max_tokens, output_logits=output_logits,
                               sample=sample, sample_seed=seed)
    selected, valid_scores = await _choose(candidates, simulator, scoring_input(feature, DataSplit.VALID, polarity))
    if selected is None:
        return FeatureOutcome(candidates, None, None)
    if not simulate_test:
        return FeatureOutcome(candidates, selected, None, valid_scores)
    text = next(c.text for c in candidates if c.candidate == selected)
    test_data = reported_input(feature, polarity)
    test = await simulate(simulator, text or "", test_data)
    if test.simulations is not None:
        test.scores = score(test_data, test.simulations, seed=seed)
        if calibrate:
            valid = scoring_input(feature, DataSplit.VALID, polarity)
            test.scores += await calibrated_scores(simulator, text or "", valid, test_data, test.simulations,
                                                   role=ScoreRole.OWN, seed=seed)
    return FeatureOutcome(candidates, selected, test, valid_scores, test_data)
