"""`autointerp simulate` through click's CliRunner, simulating with a real HTTP fake OpenAI-compatible server."""

from __future__ import annotations

import json
from typing import Any

import pytest
from click.testing import CliRunner

import scorer
from autointerp.cli import main
from tests.test_simulator_json import _reply_for

RECORDS: list[dict[str, Any]] = [{"tokens": ["The", " red", " car"], "activations": [0, 5, 0]}, {"tokens": [" blue", " sky"], "activations": [3, 0]}]


@pytest.fixture
def records_file(tmp_path):
    path = tmp_path / "recs.json"
    path.write_text(json.dumps(RECORDS))
    return str(path)


def _invoke(args: list[str]):
    return CliRunner().invoke(main, ["simulate", *args], catch_exceptions=False)


def test_single_explanation_prints_flat_json_with_scores(fake_openai, records_file):
    fake_openai.answer = _reply_for
    fake_openai.digit_for = lambda token: int(token) if token.strip().isdigit() else 0
    result = _invoke(["--simulator", "json:openai:fake-model", "--explanation", "colour words", "--records", records_file,
                      "--base-url", fake_openai.url])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["simulator"] == "json:openai:fake-model" and doc["explanation"] == "colour words"
    assert [len(r) for r in doc["expected_activations"]] == [3, 2]
    real = [r["activations"] for r in RECORDS]
    assert doc["scores"]["ev_correlation"] == pytest.approx(scorer.ev_correlation(real, doc["expected_activations"]))
    assert doc["scores"]["rsquared"] == pytest.approx(scorer.rsquared(real, doc["expected_activations"]))


def test_several_explanations_and_no_activations(fake_openai, tmp_path):
    fake_openai.answer = _reply_for
    path = tmp_path / "tokens_only.json"
    path.write_text(json.dumps([{"tokens": r["tokens"]} for r in RECORDS]))
    result = _invoke(["--simulator", "json:openai:fake-model", "--explanation", "colour words", "--explanation", "cars",
                      "--records", str(path), "--base-url", fake_openai.url])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert [r["explanation"] for r in doc["results"]] == ["colour words", "cars"]
    assert all("scores" not in r and len(r["expected_activations"]) == 2 for r in doc["results"])


def test_undefined_score_is_null_with_reason(fake_openai, tmp_path):
    fake_openai.answer = _reply_for
    path = tmp_path / "zeros.json"
    path.write_text(json.dumps([{"tokens": ["The", " red"], "activations": [0, 0]}]))
    result = _invoke(["--simulator", "json:openai:fake-model", "--explanation", "colour words", "--records", str(path),
                      "--base-url", fake_openai.url])
    scores = json.loads(result.stdout)["scores"]
    assert scores["ev_correlation"] is None and "constant" in scores["undefined_reasons"]["ev_correlation"]


@pytest.mark.parametrize("content, message", [
    ("not json", "not valid JSON"),
    ('[{"tokens": ["a"]}, {"tokens": "a b"}]', 'record 1: "tokens" must be a non-empty list of strings'),
    ('[{"tokens": ["a", "b"], "activations": [1]}]', 'record 0: "activations" must be a list with one number per token'),
    ('[{"tokens": ["a"], "activations": [1]}, {"tokens": ["b"]}]', "record 1 has no activations but record 0 does"),
])
def test_bad_records_file_names_file_and_record(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    result = CliRunner().invoke(main, ["simulate", "--simulator", "embedding", "--explanation", "x", "--records", str(path)])
    assert result.exit_code != 0
    assert str(path) in result.output and message in result.output


def test_help_has_an_example():
    result = _invoke(["--help"])
    assert "autointerp simulate --simulator embedding" in result.output and "--explanation" in result.output
