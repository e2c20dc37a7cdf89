"""`export --format neuronpedia` writes the files Neuronpedia's import reads, valid against the columns of their
published schema (tests/fixtures/neuronpedia-schema/upload-schema.json); its activations import back with our own
importer as the same records; `export --format parquet` loads with Hugging Face `datasets`; bad selections and
outputs fail clearly."""

from __future__ import annotations

import gzip
import json
import os
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from activations.records import ActivationRecord, FeatureId, FeatureStats
from autointerp.cli import main
from scorer import simulation_scorer_config
from storage.core import repository as repo
from storage.core.db import Database
from tests.stored import store_features, store_score

SCHEMA = json.loads((Path(__file__).parent / "fixtures" / "neuronpedia-schema" / "upload-schema.json").read_text())
TABLES = {"features": "Neuron", "activations": "Activation", "explanations": "Explanation",
          "explanation_scores": "ExplanationScore", "source": "Source", "sourceset": "SourceSet",
          "explanation_type": "ExplanationType", "explanation_model_type": "ExplanationModelType",
          "explanation_score_type": "ExplanationScoreType", "explanation_score_model": "ExplanationScoreModel"}
SAE = FeatureId("gpt2-small", 0, "sae_latent", 3, sae="0-res-jb")  # as a Neuronpedia import names it
NEURON = FeatureId("gpt2-small", 0, "mlp_neuron", 7)
EMPTY = FeatureId("gpt2-small", 0, "sae_latent", 4, sae="0-res-jb")


def _records() -> list[ActivationRecord]:
    """Top, random and two quantile bins whose peaks rise with the bin, as collection samples them."""
    def rec(sample: str, peak: float, k: int) -> ActivationRecord:
        return ActivationRecord([" the", " river", f" {k}", " rose"], [0.0, peak, peak / 2, 0.0], sample=sample)
    return ([rec("top", 9.0 - k, k) for k in range(4)] + [rec("random", 0.5 * k, k) for k in range(4)]
            + [rec("quantile:0", 1.0 + 0.1 * k, k) for k in range(4)]
            + [rec("quantile:1", 3.0 + 0.1 * k, k) for k in range(4)])


def fill(db: Database) -> None:
    """An SAE latent with records, an explanation and its scores (one undefined), a failed explanation; an MLP
    neuron with records only; an SAE latent with no records."""
    with db.session() as s, s.begin():
        latent, neuron, _ = store_features(s, [SAE, NEURON, EMPTY], [_records(), _records(), []],
                                           [FeatureStats(max_activation=9.0, firing_fraction=0.01), None, None])
        latent.extra = {"logits": {"promoted": [[" river", 3.5]], "suppressed": [[" the", -1.5]]},
                        "neighbours": [{"index": 4, "similarity": 0.75}]}
        good, _ = repo.add_explanation(s, latent, explainer="openai:gpt-4o-mini", config={}, text="rivers rising",
                                       prompt_version="v3")
        repo.add_explanation(s, latent, explainer="openai:gpt-4o-mini", config={"n": 2}, status="failed",
                             failure_reason="echo of the prompt", prompt_version="v3")
        for subset, value in (("top_and_random", 0.62), ("random_only", None)):
            store_score(s, good, latent, method="ev_correlation", subset=subset, value=value,
                        undefined_reason=None if value is not None else "constant input",
                        scorer_config=simulation_scorer_config())
        store_score(s, good, latent, method="ev_correlation", subset="top_and_random", value=0.1, role="shuffled",
                    scorer_config={"s": 2})


def cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def read_rows(path: Path) -> list[dict]:
    text = gzip.decompress(path.read_bytes()).decode() if path.suffix == ".gz" else path.read_text()
    return [json.loads(line) for line in text.splitlines()]


def validate(row: dict, table: str) -> None:
    import jsonschema
    jsonschema.validate(row, {**SCHEMA["$defs"][table], "$defs": SCHEMA["$defs"]})


