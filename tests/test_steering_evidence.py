"""`--evidence activations+steering`: the feature's stored steered beside unsteered continuations in the explanation
prompt (every format), its own prompt version and config hash, the refusal when a feature was never steered, and an
explain run over the fake OpenAI server (real HTTP) reading steering stored through the storage write."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from activations.records import ActivationRecord
from activations.steering import SteeringConfig
from activations.steering_results import SteeringFailure, SteeringResult
from autointerp.cli import main
from autointerp.executors.batch_worker import _feature_with_inputs
from autointerp.workflows.options import ExplainOptions, OptionsError
from autointerp.workflows.steer_run import steering_config
from explainer.evidence import STEERING_CHARS, STEERING_PROMPTS, StoredSteering, steering_note
from storage.core import repository as repo
from storage.core.db import Database
from storage.core.schema import Explanation, Feature
from storage.results.steering_store import save_steering
from tests.pipeline_data import fill_layer, uncached_spec
from tests.test_evidence_explain import LOGITS
from tests.test_explainer import feature, last_user_message, run_explain

RECORDS = feature(ActivationRecord(["The", " capital", " is"], [0, 4.0, 1.0], label="top[0]"))
STEERING = SteeringResult(
    strength=3.0, kl=0.5, target_kl=0.5, prompts=("The", "I think that"),
    steered=(" river Danube flows through Vienna", " rivers flood every spring"),
    unsteered=((" man walked home", " weather is fine"), (" it will rain", " we should go")))


@pytest.mark.parametrize("fmt", ["token_activation_pairs", "highlight"])
def test_chat_prompt_holds_steered_and_unsteered_texts_labelled(fake_openai, fmt):
    seen = last_user_message(fake_openai)
    (result,), _ = run_explain(fake_openai, RECORDS, fmt=fmt, output_steering=StoredSteering(STEERING))
    user = seen[0]["messages"][-1]["content"]
    assert "when this neuron is turned up, the model writes" in user
    assert ("After 'The': turned up, it writes 'river Danube flows through Vienna'; normally it writes "
            "'man walked home'.") in user
    assert "'rivers flood every spring'" in user and "'it will rain'" in user
    assert "' weather is fine'" not in user and "weather is fine" not in user  # one unsteered text per prompt
    assert result.ok and result.prompt_version.endswith("+steer/v1+top")
    assert result.params["evidence"] == "activations+steering"
    assert result.params["steering_shown"] == {"prompts": STEERING_PROMPTS, "chars": STEERING_CHARS}


def test_snippets_document_and_both_kinds_of_evidence(fake_openai):
    seen: list[dict] = []

    def answer(endpoint: str, body: dict) -> str:
        seen.append(body)
        return " rivers"

    fake_openai.answer = answer
    (result,), _ = run_explain(fake_openai, RECORDS, fmt="snippets", output_logits=LOGITS,
                               output_steering=StoredSteering(STEERING))
    last_block = seen[0]["prompt"].rsplit("\n\n", 1)[1]  # the feature's block, after the few-shot neurons'
    assert last_block.index("(logit lens)") < last_block.index("(steering)") < last_block.index("Summary:")
    assert "'river Danube flows through Vienna'" in last_block
    assert result.prompt_version.endswith("+logits1+steer1+top") and len(result.prompt_version) <= 50
    assert result.params["evidence"] == "activations+logits+steering"


def test_note_shows_a_few_prompts_trimmed_and_on_one_line_each():
    n = STEERING_PROMPTS + 3
    long = SteeringResult(1.0, 0.5, 0.5, tuple(f"p{i}" for i in range(n)), tuple("word\n" * 200 for _ in range(n)),
                          tuple(("plain text",) for _ in range(n)))
    lines = steering_note(long).splitlines()
    assert len(lines) == 1 + STEERING_PROMPTS and all("\\n" not in line and "..." in line for line in lines[1:])
    assert all(len(line) < 2 * STEERING_CHARS + 120 for line in lines)
    assert "opposite of the side explained" in steering_note(STEERING, negative=True)


@pytest.mark.parametrize("stored, reason", [(None, "no steering stored"),
                                            (SteeringFailure("KL never reached 0.5"), "KL never reached 0.5")])
def test_missing_or_failed_steering_fails_every_candidate_without_a_call(fake_openai, stored, reason):
    (result,), _ = run_explain(fake_openai, RECORDS, output_steering=StoredSteering(stored))
    assert not result.ok and reason in result.failure_reason and "autointerp steer" in result.failure_reason
    assert fake_openai.requests == 0


def test_config_hash_names_the_evidence_and_the_steering_configuration():
    hashes = {repo.config_hash(ExplainOptions(evidence=e, steering_target_kl=kl).explain_config())
              for e, kl in [("activations", 0.5), ("activations+logits", 0.5), ("activations+steering", 0.5),
                            ("activations+logits+steering", 0.5), ("activations+steering", 1.0)]}
    assert len(hashes) == 5
    config = ExplainOptions(evidence="activations+steering").explain_config()
    assert config["steering"] == SteeringConfig().as_config() and "steer/v1" in config["prompt_version"]
    # Without steering the target KL changes nothing: configs stored before it existed still match.
    assert (ExplainOptions(steering_target_kl=1.0).explain_config() == ExplainOptions().explain_config())
    with pytest.raises(OptionsError, match="--steering-target-kl must be > 0"):
        ExplainOptions(evidence="activations+steering", steering_target_kl=0).explain_config()


def _cli(*args: str):
    return CliRunner().invoke(main, ["explain", "--model", "tiny-model", "--layer", "6", "--simulator", "embedding",
                                     "--no-shuffled-baseline", *args])


def _store_steering(db: Database, indices: list[int]) -> None:
    with db.session() as s, s.begin():
        for row in s.scalars(select(Feature).where(Feature.index.in_(indices))):
            steered = tuple(f" feature {row.index} writes about rivers" for _ in STEERING.prompts)
            result = SteeringResult(3.0, 0.5, 0.5, STEERING.prompts, steered, STEERING.unsteered)
            save_steering(s, row, steering_config(row, SteeringConfig()), result, run_id=None)


def test_cli_needs_stored_steering_then_explains_with_it_over_http(fake_openai, sqlite_url):
    db, explainer = Database(sqlite_url), uncached_spec()
    fill_layer(db, 3)
    _store_steering(db, [0, 1])
    for dry in ([], ["--dry-run"]):
        refused = _cli("--explainer", explainer, "--evidence", "activations+steering", *dry, "--db", sqlite_url)
        assert refused.exit_code != 0 and "1 of the 3 features to explain have no stored steering" in refused.output
        assert ("autointerp steer --model tiny-model --layer 6 --features all --target-kl 0.5"
                in " ".join(refused.output.split()))
    assert fake_openai.requests == 0  # refused before any call

    _store_steering(db, [2])
    estimates = [json.loads(_cli("--explainer", explainer, *evidence, "--dry-run", "--db", sqlite_url).output)
                 for evidence in ([], ["--evidence", "activations+steering"])]
    assert estimates[1]["explainer"]["prompt_tokens"] > estimates[0]["explainer"]["prompt_tokens"]
    seen = last_user_message(fake_openai)
    ran = _cli("--explainer", explainer, "--evidence", "activations+steering", "--base-url", fake_openai.url,
               "--db", sqlite_url)
    assert ran.exit_code == 0 and "3 done" in ran.output, ran.output
    sent = [json.dumps(b) for b in seen]
    for index in range(3):
        assert sum(f"feature {index} writes about rivers" in body for body in sent) == 1
    with db.session() as s:
        versions = set(s.scalars(select(Explanation.prompt_version)))
        assert len(versions) == 1 and next(iter(versions)).endswith("+steer/v1+top")
        feature_id = s.scalar(select(Feature.id).where(Feature.index == 1))
    # The Ray executor's worker reads the same steering for its prompt.
    _, (_, _, steering) = _feature_with_inputs(db, ExplainOptions(model="tiny-model", layer=6,
                                                                  evidence="activations+steering"), feature_id)
    assert steering is not None and isinstance(steering.result, SteeringResult)
    assert steering.result.steered[0] == " feature 1 writes about rivers"
    other_kl = _cli("--explainer", explainer, "--evidence", "activations+steering", "--steering-target-kl", "1",
                    "--db", sqlite_url)  # another steering configuration: not stored, so refused
    assert other_kl.exit_code != 0 and "--target-kl 1.0" in other_kl.output
