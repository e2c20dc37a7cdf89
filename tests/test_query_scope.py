"""A model, layer, kind or SAE that matches nothing in the database is an error naming what it does hold (exit 1),
for `query` and `export`; a valid filter that simply matches no score is an ordinary empty answer (exit 0)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from autointerp.cli import main
from tests.test_api_data import fill

HELD = "it has: toy-model layers 0 (mlp_neuron), 1 (mlp_neuron)"


def invoke(*args: object):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.mark.parametrize("command", ["query", "export"])
@pytest.mark.parametrize("flags, named", [
    (("--model", "does-not-exist"), "model 'does-not-exist'"),
    (("--layer", 7), "layer 7"),
    (("--model", "toy-model", "--sae", "res-jb"), "model 'toy-model', sae 'res-jb'"),
    (("--layer", 1, "--kind", "sae_latent"), "layer 1, kind 'sae_latent'"),
])
def test_filter_matching_nothing_names_what_is_there(db_url, db, tmp_path, command, flags, named):
    fill(db)
    out = tmp_path / "out.jsonl"
    args = ("--out", out) if command == "export" else ()
    result = invoke(command, "--db", db_url, *flags, *args)
    assert result.exit_code == 1, result.output
    assert f"no feature in this database matches {named}; {HELD}" in result.output
    assert "Traceback" not in result.output
    assert not out.exists() and not list(tmp_path.glob("*.partial"))  # nothing half-written


def test_empty_database_says_so(db_url, db):
    result = invoke("query", "--db", db_url, "--model", "gpt2-small")
    assert result.exit_code == 1
    assert "the database has no features yet" in result.output


def test_valid_filter_without_scores_is_an_empty_answer(db_url, db, tmp_path):
    fill(db)
    result = invoke("query", "--db", db_url, "--layer", 1, "--min-score", 0.99, "--format", "json")
    assert result.exit_code == 0 and json.loads(result.output) == []
    result = invoke("export", "--db", db_url, "--model", "toy-model", "--layer", 0, "--out", tmp_path / "l0.jsonl")
    assert result.exit_code == 0 and len((tmp_path / "l0.jsonl").read_text().splitlines()) == 1
