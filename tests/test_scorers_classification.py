"""Detection and fuzzing with list answers against the real HTTP fake server: strict reading, per-subset scores,
AUROC from the answer's top logprobs, failures never counted as "no"."""

from __future__ import annotations

import asyncio
import json

import pytest

from activations.vocab import ClassificationSubset, ScoreMethod
from llm_client import Completion, TokenLogprobs, Usage, make_client
from scorer import Example, ExampleSet, detection_scores, fuzzing_scores
from scorer.binary_metrics import auroc, balanced_accuracy
from scorer.judge import parse_answer, prompt, slot_probabilities
from tests.closing import score_and_close
from tests.fake_openai import judge_answer

RANDOM, NEIGHBOURS = ClassificationSubset.RANDOM, ClassificationSubset.NEIGHBOURS


def _example(words: str, firing: str = "") -> Example:
    tokens = tuple((" " if i else "") + w for i, w in enumerate(words.split()))
    return Example(tokens, tuple(8.0 if t.strip() == firing else 0.0 for t in tokens))


COLOURS = [_example(f"the {c} car was parked", c) for c in ("red", "blue", "green", "red", "blue", "green")]
QUIET = [_example(f"the {w} car was parked") for w in ("fast", "old", "small", "new", "big", "cheap")]
SHADES = [_example(f"a {c} tint of paint", c) for c in ("crimson", "navy", "olive", "scarlet")]


def _client(fake):
    # The fake's top logprobs peak at the answered digit: P(1) = e^0 / (e^0 + e^-1) for "1", 0.27 for "0".
    fake.digit_for = lambda token: int(token) if token.strip().isdigit() else 0
    return make_client("openai:fake-model", base_url=fake.url, max_retries=0, backoff_s=0.01)


def _by_key(scores):
    return {(s.method, s.subset): s for s in scores}


def test_prompt_numbers_examples_and_answers_are_read_strictly():
    text = prompt("detection", "colour words", ["the red car", "a dog"])[0]["content"]
    assert "Example 1: the red car\nExample 2: a dog" in text and text.endswith("Answer:")
    assert parse_answer(" [1, 0]\n", 2) == [True, False]
    assert "2 entries for 3 examples" in parse_answer("[1,0]", 3)
    assert "not a list" in parse_answer("[1,2]", 2) and "not a list" in parse_answer("yes, the first", 2)


# Answers in the shapes chat models give (GPT-4o-mini, Claude, Llama instruct), and the ones that must still fail.
@pytest.mark.parametrize("answer,expected", [
    ("Answer: [1, 0, 0, 1, 0]", [True, False, False, True, False]),
    ("[1,0,0,1,0]\nExamples 1 and 4 mention a colour.", [True, False, False, True, False]),
    ("```json\n[1, 0, 0, 1, 0]\n```", [True, False, False, True, False]),
    ("Here is my assessment:\n\n[ 1 , 0 , 0 , 1 , 0 ]", [True, False, False, True, False]),
    ("[true, false, false, true, false]", [True, False, False, True, False]),
    ('["1", "0", "0", "1", "0"]', [True, False, False, True, False]),
    ("[1, 0, 0, 1]", "4 entries for 5 examples"),
    ("[1, 0, 0, 1, 0, 1]", "6 entries for 5 examples"),
    ("[1, 0, 0.5, 1, 0]", "entry '0.5'"),
    ("[1, 0, yes, 1, 0]", "entry 'yes'"),
    ("[]", "entry ''"),
    ("1 0 0 1 0", "not a list"),
    ("I cannot tell.", "not a list"),
])
def test_answers_read_as_chat_models_write_them(answer, expected):
    got = parse_answer(answer, 5)
    assert got == expected if isinstance(expected, list) else expected in got


