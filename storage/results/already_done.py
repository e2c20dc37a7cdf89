"""Every "is this already done?" question a run asks before it works, in one place and one shape: the ids to ask
about in (any number of them: each question runs a chunk of ids at a time), the criteria as keywords, and back
the ids that are done (features: how each finished). A run skips what these answer, so reruns are free.

Also the markers on stored rows these questions read: what a failed row failed on, and the reason prefix of an
example scorer's failed subset."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from activations.vocab import FailureKind, OutcomeStatus, ScoreRole
from storage.core.in_lists import chunks
from storage.core.repository import config_hash, simulation_config_hash
from storage.core.schema import Explanation, Score, Simulation, SteeringRow

FAILURE_KIND = "failure_kind"  # key of a failed row's params: a FailureKind
# An example scorer whose judgements all failed on a subset stores it undefined with a reason starting so; such an
# explanation counts as not yet scored, and the next run replaces its rows.
FAILED_PREFIX = "failed:"

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


def _rows(session: Session, stmt: Select, column: Any, ids: Sequence[int]) -> list[Any]:
    """`stmt`'s rows for `column` in `ids`, a chunk of ids per statement."""
    return [row for chunk in chunks(ids) for row in session.execute(stmt.where(column.in_(chunk)))]


def finished_features(session: Session, feature_ids: Sequence[int], *, config_hash: str) -> dict[int, Finished]:
    """feature id -> how it finished, for features that already have results under this configuration. A
    feature failed when no candidate was usable (then on what its candidates failed on) or its winner's own
    simulation failed (then on what that failed on)."""
    out: dict[int, Finished] = {}
    candidates = select(Explanation.feature_id, Explanation.status, Explanation.selected, Explanation.params).where(
        Explanation.config_hash == config_hash)
    for feature_id, status, selected, params in _rows(session, candidates, Explanation.feature_id, feature_ids):
        seen = out.setdefault(feature_id, Finished(OutcomeStatus.FAILED))
        if status == OutcomeStatus.OK and selected:
            seen.status = OutcomeStatus.OK
        seen.note(params)
    failed_simulations = select(Explanation.feature_id, Simulation.params).join(
        Simulation, Simulation.explanation_id == Explanation.id).where(
        Explanation.config_hash == config_hash, Simulation.role == ScoreRole.OWN,
        Simulation.status == OutcomeStatus.FAILED)
    for feature_id, params in _rows(session, failed_simulations, Explanation.feature_id, feature_ids):
        out[feature_id] = Finished(OutcomeStatus.FAILED)
        out[feature_id].note(params)
    return out


def simulated_with(session: Session, explanation_ids: Sequence[int], *, simulator: str,
                   config: dict | None = None) -> set[int]:
    """Which of these explanations already have a successful own simulation by this simulator (under `config`,
    when given: one made under another configuration, e.g. of fewer records, does not count)."""
    stmt = select(Simulation.explanation_id, Simulation.feature_id, Simulation.config_hash).where(
        Simulation.simulator == simulator, Simulation.role == ScoreRole.OWN, Simulation.status == OutcomeStatus.OK)
    return {explanation_id for explanation_id, feature_id, chash in _rows(session, stmt, Simulation.explanation_id,
                                                                          explanation_ids)
            if config is None or chash == simulation_config_hash(config, ScoreRole.OWN, feature_id)}


def scored_with(session: Session, explanation_ids: Sequence[int], *, simulator: str, method: str,
                scorer_config: dict | None = None) -> set[int]:
    """Which of these explanations already have own scores of `method` (defined or not) by this simulator (and
    under this scorer configuration, when given: e.g. the current scoring version)."""
    stmt = select(Score.explanation_id).where(Score.simulator == simulator, Score.method == method,
                                              Score.role == ScoreRole.OWN)
    if scorer_config is not None:
        stmt = stmt.where(Score.scorer_hash == config_hash(scorer_config))
    return {row.explanation_id for row in _rows(session, stmt, Score.explanation_id, explanation_ids)}


def with_shuffled_baseline(session: Session, explanation_ids: Sequence[int], *, simulator: str,
                           scorer_config: dict | None = None) -> set[int]:
    """Which of these explanations already have sanity-baseline scores under this simulator (and scorer
    configuration, when given: baselines of an older scoring version do not count)."""
    stmt = select(Score.explanation_id).distinct().where(Score.role == ScoreRole.SHUFFLED, Score.simulator == simulator)
    if scorer_config is not None:
        stmt = stmt.where(Score.scorer_hash == config_hash(scorer_config))
    return {row.explanation_id for row in _rows(session, stmt, Score.explanation_id, explanation_ids)}


def example_scored(session: Session, explanation_ids: Sequence[int], *, methods: Sequence[str], scorer_config: dict,
                   role: str = ScoreRole.OWN) -> set[int]:
    """Which of these explanations have an example scorer's scores (`methods`) under this configuration and role,
    none failed (see FAILED_PREFIX)."""
    stmt = select(Score.explanation_id, Score.undefined_reason).where(
        Score.method.in_(list(methods)), Score.scorer_hash == config_hash(scorer_config), Score.role == role,
        Score.simulation_id.is_(None))
    scored: set[int] = set()
    failed: set[int] = set()
    for explanation_id, reason in _rows(session, stmt, Score.explanation_id, explanation_ids):
        (failed if reason and reason.startswith(FAILED_PREFIX) else scored).add(explanation_id)
    return scored - failed


def steered(session: Session, feature_ids: Sequence[int], *, steering_config: dict) -> set[int]:
    """Which of these features have a steering result (ok or failed: the search is deterministic, so a rerun
    would fail the same way) under this steering configuration."""
    stmt = select(SteeringRow.feature_id).where(SteeringRow.config_hash == config_hash(steering_config))
    return {row.feature_id for row in _rows(session, stmt, SteeringRow.feature_id, feature_ids)}
