"""The intruder scorer: the answer read as chat models write it, seeded prompts, a judge that finds the intruder
against one that guesses, unreadable answers stored as failures; through explain, rescore, query, the dry run
and the API on planted features and the real-HTTP fake server."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re

import pytest
from sqlalchemy import select

from activations.vocab import ClassificationSubset, ScoreMethod, ScoreRole
from llm_client import make_client
from scorer import Example, ExampleSet
from scorer.intruder import intruder_prompts, intruder_scores, parse_pick
from storage.core.schema import Score
from tests.closing import score_and_close
from tests.test_scorers_pipeline import (
    BASE,
    EXPLAIN,
    _scores,
    cli,
    planted,  # noqa: F401  (the fixture)
)
from tests.test_scorers_pipeline import judge as list_judge

RANDOM, NEIGHBOURS = ClassificationSubset.RANDOM, ClassificationSubset.NEIGHBOURS


def _example(text: str) -> Example:
    tokens = tuple((" " if i else "") + w for i, w in enumerate(text.split()))
    return Example(tokens, tuple(0.0 for _ in tokens))


DIGITS = [_example(f"the car number {n} was parked") for n in range(1, 9)]
QUIET = [_example(f"the {w} car was parked") for w in ("fast", "old", "small", "new", "big", "cheap")]
MORE_DIGITS = [_example(f"a bus on route {n} left early") for n in range(10, 14)]


def _examples(text: str) -> list[str]:
    return re.findall(r"^Example \d+: (.*)$", text, re.MULTILINE)


def finds_the_one_without_a_digit(endpoint: str, body: dict) -> str:
    """A rule-following judge: names the only example without a digit, else guesses from the prompt's hash."""
    content = body["messages"][-1]["content"]
    if "Which example is the intruder?" not in content:
        return list_judge(endpoint, body)
    examples = _examples(content)
    plain = [i for i, e in enumerate(examples, 1) if not re.search(r"\d", e)]
    return f"Example {plain[0]}" if len(plain) == 1 else guesses(endpoint, body)


def guesses(endpoint: str, body: dict) -> str:
    """A judge answering at random, the same way for the same prompt (a hash of it picks the number)."""
    content = body["messages"][-1]["content"]
    n = len(_examples(content))
    return f"[{int(hashlib.sha256(content.encode()).hexdigest(), 16) % n + 1}]"


def _client(fake):
    return make_client("openai:fake-model", base_url=fake.url, max_retries=0, backoff_s=0.01)


def _by_subset(scores):
    return {s.subset: s for s in scores}


@pytest.mark.parametrize("answer,expected", [
    ("3", 2), ("Example 3", 2), ("[3]", 2), ("Answer: Example 3.", 2), (" 5\n", 4), ("**Example 1** is odd", 0),
    ("The intruder is example 2, since it lacks a number.", 1),
    ("6", "names example 6, not one of 1..5"), ("0", "names example 0"),
    ("I cannot tell.", "names no example number"), ("", "names no example number"),
])
def test_answers_read_as_chat_models_write_them(answer, expected):
    got = parse_pick(answer, 5)
    assert got == expected if isinstance(expected, int) else isinstance(got, str) and expected in got


def test_prompts_are_seeded_and_hold_one_intruder_each():
    examples = ExampleSet(DIGITS, {RANDOM: QUIET})
    prompts = intruder_prompts(examples, RANDOM, per_prompt=5, seed=0)
    assert len(prompts) == len(QUIET) and all(len(p.texts) == 5 for p in prompts)
    assert [p.texts[p.intruder] for p in prompts] == [e.text for e in QUIET]
    assert prompts == intruder_prompts(examples, RANDOM, per_prompt=5, seed=0)  # a rerun sends the same prompts
    assert len({p.intruder for p in prompts}) > 1  # the intruder does not always sit in one place
    assert prompts != intruder_prompts(examples, RANDOM, per_prompt=5, seed=1)
    # Too few activating spans to have an odd one out: no prompts.
    assert intruder_prompts(ExampleSet(DIGITS[:1], {RANDOM: QUIET}), RANDOM, per_prompt=5, seed=0) == []


def test_a_judge_that_finds_the_intruder_scores_one_and_a_guessing_one_lower(fake_openai):
    examples = ExampleSet(DIGITS, {RANDOM: QUIET, NEIGHBOURS: MORE_DIGITS})
    fake_openai.answer = finds_the_one_without_a_digit
    scores = _by_subset(asyncio.run(score_and_close(intruder_scores, _client(fake_openai), examples)))
    random_ = scores[RANDOM]
    assert random_.method == ScoreMethod.INTRUDER_ACCURACY and random_.value == pytest.approx(1.0)
    assert random_.ci_low is not None and random_.ci_high == pytest.approx(1.0)
    assert random_.details["n_prompts"] == 6 and random_.details["chance"] == pytest.approx(0.2)
    assert random_.details["explanation_independent"] is True
    # Every span of the neighbours has a digit: the rule cannot find their intruder.
    assert scores[NEIGHBOURS].value < 0.6
    assert fake_openai.by_endpoint["chat"] == len(QUIET) + len(MORE_DIGITS)  # one request per intruder
    fake_openai.answer = guesses
    guessed = _by_subset(asyncio.run(score_and_close(intruder_scores, _client(fake_openai), examples)))[RANDOM]
    assert guessed.value < 0.6 and guessed.ci_low < guessed.value


