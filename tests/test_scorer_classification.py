"""Detection and fuzzing scorers against a real HTTP fake OpenAI-compatible server that answers by a rule."""

from __future__ import annotations

import asyncio

import pytest

from llm_client import make_client
from scorer.classification import detection_scores, fuzzing_scores, highlight
from tests.closing import score_and_close

COLOURS = {"red", "blue", "green"}
ACTIVATING = [["The", " red", " car"], ["A", " blue", " sky"], ["Grass", " is", " green"]]
QUIET = [["The", " fast", " car"], ["A", " cloudy", " sky"], ["Grass", " is", " wet"]]


def _text(body: dict) -> str:
    return body["messages"][-1]["content"].split("Text:\n", 1)[1].split("\n\n", 1)[0]


def _client(fake):
    # The fake's top logprobs peak at the answered digit: P(1) = 1/(1+e^-1) for "1", e^-1/(1+e^-1) for "0".
    fake.digit_for = lambda token: int(token) if token.strip().isdigit() else 0
    return make_client("openai:fake-model", base_url=fake.url)


def test_detection_balanced_accuracy_and_auroc(fake_openai):
    # Says yes on colours, but misses "green": TPR 2/3, TNR 1 -> balanced accuracy 5/6.
    fake_openai.answer = lambda ep, body: "1" if any(c in _text(body) for c in COLOURS - {"green"}) else "0"
    scores = {s.method: s for s in asyncio.run(score_and_close(detection_scores, _client(fake_openai), "colour words", ACTIVATING, QUIET))}
    assert scores["detection_balanced_accuracy"].value == pytest.approx(5 / 6)
    # P(yes): positives 0.73, 0.73, 0.27; negatives 0.27 x3 -> (6 wins + 3 ties / 2) / 9 pairs
    assert scores["detection_auroc"].value == pytest.approx(7.5 / 9)


def test_unreadable_answers_are_failures_not_wrong_answers(fake_openai):
    fake_openai.answer = lambda ep, body: "maybe" if "car" in _text(body) else ("1" if any(c in _text(body) for c in COLOURS) else "0")
    scores = {s.method: s for s in asyncio.run(score_and_close(detection_scores, _client(fake_openai), "colour words", ACTIVATING, QUIET))}
    ba = scores["detection_balanced_accuracy"]
    assert ba.value == pytest.approx(1.0) and ba.details["n_failed"] == 2 and "not 0 or 1" in ba.details["failures"][0]
    fake_openai.answer = lambda ep, body: "maybe"
    scores = asyncio.run(score_and_close(detection_scores, _client(fake_openai), "colour words", ACTIVATING, QUIET))
    assert all(s.value is None and "could not be read" in s.undefined_reason for s in scores)


def test_fuzzing_judges_true_against_random_highlights(fake_openai):
    assert highlight(["a", " b", " c"], {1}) == "a<< b>> c"
    fake_openai.answer = lambda ep, body: "1" if any(f"<< {c}>>" in _text(body) for c in COLOURS) else "0"
    records = [(t, [2.5 if x.strip() in COLOURS else 0.0 for x in t]) for t in ACTIVATING]
    scores = {s.method: s for s in asyncio.run(score_and_close(fuzzing_scores, _client(fake_openai), "colour words", records, seed=1))}
    assert scores["fuzzing_balanced_accuracy"].value == pytest.approx(1.0)
    assert scores["fuzzing_auroc"].value == pytest.approx(1.0)
    assert scores["fuzzing_balanced_accuracy"].details["n_items"] == 6
