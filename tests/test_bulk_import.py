"""Bulk writes store exactly what the per-object (ORM) path stores: a large generated OpenAI explanation file
imports in bulk, the same rows as repository.add_explanation / add_simulation / add_scores would write, and a
second import adds nothing; bulk-added scored explanations match their ORM twins column for column."""

from __future__ import annotations

import json
import random
from pathlib import Path

from click.testing import CliRunner
from sqlalchemy import func, select

from activations.importers import parse_file
from activations.records import FeatureId
from activations.vocab import OutcomeStatus, ScoreRole, ScoringSubset
from autointerp.cli import main
from storage.core import repository as repo
from storage.core.activation_codec import decode
from storage.core.db import Database
from storage.core.schema import Explanation, Feature, Score, SimulatedRecord, Simulation, SubjectModel
from storage.records.bulk import ScoredExplanationRow, bulk_add_features, bulk_add_scored_explanations
from storage.records.import_store import IMPORT_SIMULATOR
from tests.stored import store_features

WORDS = "digits years colours names cities verbs commas quotes code music films rivers birds food prices".split()


def explanation_file(path: Path, n_neurons: int, seed: int = 0) -> Path:
    """An OpenAI explanation JSONL: per neuron 1-3 scored explanations, some with simulated sequences, some
    scores undefined (null), and one neuron listed twice (its second listing's explanations are not new)."""
    rng = random.Random(seed)
    lines = []
    for n in range(n_neurons):
        explanations = []
        for i in range(1 + n % 3):
            sim: dict = {"ev_correlation_score": None if n % 17 == 0 else round(rng.uniform(-0.2, 1), 4)}
            if i == 0:
                sim["rsquared_score"] = round(rng.uniform(-1, 1), 4)
                sim["absolute_dev_explained_score"] = round(rng.uniform(-1, 1), 4)
            if n % 4 == 0 and i == 0:
                sim["scored_sequence_simulations"] = [
                    {"simulation": {"tokens": [rng.choice(WORDS) for _ in range(6)],
                                    "expected_activations": [round(rng.uniform(0, 10), 3) for _ in range(6)]},
                     "true_activations": [round(rng.uniform(0, 3), 4) for _ in range(6)],
                     "ev_correlation_score": 0.5}
                    for _ in range(2)
                ]
            explanations.append({"explanation": f"{rng.choice(WORDS)} and {rng.choice(WORDS)} ({n}.{i})",
                                 "scored_simulation": sim})
        lines.append({"neuron_id": {"layer_index": n % 3, "neuron_index": n}, "scored_explanations": explanations})
    lines.append({"neuron_id": {"layer_index": 1, "neuron_index": 1},
                  "scored_explanations": [{"explanation": "a duplicate listing", "scored_simulation": {}}]})
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    return path


def orm_import(db: Database, path: Path) -> None:
    """The per-object import every file went through before the bulk path (the reference semantics)."""
    name = path.name
    with db.session() as s, s.begin():
        for item in parse_file(path, model="gpt2-xl"):
            (feature,) = store_features(s, [item.feature])  # features as every import stores them
            for i, imported in enumerate(item.explanations):
                explanation, created = repo.add_explanation(
                    s, feature, explainer="import:openai", config={"import": name, "item": i}, text=imported.text,
                    status=OutcomeStatus.OK, candidate=i, source=str(path), params={}, prompt_version=None)
                if not created:
                    continue
                simulation = None
                if imported.sequences:
                    simulation, _ = repo.add_simulation(
                        s, explanation, feature, simulator=IMPORT_SIMULATOR, config={"import": name, "item": i},
                        records=[{"tokens": q.tokens, "true_activations": q.true_activations,
                                  "expected_activations": q.expected_activations} for q in imported.sequences])
                repo.add_scores(s, explanation, feature, [
                    {"method": method, "subset": ScoringSubset.TOP_AND_RANDOM, "value": value,
                     "undefined_reason": None if value is not None else "undefined in the imported file",
                     "n_records": len(imported.sequences) or None} for method, value in imported.scores.items()],
                    simulation=simulation, simulator=IMPORT_SIMULATOR)


def contents(db: Database) -> dict[str, list]:
    """Every row that matters, ids replaced by natural keys, timestamps left out."""
    with db.session() as s:
        features = {f.id: (f.layer, f.kind, f.sae_key, f.index, f.dead, f.extra, f.max_activation)
                    for f in s.scalars(select(Feature))}
        models = {m.id: m.name for m in s.scalars(select(SubjectModel))}
        explanations = {e.id: (features[e.feature_id], e.text, e.explainer, e.config_hash, e.candidate, e.status,
                               e.polarity, e.selected, e.source, e.params, e.prompt_version, e.run_id)
                        for e in s.scalars(select(Explanation))}
        simulations = {m.id: (explanations[m.explanation_id], features[m.feature_id], m.simulator, m.config_hash,
                              m.role, m.status, m.failure_reason, m.params)
                       for m in s.scalars(select(Simulation))}
        simulated = [(simulations[r.simulation_id], r.position, r.record_id, r.sample, r.tokens,
                      decode(r.true_activations) if r.true_activations is not None else None,
                      decode(r.expected_activations), r.distribution)
                     for r in s.scalars(select(SimulatedRecord))]
        scores = [(explanations[c.explanation_id], simulations.get(c.simulation_id) if c.simulation_id else None,
                   features[c.feature_id], models[c.model_id], c.layer, c.method, c.subset, c.role, c.simulator,
                   c.scorer_hash, c.value, c.undefined_reason, c.ci_low, c.ci_high, c.n_records, c.details, c.run_id)
                  for c in s.scalars(select(Score))]
        return {"features": sorted(map(repr, features.values())), "models": sorted(models.values()),
                "explanations": sorted(map(repr, explanations.values())),
                "simulations": sorted(map(repr, simulations.values())),
                "simulated": sorted(map(repr, simulated)), "scores": sorted(map(repr, scores))}


