"""Explain-and-score one feature, without touching the database: explain from train records, choose the
best of N candidates on the valid split, simulate the held-out test split and score it.

Real activations are put on the simulator's 0..10 scale (10 * max(a, 0) / feature max, not floored) before
scoring: correlation does not care, but r² and absolute deviation explained compare magnitudes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

from activations.records import ActivationRecord, FeatureRecords
from activations.vocab import DataSplit, OutcomeStatus, Polarity, SampleKind, ScoreRole
from explainer import ExplanationResult, explain
from llm_client.base import LLMClient
from scorer import ScoredRecord, ScoreValue, score_ev_correlation, score_records
from simulator.base import SequenceSimulation, SimulationError, Simulator

SCORED_SAMPLES = (SampleKind.TOP, SampleKind.RANDOM)  # OpenAI scored top-activating and random records


@dataclass
class ScoringInput:
    """The records a simulation is scored on (each with its row id) and their real values on the 0..10 scale."""

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


def polarity_max(feature: FeatureRecords, polarity: str) -> float:
    """The activation that maps to 10: the feature's max, or for negative polarity the most negative value
    of its records, negated."""
    if polarity == Polarity.NEGATIVE:
        return max((-a for r in feature.records for a in r.activations), default=0.0)
    return feature.max_activation


def scoring_input(feature: FeatureRecords, data_split: str, polarity: str) -> ScoringInput:
    """The one builder of what a simulation is scored on: the top and random records of `data_split`,
    their activations signed by `polarity` and scaled so the polarity's maximum is 10."""
    sign = -1.0 if polarity == Polarity.NEGATIVE else 1.0
    peak = polarity_max(feature, polarity)
    scale = 10.0 / peak if peak > 0 else 0.0
    chosen = [r for r in feature.records if r.data_split == data_split and r.sample in SCORED_SAMPLES]
    return ScoringInput(records=chosen, real=[[max(sign * a, 0.0) * scale for a in r.activations] for r in chosen])


async def simulate(simulator: Simulator, explanation: str, data: ScoringInput) -> SimulationOutcome:
    if not data.records:
        return SimulationOutcome(None, "no top or random records in this split to simulate")
    try:
        sims = await simulator.simulate(explanation, data.tokens)
    except SimulationError as exc:
        return SimulationOutcome(None, exc.reason)
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
    temperature: float, max_tokens: int, seed: int = 0,
) -> FeatureOutcome:
    train = FeatureRecords(feature.feature, feature.select(data_splits=[DataSplit.TRAIN]), feature.stats)
    candidates = await explain(client, train, fmt=fmt, n_candidates=n_candidates, polarity=polarity,
                               temperature=temperature, max_tokens=max_tokens)
    selected, valid_scores = await _choose(candidates, simulator, scoring_input(feature, DataSplit.VALID, polarity))
    if selected is None:
        return FeatureOutcome(candidates, None, None)
    text = next(c.text for c in candidates if c.candidate == selected)
    test_data = scoring_input(feature, DataSplit.TEST, polarity)
    test = await simulate(simulator, text or "", test_data)
    if test.simulations is not None:
        test.scores = score(test_data, test.simulations, seed=seed)
    return FeatureOutcome(candidates, selected, test, valid_scores, test_data)
