"""`--evidence activations+logits`: the logit lens in the explanation prompt (every format), its own prompt version,
and the CLI on a layer whose features have (and lack) stored logits — through the fake OpenAI server."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from activations.records import ActivationRecord
from autointerp.cli import main
from explainer import EvidenceError
from explainer.evidence import logits_note
from storage.core import repository as repo
from storage.core.db import Database
from storage.core.schema import Explanation, Feature
from tests.pipeline_data import fill_layer
from tests.test_explainer import feature, last_user_message, run_explain

LOGITS = {"promoted": [[" Paris", 3.5], [" London", 3.1]], "suppressed": [["\n", -2.0], [" the", -1.5]]}
RECORDS = feature(ActivationRecord(["The", " capital", " is"], [0, 4.0, 1.0], label="top[0]"))


@pytest.mark.parametrize("fmt", ["token_activation_pairs", "highlight"])
def test_prompt_names_promoted_and_suppressed_tokens_and_its_version(fake_openai, fmt):
    seen = last_user_message(fake_openai)
    (result,), _ = run_explain(fake_openai, RECORDS, fmt=fmt, output_logits=LOGITS)
    user = seen[0]["messages"][-1]["content"]
    assert "more likely to predict next ' Paris', ' London'" in user and "less likely '\\n', ' the'" in user
    assert result.prompt_version.endswith("+logits/v1+top") and result.params["evidence"] == "activations+logits"
    (plain,), _ = run_explain(fake_openai, RECORDS, fmt=fmt)
    assert "logits" not in plain.prompt_version and "Output effect" not in seen[-1]["messages"][-1]["content"]


def test_snippets_document_carries_the_line_before_the_summary(fake_openai):
    seen: list[dict] = []

    def answer(endpoint: str, body: dict) -> str:
        seen.append(body)
        return " capital cities"

    fake_openai.answer = answer
    (result,), _ = run_explain(fake_openai, RECORDS, fmt="snippets", output_logits=LOGITS)
    prompt = seen[0]["prompt"]
    last_block = prompt.rsplit("\n\n", 1)[1]  # the feature's block, after the few-shot neurons' blocks
    assert "Output effect" in last_block and last_block.index("Output effect") < last_block.index("Summary:")
    assert prompt.count("Output effect") == 1 and result.ok


def test_negative_polarity_swaps_what_is_raised():
    note = logits_note(LOGITS, negative=True)
    assert note.index("' the'") < note.index("less likely") < note.index("' Paris'")


@pytest.mark.parametrize("bad", [{}, {"promoted": [[" a", 1.0]]}, {"promoted": "x", "suppressed": []}])
def test_unusable_logits_are_a_clear_error(bad):
    with pytest.raises(EvidenceError):
        logits_note(bad)


def _cli(*args: str):
    return CliRunner().invoke(main, ["explain", "--model", "tiny-model", "--layer", "6", "--explainer", "openai:fake",
                                     "--simulator", "logprob:openai:fake", "--no-shuffled-baseline", *args])


def test_cli_evidence_needs_stored_logits_and_resumes_apart(fake_openai, sqlite_url):
    fill_layer(Database(sqlite_url), 3)
    for dry in ([], ["--dry-run"]):
        refused = _cli("--evidence", "activations+logits", *dry, "--db", sqlite_url)
        assert refused.exit_code != 0 and "no stored logit lens" in refused.output
        assert "autointerp collect --model tiny-model --layers 6 --overwrite" in refused.output
    assert fake_openai.requests == 0  # refused before any call

    db = Database(sqlite_url)
    with db.session() as s, s.begin():
        for row in s.scalars(select(Feature)):
            row.extra = {**row.extra, "logits": LOGITS}
    estimates = [json.loads(_cli(*evidence, "--dry-run", "--db", sqlite_url).output)
                 for evidence in ([], ["--evidence", "activations+logits"])]
    assert estimates[1]["explainer"]["prompt_tokens"] > estimates[0]["explainer"]["prompt_tokens"]
    seen = last_user_message(fake_openai)
    plain = _cli("--db", sqlite_url)
    assert plain.exit_code == 0, plain.output
    assert not any("Output effect" in json.dumps(b) for b in seen)
    with_logits = _cli("--evidence", "activations+logits", "--db", sqlite_url)  # another configuration: not skipped
    assert with_logits.exit_code == 0 and "3 done" in with_logits.output, with_logits.output
    assert any("' Paris', ' London'" in json.dumps(b) for b in seen)
    with db.session() as s:
        versions = sorted(set(s.scalars(select(Explanation.prompt_version))))
        assert len(versions) == 2 and versions[0].endswith("+logits/v1+top")
        feature_row = repo.get_feature(s, 1)
        assert feature_row.extra["logits"] == LOGITS


def test_explainer_fails_without_a_call_when_logits_are_asked_for_but_missing(fake_openai):
    (result,), _ = run_explain(fake_openai, RECORDS, output_logits={})
    assert not result.ok and "no logit lens stored" in result.failure_reason and "--overwrite" in result.failure_reason
    assert fake_openai.requests == 0
