"""Rows stored for tests through the paths the product writes them by: features as `autointerp import` stores
them (storage.records.import_store), scores as a run's evaluation (storage.results.outcome_store.save_evaluation)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from activations.importers import ImportedFeature
from activations.records import ActivationRecord, FeatureId, FeatureRecords, FeatureStats
from activations.vocab import ScoreRole
from scorer import ScoreValue
from storage.core import repository as repo
from storage.core.schema import Feature
from storage.records import import_store
from storage.results import outcome_store


def store_features(session: Any, features: Sequence[FeatureId], records: Sequence[list[ActivationRecord]] | None = None,
                   stats: Sequence[FeatureStats | None] | None = None) -> list[Feature]:
    """The features (with these records and statistics, when given), as an import stores them; their rows, in
    order."""
    items = [ImportedFeature(None if records is None else FeatureRecords(fid, records[i], stats[i] if stats else None),
                             fid) for i, fid in enumerate(features)]
    import_store.save_imported_file(session, items, "tests.json")
    rows = [repo.find_feature(session, fid) for fid in features]
    assert all(rows), "every feature was just stored"
    return [row for row in rows if row is not None]


def store_score(session: Any, explanation: repo.Keyed, feature: repo.FeatureKeyed, *, method: str, subset: str,
                value: float | None, simulator: str = "embedding", scorer_config: dict | None = None,
                role: str = ScoreRole.OWN, undefined_reason: str | None = None, run_id: int | None = None,
                simulation: outcome_store.SimulationToStore | None = None, **score: Any) -> None:
    """One score of `explanation`, saved as an evaluation by `simulator` (after `simulation`, when given)."""
    value_ = ScoreValue(method, value, undefined_reason, subset=subset, role=ScoreRole(role), **score)
    evaluation = outcome_store.Evaluation(simulator, scorer_config or {}, [value_], simulation)
    outcome_store.save_evaluation(session, explanation, feature, evaluation, run_id=run_id)
