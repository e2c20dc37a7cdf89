"""End to end on gemma-3-270m: the planted SAE's latents 0 (decoder row: the unembedding of " Paris") and 1
(" London") are collected and steered with `autointerp steer`, explained by a fake explainer as "the word Paris"
and "the word London", then `rescore --scorer intervention` with the rule-following judge over real HTTP: each
latent's own explanation finds its steered continuations far above chance, the other latent's (the shuffled
baseline) stays near chance, and a rerun asks nothing."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from activations.vocab import ScoreRole
from autointerp.cli import main
from llm_client.local_models import load_model
from storage.core.schema import SteeringRow
from tests.pipeline_data import uncached_spec
from tests.planted_rules import rule_following_answer
from tests.planted_sae import LAYER, write_planted_sae
from tests.test_scorers_pipeline import _scores

pytestmark = pytest.mark.slow
SAE = ["--model", "gemma-3-270m", "--layer", str(LAYER), "--sae", "planted"]


def cli(*args: str) -> None:
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == 0, result.output


def test_the_true_explanation_finds_the_steered_continuation(db, db_url, fake_openai, tmp_path):
    gemma = load_model("gemma-3-270m", device="cpu")
    folder = write_planted_sae(tmp_path / "planted", gemma.model, gemma.tokenizer)
    cli("collect", "--model", "gemma-3-270m", "--sae", str(folder), "--tokens", "1000", "--device", "cpu",
        "--db", db_url)
    # At KL 1.0 the latent's word is in most steered continuations (at the default 0.5, in a few: docs/scorers.md).
    cli("steer", *SAE, "--features", "0,1", "--target-kl", "1.0", "--device", "cpu", "--db", db_url)
    for index, word in ((0, "Paris"), (1, "London")):
        fake_openai.answer = lambda endpoint, body, word=word: f"the word {word}"  # the explainer
        cli("explain", *SAE, "--features", str(index), "--explainer", "openai:fake", "--simulator", "embedding",
            "--device", "cpu", "--db", db_url)
    fake_openai.answer = rule_following_answer
    # A fresh judge name: on PostgreSQL the response cache is the user's, shared with earlier runs of this test.
    rescore = ["rescore", *SAE, "--features", "0,1", "--scorer", "intervention", "--scorer-llm", uncached_spec(),
               "--steering-target-kl", "1.0", "--device", "cpu", "--db", db_url]
    before = fake_openai.by_endpoint["chat"]
    cli(*rescore)
    sent = fake_openai.by_endpoint["chat"] - before
    assert sent == 2 * 2 * 12  # two latents, own and shuffled, twelve neutral prompts
    with db.session() as s:  # the steering `steer` stored was read, not made again
        assert s.scalar(select(func.count()).select_from(SteeringRow)) == 2
    own = {i: s.value for (i, _), s in _scores(db, "intervention_accuracy").items()}
    shuffled = {i: s.value for (i, _), s in _scores(db, "intervention_accuracy", ScoreRole.SHUFFLED).items()}
    assert set(own) == set(shuffled) == {0, 1}
    # Measured: own 0.75 and 0.92, shuffled 0.08 and 0.17; chance is 1/4 (one steered among three unsteered). The
    # misses are steered continuations without the word, where the judge guesses.
    assert all(v >= 0.6 for v in own.values()) and sum(own.values()) / 2 >= 0.8
    assert all(v <= 0.4 for v in shuffled.values())
    cli(*rescore)
    assert fake_openai.by_endpoint["chat"] - before == sent  # a rerun asks nothing twice
