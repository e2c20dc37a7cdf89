"""The one write path for results: what explaining and scoring a feature produced (candidate explanations, ok or
failed, with usage and cost), and every evaluation of an explanation (the simulation it was scored on, per-record
expected values or the failure, and its scores; an example scorer's scores, which have no simulation). The
caller wraps one feature's or explanation's save in one transaction, so it is stored whole or not at all."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from activations.records import ActivationRecord
from activations.vocab import FailureKind, OutcomeStatus, ScoreRole
from explainer import ExplanationResult
from scorer import ScoreValue
from simulator.base import SequenceSimulation
from storage.core import repository as repo
from storage.core.in_lists import chunks
from storage.core.schema import Explanation, Score, Simulation
from storage.results.already_done import FAILURE_KIND, finished_features


@dataclass(frozen=True)
class SimulationToStore:
    """What a simulator made of an explanation on a feature's scored records (each carries its row id): the
    expected values per record, or the failure and what it failed on."""

    config: dict  # the simulation configuration (scorer.simulation_config)
    records: Sequence[ActivationRecord]
    simulations: Sequence[SequenceSimulation] | None
    failure: str | None = None
    failure_kind: FailureKind | None = None
    role: str = ScoreRole.OWN
    explanation: repo.Keyed | None = None  # the explanation simulated, when not the one scored (a shuffled baseline)


@dataclass(frozen=True)
class Evaluation:
    """An explanation's evaluation by one simulator (or example scorer): the simulation its scores were computed
    on, when one ran, and the scores."""

    simulator: str  # the simulator's spec, or the example scorer's
    scorer_config: dict
    scores: Sequence[ScoreValue] = ()
    simulation: SimulationToStore | None = None
    # Keys merged into the evaluated explanation's params (explain: the candidates' valid-split correlations).
    explanation_params: dict[str, Any] = field(default_factory=dict)


def save_evaluation(session: Session, explanation: repo.Keyed, feature: repo.FeatureKeyed, evaluation: Evaluation, *,
                    run_id: int | None) -> int:
    """Store an evaluation of `explanation` on `feature`: its simulation (a failed one too) and the scores on it (none
    after a failed simulation; scores already stored are kept). Scores without a simulation (calibrated ones added
    to an earlier simulation, a baseline that could not be made, an example scorer's) are stored as they are.
    Returns how many scores were added."""
    simulation_row = None
    simulation = evaluation.simulation
    if simulation is not None:
        simulation_row = _store_simulation(session, simulation.explanation or explanation, feature, simulation,
                                           simulator=evaluation.simulator, run_id=run_id)
        if simulation.simulations is None:
            return 0
    return _store_scores(session, explanation, feature, simulation_row, evaluation.scores,
                         simulator=evaluation.simulator, run_id=run_id, scorer_config=evaluation.scorer_config)


def save_explained(session: Session, feature: repo.FeatureKeyed, candidates: Sequence[ExplanationResult], *,
                   selected: int | None, config: dict, run_id: int | None,
                   evaluation: Evaluation | None = None) -> bool:
    """Store what explaining one feature produced: every candidate (`selected` marks the best-of-N winner; None: no
    candidate usable) and the winner's evaluation. A failed earlier try of this configuration is replaced (a
    run only does a failed feature again when it is to be redone). False, writing nothing, when another run
    stored a usable result first."""
    rows = _store_candidates(session, feature, candidates, config=config, run_id=run_id, selected=selected)
    if rows is None:
        chash = repo.config_hash(config)
        earlier = finished_features(session, [feature.id], config_hash=chash).get(feature.id)
        if earlier is None or earlier.status != OutcomeStatus.FAILED:
            return False
        forget_feature_results(session, feature.id, chash)
        rows = _store_candidates(session, feature, candidates, config=config, run_id=run_id, selected=selected)
    if rows is None:
        return False
    if selected is None or evaluation is None:
        return True
    chosen = next(r for r in rows if r.candidate == selected)
    if evaluation.explanation_params:
        chosen.params = {**(chosen.params or {}), **evaluation.explanation_params}
    save_evaluation(session, chosen, feature, evaluation, run_id=run_id)
    return True


def _store_candidates(
    session: Session, feature: repo.Keyed, results: Sequence[ExplanationResult], *, config: dict, run_id: int | None,
    selected: int | None,
) -> list[Explanation] | None:
    """One row per candidate; `selected` marks the best-of-N winner (None: no candidate usable). None, writing
    nothing, when this feature already has results under this configuration: another run stored it first (a
    feature is stored whole, so its first candidate tells)."""
    rows = []
    for result in results:
        usage = result.usage
        params = {**result.params, FAILURE_KIND: result.failure_kind} if result.failure_kind else result.params
        row, created = repo.add_explanation(
            session, feature, explainer=result.explainer, config=config, run_id=run_id, status=result.status,
            text=result.text if result.status == OutcomeStatus.OK else None, failure_reason=result.failure_reason,
            raw_output=result.raw_output, prompt_version=result.prompt_version, params=params,
            polarity=result.polarity, candidate=result.candidate, selected=result.candidate == selected,
            prompt_tokens=usage.prompt_tokens if usage else None,
            completion_tokens=usage.completion_tokens if usage else None,
            cost_usd=usage.cost_usd if usage else None, elapsed_s=result.elapsed_s,
        )
        if not created:
            return None
        rows.append(row)
    return rows


def _store_simulation(session: Session, explanation: repo.Keyed, feature: repo.Keyed, simulation: SimulationToStore, *,
                      simulator: str, run_id: int | None) -> repo.RowRef:
    """A simulation of `explanation` on `feature`'s stored records; a failed one has no values."""
    rows: list[dict[str, Any]] = []
    if simulation.simulations is not None:
        rows = [
            {"record_id": record.record_id, "sample": record.sample,
             "expected_activations": list(sim.expected_activations), "distribution": sim.distributions}
            for record, sim in zip(simulation.records, simulation.simulations)
        ]
    failure = simulation.failure
    row, _ = repo.add_simulation(
        session, explanation, feature, simulator=simulator, config=simulation.config, records=rows,
        status=OutcomeStatus.FAILED if failure else OutcomeStatus.OK, failure_reason=failure, role=simulation.role,
        run_id=run_id, params={FAILURE_KIND: simulation.failure_kind} if failure and simulation.failure_kind else None,
    )
    return row


