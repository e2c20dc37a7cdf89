"""`autointerp import` of a delphi run folder: run_config.json, explanations/ and scores/<scorer>/ in delphi's
published format (tests/delphi_run.py), beside the latent cache of tests/test_delphi_import.py. Explanations land on
the cache's latents with their provenance; detection and fuzz files are scored here under this project's methods
(known answers), labelled imported; unmatched delphi settings are named, not stored; on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from sqlalchemy import func, select
from transformers import AutoTokenizer

from activations.records import FeatureId
from autointerp.cli import main
from llm_client.local_models import resolve_model_path
from storage.core import repository as repo
from storage.core.schema import ActivationRecordRow, Explanation, Feature, Score
from storage.reads.queries import FeatureQuery, best_scores
from tests.conftest import FIXTURES
from tests.delphi_run import EXPECTED, HOOK, run_config, write_run
from tests.test_delphi_import import MODEL, make_tokens, planted_latent2

RUN = FIXTURES / "delphi"


def cli(*args: object):
    return CliRunner().invoke(main, [str(a) for a in args])


def counts(db) -> tuple[int, ...]:
    with db.session() as s:
        return tuple(s.scalar(select(func.count()).select_from(t)) for t in (Feature, ActivationRecordRow, Explanation,
                                                                            Score))


def explanation_only_copy(tmp_path: Path) -> Path:
    """The fixture run without its latent cache (no tokenizer needed)."""
    run = tmp_path / "run"
    shutil.copytree(RUN, run, ignore=shutil.ignore_patterns("latents"))
    return run


def test_fixture_is_written_by_the_generator(tmp_path):
    tokens = make_tokens()
    decode = AutoTokenizer.from_pretrained(resolve_model_path(MODEL)).decode
    token5 = int(tokens[0, 3])
    latents = {2: planted_latent2(), 5: {(int(s), int(p)): 3.0 for s, p in zip(*np.nonzero(tokens == token5))}}
    written = write_run(tmp_path, tokens, latents, decode)
    for file in sorted(p for p in written.rglob("*") if p.is_file()):
        assert file.read_bytes() == (RUN / file.relative_to(written)).read_bytes(), file


def test_import_run_with_cache_scores_and_provenance(db_url, db):
    result = cli("import", RUN, "--model", MODEL, "--db", db_url)
    assert result.exit_code == 0, result.output
    assert "added 8 features, 212 records, 2 explanations, 6 scores" in result.output
    with db.session() as s:
        rows = s.execute(select(Feature.index, Score.method, Score.subset, Score.value, Score.simulator, Score.details)
                         .join(Feature, Feature.id == Score.feature_id)).all()
        got = {(index, method): value for index, method, subset, value, _, _ in rows if subset == "random"}
        assert got == pytest.approx(EXPECTED) and len(rows) == len(EXPECTED)
        assert {r.simulator for r in rows} == {"import:delphi"}
        detection5 = next(r.details for r in rows if (r.index, r.method) == (5, "detection_balanced_accuracy"))
        assert (detection5["n_failed"], detection5["n_positive"], detection5["n_negative"]) == (1, 4, 4)
        assert detection5["scorer_config"]["explainer_model"] == run_config()["explainer_model"]
        feature = repo.find_feature(s, FeatureId(MODEL, 3, "sae_latent", 5, sae=HOOK))
        assert feature is not None and feature.max_activation == 3.0  # the cache's latent, not a new feature
        explanation = s.scalar(select(Explanation).where(Explanation.feature_id == feature.id))
        assert explanation is not None and explanation.text == 'the word " children"'
        assert explanation.explainer == "import:delphi"
        assert explanation.params["explainer_model"] == run_config()["explainer_model"]
        assert explanation.source is not None and explanation.source.endswith(f"explanations/{HOOK}_latent5.txt")
        # imported scores rank only when asked for
        query = FeatureQuery(layer=3, method="detection_balanced_accuracy", subset="random")
        assert best_scores(s, query) == []
        ranked = best_scores(s, FeatureQuery(layer=3, method="detection_balanced_accuracy", subset="random",
                                             include_imported=True))
        assert [(fid, value, imported) for fid, value, _, imported in ranked] == [(feature.id, 0.75, True)]
    before = counts(db)
    again = cli("import", RUN, "--model", MODEL, "--db", db_url)
    assert again.exit_code == 0 and "added 0 features, 0 records, 0 explanations, 0 scores" in again.output
    assert counts(db) == before


def test_unmatched_settings_are_named_not_stored(tmp_path, db_url, db):
    run = explanation_only_copy(tmp_path)
    config = {**run_config(), "fuzz_type": "default"}  # default fuzzing on random text: no method here
    (run / "run_config.json").write_text(json.dumps(config))
    (run / "scores" / "simulation").mkdir()
    (run / "scores" / "simulation" / f"{HOOK}_latent5.txt").write_text("[]")
    result = cli("import", run, "--model", MODEL, "--db", db_url)
    assert result.exit_code == 0, result.output
    assert "2 explanations, 2 scores" in result.output
    assert "not imported as scores: 2 file(s)" in result.output and "fuzz_type=default" in result.output
    assert "1 file(s)" in result.output and "simulation" in result.output
    with db.session() as s:
        assert set(s.scalars(select(Score.method))) == {"detection_balanced_accuracy", "detection_auroc"}


def _replace(file: Path, old: str, new: str) -> None:
    text = file.read_text()
    assert old in text
    file.write_text(text.replace(old, new, 1))


EXPL5 = f"explanations/{HOOK}_latent5.txt"
DET5 = f"scores/detection/{HOOK}_latent5.txt"


@pytest.mark.parametrize("break_it, expected", [
    (lambda r: (r / "run_config.json").unlink(), "run_config.json: missing"),
    (lambda r: (r / EXPL5).write_text('"unterminated'), f"{EXPL5}: not valid JSON"),
    (lambda r: (r / EXPL5).write_text('{"text": "x"}'), f"{EXPL5}: expected the explanation as a non-empty JSON string"),
    (lambda r: _replace(r / DET5, '"activating":true', '"activating":"yes"'),
     f"{DET5}: field '[0].activating': expected true or false"),
    (lambda r: _replace(r / DET5, '"probability":0.9', '"probability":1.9'),
     f"{DET5}: field '[0].probability': expected a probability in [0, 1]"),
    (lambda r: _replace(r / DET5, '"distance":1,', ''), f"{DET5}: field '[0].distance': missing"),
    (lambda r: (r / EXPL5).unlink(), f"{DET5}: no explanation file explanations/{HOOK}_latent5.txt"),
    (lambda r: (r / "explanations" / "notes.txt").write_text('"x"'), "notes.txt: delphi names a latent's file"),
])
def test_malformed_run_names_file_and_field_and_writes_nothing(tmp_path, db_url, db, break_it, expected):
    run = explanation_only_copy(tmp_path)
    break_it(run)
    result = cli("import", run, "--model", MODEL, "--db", db_url)
    assert result.exit_code == 1 and expected in result.output, result.output
    assert counts(db) == (0, 0, 0, 0)


def test_run_needs_the_model(tmp_path, db_url, db):
    result = cli("import", explanation_only_copy(tmp_path), "--db", db_url)
    assert result.exit_code == 1 and "needs --model" in result.output and "HuggingFaceTB/SmolLM2-135M" in result.output
    assert counts(db) == (0, 0, 0, 0)
