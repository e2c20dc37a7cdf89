"""Persist imported features: records, statistics, and imported explanations with their simulations and
scores. Idempotent: importing the same file again finds every row already there and adds nothing.

A file's explanations, simulations, simulated records and scores are written in bulk (storage.records.bulk: a few
statements per table for the whole file, not one ORM object each), so a file of many thousands of explanations
imports in seconds. The caller owns the transaction: one per file, so a failed file writes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from sqlalchemy import Table, select
from sqlalchemy.orm import Session

from activations.importers import ImportedExplanation, ImportedFeature
from activations.records import FeatureId
from activations.vocab import OutcomeStatus, Polarity, ScoreRole, ScoringSubset
from storage.core import repository as repo
from storage.core.in_lists import chunks
from storage.core.schema import Feature, SimulatedRecord, Simulation, SubjectModel, utcnow
from storage.reads.score_source import IMPORTED_PREFIX
from storage.records import record_store
from storage.records.bulk import EXPLANATIONS, FEATURES, SCORES, explanation_ids, insert_rows

IMPORT_SIMULATOR = IMPORTED_PREFIX + "openai"
IMPORT_EXPLAINER = IMPORTED_PREFIX + "openai"
_SIMULATIONS = cast(Table, Simulation.__table__)
_SIMULATED = cast(Table, SimulatedRecord.__table__)


@dataclass(frozen=True)
class _FeatureRow:
    id: int
    model_id: int
    layer: int


@dataclass
class _NewExplanation:
    feature: _FeatureRow
    item: int  # index among its feature's imported explanations: the candidate number and part of the config
    config: dict[str, Any]
    imported: ImportedExplanation
    id: int = 0


def save_imported_file(session: Session, items: Sequence[ImportedFeature], source: str) -> dict[str, int]:
    """Write every parsed feature of one file (`source`); returns counts of what was added."""
    added = {"features": 0, "records": 0, "explanations": 0, "scores": 0}
    features = _features(session, items)
    for item, row in zip(items, features):
        if item.records is None:
            continue
        feature = session.get(Feature, row.id)
        assert feature is not None  # just found or inserted
        if feature.max_activation is None:
            added["features"] += 1
        if item.records.stats is not None:
            repo.set_feature_stats(feature, item.records.stats)
        feature.extra = {**(feature.extra or {}), **item.extra}
        added["records"] += record_store.add_records(session, feature, item.records.records)
    session.flush()  # records and statistics before the bulk statements below
    new = _new_explanations(session, items, features, Path(source).name)
    if new:
        added["explanations"] += len(new)
        added["scores"] += _insert_explanations(session, new, source)
    return added


def _features(session: Session, items: Sequence[ImportedFeature]) -> list[_FeatureRow]:
    """The feature row of each item, inserting the missing ones (with their models and SAEs) in bulk."""
    models: dict[str, SubjectModel] = {}
    saes: dict[tuple[str, str], int] = {}
    seen_info: set[tuple[str, str, str]] = set()
    for item in items:
        fid = item.feature
        model = models.get(fid.model) or repo.get_or_create_model(session, fid.model)
        models[fid.model] = model
        if fid.sae:
            info = json.dumps(item.sae_info, sort_keys=True, default=str)
            if (fid.model, fid.sae, info) not in seen_info:  # each SAE once per distinct description
                seen_info.add((fid.model, fid.sae, info))
                saes[(fid.model, fid.sae)] = repo.get_or_create_sae(session, model, fid.sae, **item.sae_info).id
    ids = _lookup(session, models, [item.feature for item in items])
    missing = list(dict.fromkeys(item.feature for item in items if item.feature not in ids))  # in file order
    if missing:
        insert_rows(session, FEATURES, ("model_id", "layer", "kind", "sae_id", "sae_key", "index"),
                    [(models[f.model].id, f.layer, f.kind, saes[(f.model, f.sae)] if f.sae else None, f.sae or "",
                      f.index) for f in missing],
                    constants={"extra": {}, "dead": False})
        ids.update(_lookup(session, models, missing))
    return [_FeatureRow(ids[item.feature], models[item.feature.model].id, item.feature.layer) for item in items]


def _lookup(session: Session, models: dict[str, SubjectModel], fids: Sequence[FeatureId]) -> dict[FeatureId, int]:
    """The stored ones of these features: feature id -> row id (one query per layer, kind and SAE, per chunk)."""
    groups: dict[tuple[str, int, str, str | None], set[int]] = {}
    for f in fids:
        groups.setdefault((f.model, f.layer, f.kind, f.sae), set()).add(f.index)
    out: dict[FeatureId, int] = {}
    for (model_name, layer, kind, sae), indices in groups.items():
        found = _feature_ids(session, models[model_name].id, layer, kind, sae, indices)
        out.update({FeatureId(model_name, layer, kind, index, sae): row_id for index, row_id in found.items()})
    return out


def _feature_ids(
    session: Session, model_id: int, layer: int, kind: str, sae: str | None, indices: set[int]
) -> dict[int, int]:
    out: dict[int, int] = {}
    for chunk in chunks(sorted(indices)):
        rows = session.execute(select(Feature.index, Feature.id).where(
            Feature.model_id == model_id, Feature.layer == layer, Feature.kind == kind,
            Feature.sae_key == (sae or ""), Feature.index.in_(chunk)))
        out.update({index: feature_id for index, feature_id in rows})
    return out


def _new_explanations(
    session: Session, items: Sequence[ImportedFeature], features: Sequence[_FeatureRow], name: str
) -> list[_NewExplanation]:
    """The file's explanations not stored yet: an explanation is keyed by (feature, file name, its index among
    the feature's explanations); the first of equal keys in a file counts, as does an earlier import."""
    wanted: dict[tuple[int, str, int], _NewExplanation] = {}
    for item, feature in zip(items, features):
        for i, imported in enumerate(item.explanations):
            config = imported.provenance.config if imported.provenance else {"import": name, "item": i}
            wanted.setdefault((feature.id, repo.config_hash(config), i), _NewExplanation(feature, i, config, imported))
    if not wanted:
        return []
    stored = explanation_ids(session, {key[0] for key in wanted}, {key[1] for key in wanted})
    return [new for key, new in wanted.items() if key not in stored]