def _store_scores(
    session: Session, explanation: repo.Keyed, feature: repo.FeatureKeyed, simulation: repo.Keyed | None,
    scores: Sequence[ScoreValue], *, simulator: str, run_id: int | None, scorer_config: dict | None = None,
) -> int:
    """Store a score set (those already stored are kept); returns how many were added."""
    return repo.add_scores(
        session, explanation, feature,
        [{"method": s.method, "subset": s.subset, "value": s.value, "undefined_reason": s.undefined_reason,
          "role": s.role, "ci_low": s.ci_low, "ci_high": s.ci_high, "n_records": s.n_records,
          "details": dict(s.details, n_tokens=s.n_tokens)} for s in scores],
        simulation=simulation, simulator=simulator, run_id=run_id, scorer_config=scorer_config,
    )


def forget_feature_results(session: Session, feature_id: int, config_hash: str) -> None:
    """Remove a failed feature's rows under this configuration before it is retried (scores and
    simulations go with their explanations by cascade)."""
    ids = select(Explanation.id).where(Explanation.feature_id == feature_id, Explanation.config_hash == config_hash)
    session.execute(delete(Score).where(Score.explanation_id.in_(ids)))
    session.execute(delete(Simulation).where(Simulation.explanation_id.in_(ids)))
    session.execute(
        delete(Explanation).where(Explanation.feature_id == feature_id, Explanation.config_hash == config_hash)
    )


def scored_explanations(session: Session, feature_ids: Sequence[int], *, config_hash: str | None = None,
                        explainer: str | None = None) -> list[int]:
    """Ids of the selected, ok explanations of these features (optionally of one configuration or explainer)."""
    stmt = select(Explanation.id).where(Explanation.status == OutcomeStatus.OK, Explanation.selected.is_(True))
    if config_hash is not None:
        stmt = stmt.where(Explanation.config_hash == config_hash)
    if explainer is not None:
        stmt = stmt.where(Explanation.explainer == explainer)
    stmt = stmt.order_by(Explanation.feature_id, Explanation.id)
    # ascending chunks of feature ids, each in that order: the whole list is in it too
    return [i for chunk in chunks(sorted(set(feature_ids))) for i in session.scalars(stmt.where(
        Explanation.feature_id.in_(chunk)))]
