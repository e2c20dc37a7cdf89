"""`--scorer intervention` in rescore and explain, on stored steering results and the real-HTTP fake server: per
feature the stored steered continuations hold the word its explanation names ("the word X"), the unsteered ones
never do. The rule-following judge finds it from the feature's own explanation and not from another's (the
shuffled baseline); `rescore --scorer intervention,intruder` fills both in and a rerun sends nothing; the dry run
counts the very requests; query, the API and a missing steering's error."""

from __future__ import annotations

import json
import random

import pytest
from sqlalchemy import select

from activations.steering import SteeringConfig
from activations.steering_results import SteeringResult
from activations.vocab import OutcomeStatus, ScoreRole
from autointerp.workflows.steer_run import steering_config
from storage.core import repository as repo
from storage.core.schema import Feature, Score
from storage.results.steering_store import save_steering
from tests.planted_rules import INTERVENTION_QUESTION, intervention_answer
from tests.test_scorer_intruder import finds_the_one_without_a_digit
from tests.test_scorers_pipeline import BASE, _scores, cli
from tests.test_scorers_pipeline import planted as planted_records  # noqa: F401  (the fixture)

WORDS = {0: "Paris", 1: "violin", 2: "glacier"}
FILLER = ("the", "road", "was", "long", "and", "quiet", "we", "walked", "home", "after", "dinner", "it", "rained")
N_PROMPTS = 8  # fewer than the default configuration's neutral prompts


def _sentence(rng: random.Random) -> str:
    return " " + " ".join(rng.choice(FILLER) for _ in range(10)) + "."


def _steering(word: str, seed: int) -> SteeringResult:
    rng = random.Random(seed)
    prompts = tuple(f"Opening {i}" for i in range(N_PROMPTS))
    return SteeringResult(strength=3.0, kl=0.5, target_kl=0.5, prompts=prompts,
                          steered=tuple(_sentence(rng) + f" {word} again, {word}." for _ in prompts),
                          unsteered=tuple(tuple(_sentence(rng) for _ in range(3)) for _ in prompts))


def answer(endpoint: str, body: dict) -> str:
    content = body["messages"][-1]["content"]
    return intervention_answer(content) if INTERVENTION_QUESTION in content else \
        finds_the_one_without_a_digit(endpoint, body)


def store(db, *, steered: tuple[int, ...] = (0, 1, 2)) -> None:
    """Each feature's explanation "the word X", and the steering of the features in `steered`."""
    with db.session() as s, s.begin():
        for feature in s.scalars(select(Feature).order_by(Feature.index)):
            repo.add_explanation(s, feature, explainer="openai:fake", config={}, text=f"the word {WORDS[feature.index]}",
                                 status=OutcomeStatus.OK, selected=True)
            if feature.index in steered:
                save_steering(s, feature, steering_config(feature, SteeringConfig()),
                              _steering(WORDS[feature.index], feature.index), run_id=None)


@pytest.fixture
def planted(planted_records, fake_openai):  # noqa: F811
    fake_openai.answer = answer
    return planted_records


RESCORE = ["rescore", *BASE, "--scorer", "intervention,intruder", "--scorer-llm", "openai:fake"]