def test_unreadable_answers_are_failures_not_wrong_picks(fake_openai):
    examples = ExampleSet(DIGITS, {RANDOM: QUIET}, {NEIGHBOURS: "no nearest neighbours stored for this feature"})

    def half_garbage(endpoint: str, body: dict) -> str:
        content = body["messages"][-1]["content"]
        # Prompts whose intruder mentions a fast, old or small car get an answer with no number.
        return "I am not sure." if re.search(r"fast|old|small", content) else finds_the_one_without_a_digit(
            endpoint, body)

    fake_openai.answer = half_garbage
    scores = _by_subset(asyncio.run(score_and_close(intruder_scores, _client(fake_openai), examples)))
    random_ = scores[RANDOM]
    assert random_.value == pytest.approx(1.0)  # a failure counted as wrong would lower this
    assert random_.details["n_failed"] == 3 and random_.details["n_answered"] == 3
    assert "names no example number" in random_.details["failures"][0]
    assert scores[NEIGHBOURS].value is None and "no nearest neighbours" in scores[NEIGHBOURS].undefined_reason
    fake_openai.answer = lambda endpoint, body: "no idea"
    failed = _by_subset(asyncio.run(score_and_close(intruder_scores, _client(fake_openai), examples)))[RANDOM]
    assert failed.value is None and failed.undefined_reason.startswith("failed:")


def test_intruder_through_explain_query_rescore_and_the_api(planted, db_url, fake_openai):  # noqa: F811
    fake_openai.answer = finds_the_one_without_a_digit
    cli(*EXPLAIN, "--scorer", "intruder", "--db", db_url)
    scores = _scores(planted, "intruder_accuracy")
    # 0 fires on digits, its random spans have none: found. 1 fires on "cat", invisible to the judge.
    assert scores[(0, "random")].value == pytest.approx(1.0) and scores[(0, "random")].ci_low is not None
    assert scores[(1, "random")].value < 0.7
    assert scores[(0, "random")].simulator == "intruder:openai:fake"
    assert scores[(0, "random")].details["scorer_config"]["explanation_independent"] is True
    assert _scores(planted, "intruder_accuracy", ScoreRole.SHUFFLED) == {}  # no explanation to shuffle
    ranked = json.loads(cli("query", "--layer", "6", "--method", "intruder_accuracy", "--format", "json",
                            "--no-records", "--db", db_url).output)
    assert ranked[0]["index"] in (0, 2) and ranked[0]["subset"] == "random"
    assert ranked[0]["score"] == pytest.approx(1.0)
    # Rerunning asks nothing twice: explain again, and rescore with the same judge.
    before = fake_openai.by_endpoint["chat"]
    cli(*EXPLAIN, "--scorer", "intruder", "--db", db_url)
    cli("rescore", *BASE, "--scorer", "intruder", "--scorer-llm", "openai:fake", "--db", db_url)
    assert fake_openai.by_endpoint["chat"] == before
    from fastapi.testclient import TestClient

    from autointerp.api import create_app

    with TestClient(create_app(db_url)) as client:
        detail = client.get("/api/features/by-key", params={"model": "tiny-model", "layer": 6, "index": 0}).json()
        assert any(s["method"] == "intruder_accuracy" and s["value"] == pytest.approx(1.0)
                   for e in detail["explanations"] for s in e["scores"])
        hist = client.get("/api/layers/tiny-model/6/score_histograms").json()
        assert any(h["method"] == "intruder_accuracy" for h in json.loads(json.dumps(hist))["histograms"])


def test_dry_run_counts_the_intruder_prompts(planted, db_url, fake_openai):  # noqa: F811
    fake_openai.answer = finds_the_one_without_a_digit
    out = json.loads(cli(*EXPLAIN, "--scorer", "intruder", "--dry-run", "--db", db_url).output)
    assert fake_openai.requests == 0
    counted = out["judge"]["requests"]
    cli(*EXPLAIN, "--db", db_url, ok=False)  # explanations, without the intruder scorer
    before = fake_openai.by_endpoint["chat"]
    cli("rescore", *BASE, "--scorer", "intruder", "--scorer-llm", "openai:fake", "--db", db_url)
    assert counted == fake_openai.by_endpoint["chat"] - before > 0  # the dry run counted the very prompts sent
    with planted.session() as s:
        assert s.scalars(select(Score.id).where(Score.method == "intruder_accuracy")).all()


def test_too_few_examples_per_prompt_is_a_clear_error(planted, db_url):  # noqa: F811
    result = cli(*EXPLAIN, "--scorer", "intruder", "--scorer-examples", "2", "--db", db_url, ok=False)
    assert result.exit_code != 0 and "--scorer-examples of at least 3" in result.output