def test_slot_probabilities_read_the_digit_tokens():
    rows = [TokenLogprobs("[", -0.1), TokenLogprobs("1", -0.2, {"1": -0.2, "0": -1.7}), TokenLogprobs(",", -0.1),
            TokenLogprobs("0", -0.1, {"0": -0.1, "1": -2.4}), TokenLogprobs("]", -0.1)]
    probs = slot_probabilities(Completion("[1,0]", Usage(), generated_logprobs=rows), 2)
    assert probs[0] == pytest.approx(1 / (1 + 2.718281828 ** -1.5)) and probs[1] < 0.1
    assert slot_probabilities(Completion("[1,0]", Usage()), 2) == [None, None]
    # A preamble's digits are not answer slots: only the list's are read.
    preamble = [TokenLogprobs("1 answer per example: ", -0.1), *rows]
    assert slot_probabilities(Completion("1 answer per example: [1,0]", Usage(), generated_logprobs=preamble),
                              2) == pytest.approx(probs)


def test_binary_metrics_and_their_intervals():
    value, low, high = balanced_accuracy([True, True, False], [False, False, True, False])
    assert value == pytest.approx((2 / 3 + 3 / 4) / 2) and low is not None and low <= value <= high
    assert auroc([0.9, 0.8], [0.1, 0.8])[0] == pytest.approx(3.5 / 4)


def test_detection_scores_each_subset_against_the_activating_examples(fake_openai):
    # The judge sees colours but not shades: neighbours (other colour words) fool it, random spans do not.
    fake_openai.answer = judge_answer(lambda text: any(c in text for c in ("red", "blue", "green", "crimson",
                                                                             "navy", "olive", "scarlet")))
    examples = ExampleSet(COLOURS, {RANDOM: QUIET, NEIGHBOURS: SHADES})
    scores = _by_key(asyncio.run(score_and_close(detection_scores, _client(fake_openai), "colour words", examples)))
    assert scores[(ScoreMethod.DETECTION_BALANCED_ACCURACY, RANDOM)].value == pytest.approx(1.0)
    assert scores[(ScoreMethod.DETECTION_AUROC, RANDOM)].value == pytest.approx(1.0)
    assert scores[(ScoreMethod.DETECTION_BALANCED_ACCURACY, NEIGHBOURS)].value == pytest.approx(0.5)
    ba = scores[(ScoreMethod.DETECTION_BALANCED_ACCURACY, RANDOM)]
    assert ba.details["cost"]["requests"] == 4  # 16 examples, 5 to a prompt
    assert ba.details["cost"]["prompt_tokens"] > 0 and ba.ci_low is not None
    # Five numbered examples to a prompt, answered as one list each.
    assert fake_openai.by_endpoint["chat"] == 4


def test_missing_neighbours_are_undefined_with_the_reason(fake_openai):
    fake_openai.answer = judge_answer(lambda text: "red" in text)
    examples = ExampleSet(COLOURS, {RANDOM: QUIET}, {NEIGHBOURS: "no nearest neighbours stored for this feature"})
    scores = _by_key(asyncio.run(score_and_close(detection_scores, _client(fake_openai), "red", examples)))
    neighbours = scores[(ScoreMethod.DETECTION_BALANCED_ACCURACY, NEIGHBOURS)]
    assert neighbours.value is None and "no nearest neighbours" in neighbours.undefined_reason
    assert scores[(ScoreMethod.DETECTION_BALANCED_ACCURACY, RANDOM)].value == pytest.approx((1 / 3 + 1) / 2)