def _insert_explanations(session: Session, new: list[_NewExplanation], source: str) -> int:
    """Insert explanations with their simulations (per-sequence rows) and scores; returns the number of scores."""
    now = utcnow()
    keys = [(n.feature.id, repo.config_hash(n.config), n.item) for n in new]
    insert_rows(
        session, EXPLANATIONS, ("feature_id", "config_hash", "candidate", "text", "explainer", "params", "source"),
        [(*key, n.imported.text, *_provenance(n.imported, source)) for key, n in zip(keys, new)],
        constants={"status": OutcomeStatus.OK, "polarity": Polarity.POSITIVE, "selected": True, "created_at": now},
    )
    ids = explanation_ids(session, {k[0] for k in keys}, {k[1] for k in keys})
    for key, n in zip(keys, new):
        n.id = ids[key]
    simulated = [n for n in new if n.imported.sequences]
    simulation_ids: dict[int, int] = {}
    if simulated:
        insert_rows(
            session, _SIMULATIONS, ("explanation_id", "feature_id", "config_hash"),
            [(n.id, n.feature.id,
              repo.config_hash({"config": n.config, "role": ScoreRole.OWN, "feature": n.feature.id}))
             for n in simulated],
            constants={"simulator": IMPORT_SIMULATOR, "role": ScoreRole.OWN, "status": OutcomeStatus.OK,
                       "params": {}, "created_at": now},
        )
        simulation_ids = _simulation_ids(session, [n.id for n in simulated])
        insert_rows(
            session, _SIMULATED, ("simulation_id", "position", "tokens", "true_activations", "expected_activations"),
            _simulated_rows(simulated, simulation_ids),
        )
    scores = [(n.id, simulation_ids.get(n.id), n.feature.id, n.feature.model_id, n.feature.layer, *score)
              for n in new for score in _score_values(n.imported)]
    return insert_rows(
        session, SCORES,
        ("explanation_id", "simulation_id", "feature_id", "model_id", "layer", "method", "subset", "value",
         "undefined_reason", "n_records", "simulator", "scorer_hash", "ci_low", "ci_high", "details"),
        scores, constants={"role": ScoreRole.OWN, "created_at": now},
    )


def _provenance(imported: ImportedExplanation, source: str) -> tuple[str, dict, str]:
    """explainer, params and source of an imported explanation's row."""
    p = imported.provenance
    return (p.explainer, p.params, p.source) if p else (IMPORT_EXPLAINER, {}, source)


def _score_values(imported: ImportedExplanation) -> list[tuple]:
    """(method, subset, value, undefined_reason, n_records, simulator, scorer_hash, ci_low, ci_high, details) of
    each score: a file's own numbers (top_and_random) and those computed from its per-example results."""
    own = repo.config_hash({})
    undefined = "undefined in the imported file"
    rows: list[tuple] = [(method, ScoringSubset.TOP_AND_RANDOM, value, None if value is not None else undefined,
                          len(imported.sequences) or None, IMPORT_SIMULATOR, own, None, None, {})
                         for method, value in imported.scores.items()]
    rows += [(s.method, s.subset, s.value, s.undefined_reason, s.n_records, s.simulator,
              repo.config_hash(s.scorer_config), s.ci_low, s.ci_high, {**s.details, "scorer_config": s.scorer_config})
             for s in imported.scored]
    return rows


def _simulated_rows(simulated: list[_NewExplanation], simulation_ids: dict[int, int]) -> list[tuple]:
    rows = []
    for n in simulated:
        for position, s in enumerate(n.imported.sequences):
            values = repo.simulated_values({"tokens": s.tokens, "true_activations": s.true_activations,
                                            "expected_activations": s.expected_activations})
            rows.append((simulation_ids[n.id], position, values["tokens"], values["true_activations"],
                         values["expected_activations"]))
    return rows


def _simulation_ids(session: Session, explanation_ids: list[int]) -> dict[int, int]:
    """explanation id -> its simulation's id (each of these new explanations has exactly one)."""
    out: dict[int, int] = {}
    for chunk in chunks(explanation_ids):
        rows = session.execute(select(Simulation.explanation_id, Simulation.id).where(
            Simulation.explanation_id.in_(chunk)))
        out.update({explanation_id: simulation_id for explanation_id, simulation_id in rows})
    return out