def test_rescore_fills_in_intervention_and_intruder_and_a_rerun_asks_nothing(planted, db_url, fake_openai):
    store(planted)
    cli(*RESCORE, "--db", db_url)
    own = _scores(planted, "intervention_accuracy")
    shuffled = _scores(planted, "intervention_accuracy", ScoreRole.SHUFFLED)
    assert {k: s.value for k, s in own.items()} == {(i, "neutral"): pytest.approx(1.0) for i in range(3)}
    assert all(s.n_records == N_PROMPTS and s.simulator == "intervention:openai:fake" for s in own.values())
    config = own[(0, "neutral")].details["scorer_config"]
    assert config["prompt_version"] == "intervention-v1" and config["seed"] == 0
    assert config["steering_hash"] == repo.config_hash(SteeringConfig().as_config())
    assert len(shuffled) == 3  # chance is 1/4: a guess, about a quarter right
    assert sum(s.value for s in shuffled.values()) / 3 < 0.5
    assert all(s.details["shuffled_from_feature_id"] is not None for s in shuffled.values())
    auroc = _scores(planted, "intervention_auroc")
    assert len(auroc) == 3 and all(s.value is not None and s.value > 0.9 for s in auroc.values())  # from logprobs
    assert _scores(planted, "intruder_accuracy")  # the intruder scorer ran in the same pass
    sent = fake_openai.by_endpoint["chat"]
    assert sent >= 3 * 2 * N_PROMPTS  # own and shuffled, one request per prompt
    cli(*RESCORE, "--db", db_url)
    assert fake_openai.by_endpoint["chat"] == sent  # the rerun asks nothing twice
    ranked = json.loads(cli("query", "--layer", "6", "--method", "intervention_accuracy", "--format", "json",
                            "--no-records", "--db", db_url).output)
    assert ranked[0]["score"] == pytest.approx(1.0) and ranked[0]["subset"] == "neutral"
    from fastapi.testclient import TestClient

    from autointerp.api import create_app

    with TestClient(create_app(db_url)) as client:
        detail = client.get("/api/features/by-key", params={"model": "tiny-model", "layer": 6, "index": 0}).json()
        assert any(s["method"] == "intervention_accuracy" and s["value"] == pytest.approx(1.0)
                   for e in detail["explanations"] for s in e["scores"])
        hist = client.get("/api/layers/tiny-model/6/score_histograms").json()
        assert any(h["method"] == "intervention_accuracy" for h in hist["histograms"])


def test_a_feature_with_no_steering_is_a_clear_error_before_any_request(planted, db_url, fake_openai):
    store(planted, steered=(0,))
    result = cli(*RESCORE, "--db", db_url, ok=False)
    assert result.exit_code != 0 and fake_openai.requests == 0
    assert "2 feature(s) of layer 6 have none" in result.output
    assert "autointerp steer --model tiny-model --layer 6 --features 1,2" in result.output
    with planted.session() as s:
        assert not s.scalars(select(Score.id).where(Score.method.like("intervention%"))).all()
    # Another target KL is other steering: none of it is stored, and the command to make it says so.
    other = cli(*RESCORE, "--steering-target-kl", "1", "--db", db_url, ok=False)
    assert "autointerp steer --model tiny-model --layer 6 --features 0,1,2 --target-kl 1" in other.output
    bad = cli(*RESCORE, "--steering-target-kl", "0", "--db", db_url, ok=False)
    assert "Invalid value for '--steering-target-kl': 0.0 is not in the range x>0.0" in bad.output


def test_dry_run_counts_the_intervention_requests(planted, db_url, fake_openai):
    """Stored steering: its prompts, own and shuffled; none stored: the default configuration's neutral prompts."""
    with planted.session() as s, s.begin():
        for feature in s.scalars(select(Feature).where(Feature.index < 2)):
            save_steering(s, feature, steering_config(feature, SteeringConfig()),
                          _steering(WORDS[feature.index], feature.index), run_id=None)
    out = json.loads(cli("explain", *BASE, "--explainer", "openai:fake", "--simulator", "embedding", "--scorer",
                         "intervention", "--dry-run", "--db", db_url).output)
    assert fake_openai.requests == 0
    assert out["judge"]["requests"] == (2 * N_PROMPTS + len(SteeringConfig().prompts)) * 2


def test_explain_scores_its_new_explanations_with_the_judge(planted, db_url, fake_openai):
    """explain --scorer intervention: the explainer names Paris for every feature; only feature 0's steering holds it."""
    fake_openai.answer = lambda endpoint, body: intervention_answer(body["messages"][-1]["content"]) \
        if INTERVENTION_QUESTION in body["messages"][-1]["content"] else "the word Paris"
    with planted.session() as s, s.begin():
        for feature in s.scalars(select(Feature)):
            save_steering(s, feature, steering_config(feature, SteeringConfig()),
                          _steering(WORDS[feature.index], feature.index), run_id=None)
    explain = ["explain", *BASE, "--explainer", "openai:fake", "--simulator", "embedding", "--scorer",
               "simulation,intervention", "--device", "cpu", "--db", db_url]
    cli(*explain)
    own = {i: s.value for (i, _), s in _scores(planted, "intervention_accuracy").items()}
    assert own[0] == pytest.approx(1.0) and own[1] < 0.6 and own[2] < 0.6
    sent = fake_openai.by_endpoint["chat"]
    cli(*explain)
    assert fake_openai.by_endpoint["chat"] == sent