def test_unreadable_answers_fail_their_whole_prompt_never_no(fake_openai):
    calls = {"n": 0}

    def flaky(endpoint, body):
        calls["n"] += 1
        return "maybe" if calls["n"] == 1 else judge_answer(lambda text: "car" in text)(endpoint, body)

    fake_openai.answer = flaky
    examples = ExampleSet(COLOURS[:3], {RANDOM: [_example("a quiet street at night")] * 2})
    scores = asyncio.run(score_and_close(detection_scores, _client(fake_openai), "cars", examples, per_prompt=5))
    # One prompt holds all five examples: its answer is unreadable, so every item failed and nothing scores.
    assert all(s.value is None and s.undefined_reason.startswith("failed:") for s in scores
               if s.subset == RANDOM)
    ba = _by_key(scores)[(ScoreMethod.DETECTION_BALANCED_ACCURACY, RANDOM)]
    assert ba.details["n_failed"] == 5 and "not a list" in ba.details["failures"][0]
    fake_openai.answer = judge_answer(lambda text: "car" in text)
    # Of the two prompts (3 examples and 2), the one with a third example fails outright, whichever comes first.
    fake_openai.outcome_for = lambda endpoint, body: "400" if "Example 3:" in json.dumps(body) else None
    scores = _by_key(asyncio.run(score_and_close(detection_scores, _client(fake_openai), "cars",
                                                 examples, per_prompt=3)))
    ba = scores[(ScoreMethod.DETECTION_BALANCED_ACCURACY, RANDOM)]
    assert ba.details["n_failed"] == 3 and "LLM call failed" in ba.details["failures"][0]
    assert ba.details["n_positive"] + ba.details["n_negative"] == 2


def test_fuzzing_marks_firing_tokens_against_wrong_ones(fake_openai):
    fake_openai.answer = judge_answer(lambda text: any(f"<< {c}>>" in text for c in ("red", "blue", "green")))
    examples = ExampleSet(COLOURS, {RANDOM: QUIET, NEIGHBOURS: SHADES})
    scores = _by_key(asyncio.run(score_and_close(fuzzing_scores, _client(fake_openai), "colour words", examples)))
    random_ba = scores[(ScoreMethod.FUZZING_BALANCED_ACCURACY, RANDOM)]
    assert random_ba.value == pytest.approx(1.0) and random_ba.details["n_items"] == 12
    assert scores[(ScoreMethod.FUZZING_AUROC, RANDOM)].value == pytest.approx(1.0)
    # Neighbour spans with the neighbour's firing tokens (shades) marked: the judge rightly says no.
    assert scores[(ScoreMethod.FUZZING_BALANCED_ACCURACY, NEIGHBOURS)].value == pytest.approx(1.0)


def test_thirty_percent_faults_end_answered_or_failed(fake_openai):
    # A judge that is always right, behind a server failing 30% of requests in every way but hanging: whatever
    # gets through scores 1.0, and every example is either read or counted as failed.
    fake_openai.answer = judge_answer(lambda text: any(c in text for c in ("red", "blue", "green")))
    fake_openai.failure_rate, fake_openai.failure_kinds, fake_openai.retry_after = 0.3, ("429", "500", "400",
                                                                                         "garbage"), "0"
    examples = ExampleSet(COLOURS * 4, {RANDOM: QUIET * 4, NEIGHBOURS: SHADES})
    client = make_client("openai:fake-model", base_url=fake_openai.url, max_retries=0)  # every fault is final
    scores = asyncio.run(score_and_close(detection_scores, client, "colour words", examples, per_prompt=2))
    assert fake_openai.by_outcome["ok"] < fake_openai.requests  # faults happened
    failed = 0
    for s in scores:
        d = s.details
        assert d["n_positive"] + d["n_negative"] + d["n_failed"] == d["n_items"]
        failed += d["n_failed"]
        if s.method == ScoreMethod.DETECTION_BALANCED_ACCURACY and s.subset == RANDOM:
            assert s.value == pytest.approx(1.0)
    assert failed > 0


def test_fuzzing_random_needs_no_quiet_random_spans(fake_openai):
    # A dense feature without quiet random spans still has fuzzing's `random` subset: wrong marks, same examples.
    fake_openai.answer = judge_answer(lambda text: any(f"<< {c}>>" in text for c in ("red", "blue", "green")))
    examples = ExampleSet(COLOURS, {}, {RANDOM: "no quiet span", NEIGHBOURS: "none stored"})
    scores = _by_key(asyncio.run(score_and_close(fuzzing_scores, _client(fake_openai), "colour words", examples)))
    assert scores[(ScoreMethod.FUZZING_BALANCED_ACCURACY, RANDOM)].value == pytest.approx(1.0)
    assert scores[(ScoreMethod.FUZZING_BALANCED_ACCURACY, NEIGHBOURS)].undefined_reason == "none stored"
