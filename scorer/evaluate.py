"""Simulate an explanation on a feature's scored set and score it: the evaluation every workflow (explain, rescore,
the shuffled baseline) and a notebook share.

    from scorer.evaluate import evaluate
    outcome = await evaluate(simulator, "years and dates", feature)   # FeatureRecords with test records
    outcome.scores                                                    # every method on every subset
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from activations.records import FeatureRecords
from activations.vocab import DataSplit, FailureKind, Polarity, ScoreRole
from llm_client.base import LLMError
from scorer.calibrated import calibrated_scores
from scorer.metrics import ScoreValue
from scorer.scored_set import ScoringInput, reported_input, scoring_input
from scorer.subsets import ScoredRecord, score_records
from simulator.base import SequenceSimulation, SimulationError, Simulator


@dataclass
class SimulationOutcome:
    simulations: list[SequenceSimulation] | None
    failure: str | None
    scores: list[ScoreValue] = field(default_factory=list)
    failure_kind: FailureKind | None = None


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


async def evaluate_on(simulator: Simulator, explanation: str, data: ScoringInput, *, valid: ScoringInput | None = None,
                      role: str = ScoreRole.OWN, seed: int = 0,
                      simulations: list[SequenceSimulation] | None = None) -> SimulationOutcome:
    """Simulate `explanation` on `data` (or take the `simulations` made before) and score them on every subset;
    with `valid`, the calibrated methods fitted there too."""
    outcome = SimulationOutcome(simulations, None) if simulations is not None \
        else await simulate(simulator, explanation, data)
    if outcome.simulations is None:
        return outcome
    outcome.scores = score(data, outcome.simulations, role=role, seed=seed)
    if valid is not None:
        outcome.scores += await calibrated_scores(simulator, explanation, valid, data, outcome.simulations,
                                                  role=role, seed=seed)
    return outcome


async def evaluate(simulator: Simulator, explanation: str, feature: FeatureRecords, *,
                   polarity: str = Polarity.POSITIVE, role: str = ScoreRole.OWN, calibrate: bool = False,
                   seed: int = 0) -> SimulationOutcome:
    """Simulate `explanation` on the feature's reported test records and score it on every subset; with
    `calibrate`, the calibrated methods fitted on the valid split too."""
    valid = scoring_input(feature, DataSplit.VALID, polarity) if calibrate else None
    return await evaluate_on(simulator, explanation, reported_input(feature, polarity), valid=valid, role=role,
                             seed=seed)
