"""Persist imported features: records, statistics, and imported explanations with their simulations and
scores. Idempotent: importing the same file again finds every row already there and adds nothing."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.orm import Session

from activations.importers import ImportedFeature
from activations.vocab import OutcomeStatus, ScoringSubset
from storage import repository as repo

IMPORT_SIMULATOR = "import:openai"


def save_imported(session: Session, item: ImportedFeature, source: str) -> dict[str, int]:
    """Write one parsed feature; returns counts of what was added."""
    added = {"features": 0, "records": 0, "explanations": 0, "scores": 0}
    model = repo.get_or_create_model(session, item.feature.model)
    if item.feature.sae:
        repo.get_or_create_sae(session, model, item.feature.sae, **item.sae_info)
    feature = repo.get_or_create_feature(session, item.feature, model)
    if item.records is not None:
        if feature.max_activation is None:
            added["features"] += 1
        if item.records.stats is not None:
            repo.set_feature_stats(feature, item.records.stats)
        feature.extra = {**(feature.extra or {}), **item.extra}
        added["records"] += repo.add_records(session, feature, item.records.records)
    name = Path(source).name
    for i, imported in enumerate(item.explanations):
        explanation, created = repo.add_explanation(
            session, feature, explainer="import:openai", config={"import": name, "item": i},
            text=imported.text, status=OutcomeStatus.OK, candidate=i, source=source, params={}, prompt_version=None,
        )
        added["explanations"] += int(created)
        if not created:
            continue
        simulation = None
        if imported.sequences:
            simulation, _ = repo.add_simulation(
                session, explanation, feature, simulator=IMPORT_SIMULATOR, config={"import": name, "item": i},
                records=[
                    {"tokens": s.tokens, "true_activations": s.true_activations,
                     "expected_activations": s.expected_activations}
                    for s in imported.sequences
                ],
            )
        for method, value in imported.scores.items():
            repo.add_score(
                session, explanation, feature, method=method, subset=ScoringSubset.TOP_AND_RANDOM, value=value,
                undefined_reason=None if value is not None else "undefined in the imported file",
                simulation=simulation, simulator=IMPORT_SIMULATOR, n_records=len(imported.sequences) or None,
            )
            added["scores"] += 1
    return added