def test_large_explanation_file_imports_in_bulk_as_the_orm_would(tmp_path, db_url, db):
    path = explanation_file(tmp_path / "explanations.jsonl", 1_200)
    result = CliRunner().invoke(main, ["import", str(path), "--db", db_url, "--model", "gpt2-xl"])
    assert result.exit_code == 0, result.output
    with db.session() as s:
        n = {t.__name__: s.scalar(select(func.count()).select_from(t))
             for t in (Feature, Explanation, Simulation, SimulatedRecord, Score)}
    # 1,200 neurons with 1, 2 or 3 explanations; every 4th neuron's first explanation simulated on 2 sequences;
    # the duplicate listing of neuron 1 adds nothing. First explanations carry three scores, the others one.
    # (More rows than one multi-row INSERT holds, so full statements and a remainder are both written.)
    assert n == {"Feature": 1_200, "Explanation": 2_400, "Simulation": 300, "SimulatedRecord": 600,
                 "Score": 1_200 * 3 + 1_200}
    assert "added 0 features, 0 records, 2400 explanations, 4800 scores" in result.output
    first = contents(db)

    again = CliRunner().invoke(main, ["import", str(path), "--db", db_url, "--model", "gpt2-xl"])
    assert again.exit_code == 0 and "added 0 features, 0 records, 0 explanations, 0 scores" in again.output
    assert contents(db) == first

    reference = Database(f"sqlite:///{tmp_path / 'reference.db'}")
    orm_import(reference, path)
    assert contents(reference) == first
    reference.dispose()

    rows = json.loads(CliRunner().invoke(main, ["query", "--db", db_url, "--format", "json", "--layer", "0",
                                                "--no-records", "--limit", "5", "--include-imported"]).output)
    assert rows[0]["score"] is not None and rows[0]["explanation"] and rows[0]["score_imported"] is True
    found = json.loads(CliRunner().invoke(main, ["query", "--db", db_url, "--format", "json", "--search", "rivers",
                                                 "--no-records", "--limit", "200", "--include-imported"]).output)
    assert found and all("rivers" in r["explanation"] for r in found)  # the full-text index saw every row


def test_bulk_scored_explanations_match_the_orm(db):
    with db.session() as s, s.begin():
        model_id = repo.get_or_create_model(s, "m").id
        bulk_ids = bulk_add_features(s, model_id, 4, range(2_345))
        orm_feature = store_features(s, [FeatureId("m", 5, "mlp_neuron", 0)])[0]
        rows = [ScoredExplanationRow(feature_id=fid, model_id=model_id, layer=4, text=f"text {i}", explainer="openai:x",
                                     candidate=i % 2, scores={("ev_correlation", "top_and_random"): i / 10,
                                                              ("ev_correlation", "random_only"): None},
                                     simulator="embedding")
                 for i, fid in enumerate(bulk_ids)]
        assert bulk_add_scored_explanations(s, rows, config={"c": 1}) == 2_345 * 3
        twin, _ = repo.add_explanation(s, orm_feature, explainer="openai:x", config={"c": 1}, text="text 7",
                                       candidate=1)
        for subset, value, reason in (("top_and_random", 0.7, None), ("random_only", None, "constant input")):
            repo.add_scores(s, twin, orm_feature, [{"method": "ev_correlation", "subset": subset, "value": value,
                                                    "undefined_reason": reason}], simulator="embedding")
    with db.session() as s:
        features = list(s.scalars(select(Feature).where(Feature.layer == 4).order_by(Feature.index)))
        assert [f.id for f in features] == bulk_ids and [f.index for f in features] == list(range(2_345))
        assert all(f.extra == {} and f.dead is False and f.sae_key == "" for f in features)
        bulk = s.scalars(select(Explanation).where(Explanation.feature_id == bulk_ids[7])).one()
        orm = s.get(Explanation, twin.id)
        skip = {"id", "feature_id", "created_at"}
        columns = [c.key for c in Explanation.__table__.columns if c.key not in skip]
        assert {c: getattr(bulk, c) for c in columns} == {c: getattr(orm, c) for c in columns}
        assert bulk.created_at is not None
        bulk_scores = sorted(s.scalars(select(Score).where(Score.explanation_id == bulk.id)), key=lambda r: r.subset)
        orm_scores = sorted(s.scalars(select(Score).where(Score.explanation_id == orm.id)), key=lambda r: r.subset)
        skip |= {"explanation_id", "layer", "scorer_hash"}  # the ORM path hashes the (empty) scorer config
        columns = [c.key for c in Score.__table__.columns if c.key not in skip]
        assert [[getattr(r, c) for c in columns] for r in bulk_scores] == \
            [[getattr(r, c) for c in columns] for r in orm_scores]
        assert [r.role for r in bulk_scores] == [ScoreRole.OWN] * 2 and bulk_scores[0].details == {}