def test_files_follow_neuronpedias_schema(db_url, db, tmp_path):
    fill(db)
    code, output = cli("export", "--format", "neuronpedia", "--out", str(tmp_path / "np"), "--db", db_url)
    assert code == 0, output
    assert "1 feature(s) have no records: written as features without activations (gpt2-small/0-res-jb/4)" in output
    assert "1 undefined score(s) left out" in output
    files = sorted(p.relative_to(tmp_path / "np").as_posix() for p in (tmp_path / "np").rglob("*") if p.is_file())
    assert files == [f"config/{name}.jsonl" for name in ("explanation_model_type", "explanation_score_model",
                                                         "explanation_score_type", "explanation_type")] + [
        f"gpt2-small/0-mlp-neurons/{f}" for f in ("activations/batch-0.jsonl.gz", "features/batch-0.jsonl.gz",
                                                  "source.jsonl", "sourceset.jsonl")] + [
        f"gpt2-small/0-res-jb/{f}" for f in ("activations/batch-0.jsonl.gz", "explanation_scores/batch-0.jsonl.gz",
                                             "explanations/batch-0.jsonl.gz", "features/batch-0.jsonl.gz",
                                             "source.jsonl", "sourceset.jsonl")]
    rows: dict[str, list[dict]] = {}
    for name in files:
        parts = name.split("/")  # <model>/<source>/<table folder>/batch-0.jsonl.gz, or a .jsonl named by its table
        table = TABLES[parts[2] if len(parts) == 4 else parts[-1].removesuffix(".jsonl")]
        for row in read_rows(tmp_path / "np" / name):
            validate(row, table)
            rows.setdefault(table, []).append(row)
    assert Counter(r["layer"] for r in rows["Activation"]) == {"0-res-jb": 16, "0-mlp-neurons": 16}
    latent = next(r for r in rows["Neuron"] if r["layer"] == "0-res-jb" and r["index"] == "3")
    assert (latent["pos_str"], latent["neg_values"], latent["topkCosSimIndices"]) == ([" river"], [-1.5], [4])
    assert "frac_nonzero" not in next(r for r in rows["Neuron"] if r["layer"] == "0-mlp-neurons")  # unknown
    [explanation] = rows["Explanation"]  # the failed one has no text to show
    assert (explanation["description"], explanation["typeName"]) == ("rivers rising", "autointerp-v3")
    assert {(r["explanationScoreTypeName"], r["value"]) for r in rows["ExplanationScore"]} == {
        ("autointerp-ev_correlation-top_and_random", 0.62), ("autointerp-ev_correlation-top_and_random-shuffled", 0.1)}
    assert all(r["explanationId"] == explanation["id"] for r in rows["ExplanationScore"])
    assert {r["name"] for r in rows["ExplanationScoreType"]} == {r["explanationScoreTypeName"]
                                                                for r in rows["ExplanationScore"]}
    assert [r["name"] for r in rows["ExplanationModelType"]] == ["openai:gpt-4o-mini"]


def test_schema_check_catches_a_wrong_field(tmp_path):
    """The fixture schema is strict enough to fail: a misspelt column and a value of the wrong type."""
    import jsonschema
    row = {"modelId": "m", "layer": "0-x", "index": "1", "tokens": ["a"], "values": [1.0], "maxValue": 1.0,
           "maxValueTokenIndex": 0, "minValue": 1.0, "creatorId": "c"}
    validate(row, "Activation")
    for bad in ({**row, "maxvalue": 1.0}, {**row, "index": 1}, {k: v for k, v in row.items() if k != "values"}):
        with pytest.raises(jsonschema.ValidationError):
            validate(bad, "Activation")


def _record_set(doc: dict) -> Counter:
    return Counter((r["sample"], tuple(r["tokens"]), tuple(r["activations"])) for r in doc["records"])


