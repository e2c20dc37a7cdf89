"""Explain-and-score one feature, without touching the database: explain from train records, choose the
best of N candidates on the valid split, then evaluate the winner on the held-out test split (scorer.evaluate).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from activations.records import FeatureRecords
from activations.vocab import DataSplit, FailureKind, OutcomeStatus
from explainer import ExplanationResult, explain
from explainer.contrast import Contrast
from explainer.evidence import StoredSteering
from explainer.sampling import DEFAULT_SAMPLE
from llm_client.base import LLMClient
from scorer import score_ev_correlation
from scorer.evaluate import SimulationOutcome, evaluate_on, simulate
from scorer.scored_set import ScoringInput, reported_input, scoring_input
from simulator.base import Simulator


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
    contrast: Contrast | None = None, output_steering: StoredSteering | None = None,
) -> FeatureOutcome:
    """Explain, choose, and (with `simulate_test`, i.e. when the run scores by simulation) simulate and score
    the winner on the test split. The explainer gets the train split only: its records, and with `contrast` its
    counterexamples (the caller reads neighbours' windows from their train split)."""
    train = FeatureRecords(feature.feature, feature.select(data_splits=[DataSplit.TRAIN]), feature.stats)
    candidates = await explain(client, train, fmt=fmt, n_candidates=n_candidates, polarity=polarity,
                               temperature=temperature, max_tokens=max_tokens, output_logits=output_logits,
                               sample=sample, sample_seed=seed, contrast=contrast, output_steering=output_steering)
    selected, valid_scores = await _choose(candidates, simulator, scoring_input(feature, DataSplit.VALID, polarity))
    if selected is None:
        return FeatureOutcome(candidates, None, None)
    if not simulate_test:
        return FeatureOutcome(candidates, selected, None, valid_scores)
    text = next(c.text for c in candidates if c.candidate == selected)
    test_data = reported_input(feature, polarity)
    valid = scoring_input(feature, DataSplit.VALID, polarity) if calibrate else None
    test = await evaluate_on(simulator, text or "", test_data, valid=valid, seed=seed)
    return FeatureOutcome(candidates, selected, test, valid_scores, test_data)
