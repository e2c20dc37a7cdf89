"""Persist what explaining and scoring one feature produced: candidate explanations (ok or failed, with
usage and cost), simulations (per-record expected values, or the failure reason), and score sets.
The caller wraps one feature's calls in one transaction, so a feature is stored whole or not at all."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
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

FAILURE_KIND = "failure_kind"  # key of a failed row's params: a FailureKind


def store_candidates(
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


def store_simulation(
    session: Session, explanation: repo.Keyed, feature: repo.Keyed, *, simulator: str, config: dict,
    records: Sequence[ActivationRecord], simulations: Sequence[SequenceSimulation] | None,
    failure: str | None = None, role: str = ScoreRole.OWN, run_id: int | None = None,
    failure_kind: FailureKind | None = None,
) -> repo.RowRef:
    """A simulation of `explanation` on `feature`'s stored records (each carries its row id); `failure`
    stores a failed one (no values), and `failure_kind` what it failed on."""
    rows: list[dict[str, Any]] = []
    if simulations is not None:
        rows = [
            {"record_id": record.record_id, "sample": record.sample,
             "expected_activations": list(sim.expected_activations), "distribution": sim.distributions}
            for record, sim in zip(records, simulations)
        ]
    row, _ = repo.add_simulation(
        session, explanation, feature, simulator=simulator, config=config, records=rows,
        status=OutcomeStatus.FAILED if failure else OutcomeStatus.OK, failure_reason=failure, role=role, run_id=run_id,
        params={FAILURE_KIND: failure_kind} if failure and failure_kind else None,
    )
    return row


def store_scores(
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


_KIND_RANK = {FailureKind.INPUT: 0, FailureKind.ANSWER: 1, FailureKind.ENDPOINT: 2}


@dataclass
class Finished:
    """Of a feature with results under a configuration: ok or failed, and what its failed rows failed on (the
    endpoint if any did, else the answer, else the input; None when no failed row says: stored before kinds)."""

    status: OutcomeStatus
    failure_kind: FailureKind | None = None

    def note(self, params: dict | None) -> None:
        """Take in the kind a failed row's params name."""
        kind = (params or {}).get(FAILURE_KIND)
        if kind in _KIND_RANK and (self.failure_kind is None or _KIND_RANK[kind] > _KIND_RANK[self.failure_kind]):
            self.failure_kind = FailureKind(kind)

    def redo(self, retry_failed: bool) -> bool:
        """Whether a rerun does this feature again: a failure on the endpoint always (it may be fixed now), any
        other failure only with `retry_failed`."""
        return self.status == OutcomeStatus.FAILED and (retry_failed or self.failure_kind == FailureKind.ENDPOINT)


def finished_features(session: Session, feature_ids: Sequence[int], config_hash: str) -> dict[int, Finished]:
    """feature id -> how it finished, for features that already have results under this configuration. A
    feature failed when no candidate was usable (then on what its candidates failed on) or its winner's own
    simulation failed (then on what that failed on)."""
    out: dict[int, Finished] = {}
    for chunk in chunks(feature_ids):
        rows = session.execute(
            select(Explanation.feature_id, Explanation.status, Explanation.selected, Explanation.params).where(
                Explanation.feature_id.in_(chunk), Explanation.config_hash == config_hash
            )
        )
        for feature_id, status, selected, params in rows:
            seen = out.setdefault(feature_id, Finished(OutcomeStatus.FAILED))
            if status == OutcomeStatus.OK and selected:
                seen.status = OutcomeStatus.OK
            seen.note(params)
        failed_sims = session.execute(
            select(Explanation.feature_id, Simulation.params).join(
                Simulation, Simulation.explanation_id == Explanation.id).where(
                Explanation.feature_id.in_(chunk), Explanation.config_hash == config_hash,
                Simulation.role == ScoreRole.OWN, Simulation.status == OutcomeStatus.FAILED,
            )
        )
        for feature_id, params in failed_sims:
            out[feature_id] = Finished(OutcomeStatus.FAILED)
            out[feature_id].note(params)
    return out


def with_shuffled_baseline(session: Session, explanation_ids: Sequence[int], simulator: str, *,
                           scorer_config: dict | None = None) -> set[int]:
    """Which of these explanations already have shuffled-baseline scores under this simulator (and scorer
    configuration, when given: baselines of an older scoring version do not count)."""
    stmt = select(Score.explanation_id).distinct().where(Score.role == ScoreRole.SHUFFLED, Score.simulator == simulator)
    if scorer_config is not None:
        stmt = stmt.where(Score.scorer_hash == repo.config_hash(scorer_config))
    return {i for chunk in chunks(explanation_ids)
            for i in session.scalars(stmt.where(Score.explanation_id.in_(chunk)))}


def simulated_with(session: Session, explanation_ids: Sequence[int], simulator: str,
                   config: dict | None = None) -> set[int]:
    """Which of these explanations already have a successful own simulation by this simulator (under `config`,
    when given: one made under another configuration, e.g. of fewer records, does not count)."""
    rows = [row for chunk in chunks(explanation_ids) for row in session.execute(
        select(Simulation.explanation_id, Simulation.feature_id, Simulation.config_hash).where(
            Simulation.explanation_id.in_(chunk), Simulation.simulator == simulator,
            Simulation.role == ScoreRole.OWN, Simulation.status == OutcomeStatus.OK))]
    return {explanation_id for explanation_id, feature_id, chash in rows
            if config is None or chash == repo.simulation_config_hash(config, ScoreRole.OWN, feature_id)}


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