def test_activations_import_back_as_the_same_records(db_url, db, tmp_path):
    fill(db)
    assert cli("export", "--format", "neuronpedia", "--out", str(tmp_path / "np"), "--db", db_url)[0] == 0
    assert cli("export", "--format", "jsonl", "--out", str(tmp_path / "before.jsonl"), "--db", db_url)[0] == 0
    fresh = f"sqlite:///{tmp_path / 'fresh.db'}"
    Database(fresh).dispose()
    code, output = cli("import", str(tmp_path / "np" / "gpt2-small" / "0-res-jb" / "activations"), "--db", fresh)
    assert code == 0, output
    assert cli("export", "--format", "jsonl", "--out", str(tmp_path / "after.jsonl"), "--db", fresh)[0] == 0
    before = {d["index"]: d for d in read_rows(tmp_path / "before.jsonl") if d["kind"] == "sae_latent"}
    after = {d["index"]: d for d in read_rows(tmp_path / "after.jsonl")}
    assert list(after) == [3]  # the latent without records has no activation rows
    assert (after[3]["model"], after[3]["layer"], after[3]["sae"]) == ("gpt2-small", 0, "0-res-jb")
    assert _record_set(after[3]) == _record_set(before[3])
    # Importing again adds nothing; so does a second export's identical files (stable ids, no timestamps).
    assert "added 0 features, 0 records" in cli("import", str(tmp_path / "np"/ "gpt2-small" / "0-res-jb" /
                                                             "activations"), "--db", fresh)[1]
    assert cli("export", "--format", "neuronpedia", "--out", str(tmp_path / "np2"), "--db", db_url)[0] == 0
    for path in (tmp_path / "np").rglob("*.gz"):
        assert path.read_bytes() == (tmp_path / "np2" / path.relative_to(tmp_path / "np")).read_bytes()


def test_parquet_export_loads_with_hf_datasets(db_url, db, tmp_path):
    datasets = pytest.importorskip("datasets", reason="Hugging Face datasets is the optional hf extra")
    fill(db)
    out = tmp_path / "all.parquet"
    assert cli("export", "--format", "parquet", "--out", str(out), "--db", db_url)[0] == 0
    loaded = datasets.load_dataset("parquet", data_files=str(out), split="train", cache_dir=str(tmp_path / "hf"))
    table = pq.read_table(out)
    assert loaded.column_names == table.column_names
    assert loaded.to_list() == table.to_pylist()
    assert [(r["kind"], r["index"], len(r["records"])) for r in loaded] == [
        ("mlp_neuron", 7, 16), ("sae_latent", 3, 16), ("sae_latent", 4, 0)]
    assert loaded[1]["explanations"][0]["scores"][0]["value"] == 0.62
    assert loaded[1]["logits"] == {"promoted": [{"token": " river", "logit": 3.5}],
                                   "suppressed": [{"token": " the", "logit": -1.5}]}


def test_empty_selection_and_bad_out_fail_clearly(db_url, db, tmp_path):
    code, output = cli("export", "--format", "neuronpedia", "--out", str(tmp_path / "np"), "--db", db_url)
    assert code != 0 and "nothing to export: the database has no features yet" in output
    assert not (tmp_path / "np").exists() and not (tmp_path / "np.partial").exists()
    fill(db)
    code, output = cli("export", "--format", "neuronpedia", "--layer", "5", "--out", str(tmp_path / "np"),
                       "--db", db_url)
    assert code != 0 and "no feature in this database matches layer 5; it has: gpt2-small" in output
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "old.txt").write_text("x")
    code, output = cli("export", "--format", "neuronpedia", "--out", str(tmp_path / "taken"), "--db", db_url)
    assert code != 0 and "is a folder that is not empty" in output and "choose another --out" in output
    code, output = cli("export", "--format", "jsonl", "--out", str(tmp_path / "taken"), "--db", db_url)
    assert code != 0 and "is a folder; this format writes one file" in output
    code, output = cli("export", "--format", "neuronpedia", "--out", str(tmp_path / "missing" / "np"), "--db", db_url)
    assert code != 0 and "does not exist" in output
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        code, output = cli("export", "--format", "neuronpedia", "--out", str(locked / "np"), "--db", db_url)
        assert code != 0 and "is not writable" in output


def test_malformed_activation_row_names_file_and_field(db_url, db, tmp_path):
    row = {"modelId": "m", "layer": "res-jb", "index": "1", "tokens": ["a"], "values": [1.0]}
    path = tmp_path / "batch-0.jsonl.gz"
    path.write_bytes(gzip.compress((json.dumps(row) + "\n").encode()))
    code, output = cli("import", str(path), "--db", db_url)
    assert code != 0 and f"{path}:1: field 'layer': expected a source id '<layer>-<set>'" in output
    path.write_bytes(gzip.compress((json.dumps({**row, "layer": "0-x", "values": [1.0, 2.0]}) + "\n").encode()))
    code, output = cli("import", str(path), "--db", db_url)
    assert code != 0 and f"{path}:1: field 'values'" in output
