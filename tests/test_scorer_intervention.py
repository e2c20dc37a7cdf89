"""The intervention scorer on planted steering results over the real-HTTP fake server: per neutral prompt the
steered continuation mentions Paris and the unsteered ones do not. A rule-following judge finds it from "the word
Paris" (accuracy and AUROC near 1) and not from another feature's explanation (the shuffled baseline, near chance);
unreadable answers are failures, never wrong picks; no logprobs leave AUROC undefined with the reason; a recording
client counts the very requests the scorer sends."""

from __future__ import annotations

import asyncio
import random

import pytest

from activations.steering_results import SteeringResult
from activations.vocab import ScoreMethod, ScoreRole
from llm_client import make_client
from llm_client.dry_run import RecordingClient
from scorer.binary_metrics import grouped_auroc
from scorer.intervention import check_steering, intervention_prompts, intervention_scores
from scorer.intruder import parse_pick
from tests.closing import score_and_close
from tests.planted_rules import rule_following_answer, value_digit

WORDS = ("the", "a", "road", "was", "long", "and", "quiet", "we", "walked", "home", "after", "dinner", "with",
         "friends", "it", "rained", "all", "day", "in", "town", "music", "played", "softly")
OPENINGS = ("The weather today", "My favourite thing is", "Yesterday I went", "The report says", "In the morning",
            "She told me that", "Our plan was", "The best part of", "He always wanted", "Once upon a time")


def _sentence(rng: random.Random, n: int = 12) -> str:
    return " " + " ".join(rng.choice(WORDS) for _ in range(n)) + "."


def planted(n_prompts: int = 40, n_unsteered: int = 3, seed: int = 0) -> SteeringResult:
    """Steered continuations that mention Paris; unsteered ones drawn from words that never do."""
    rng = random.Random(seed)
    prompts = tuple(OPENINGS[i % len(OPENINGS)] for i in range(n_prompts))
    steered = tuple(_sentence(rng, 6) + " Paris is lovely and Paris is near." for _ in prompts)
    unsteered = tuple(tuple(_sentence(rng) for _ in range(n_unsteered)) for _ in prompts)
    return SteeringResult(strength=4.5, kl=1.02, target_kl=1.0, prompts=prompts, steered=steered,
                             unsteered=unsteered)


def _client(fake):
    return make_client("openai:fake-model", base_url=fake.url, max_retries=0, backoff_s=0.01)


def _score(fake, explanation: str, data: SteeringResult, **kwargs) -> dict:
    scores = asyncio.run(score_and_close(intervention_scores, _client(fake), explanation, data, **kwargs))
    assert {s.subset for s in scores} == {"neutral"}
    return {s.method: s for s in scores}


@pytest.fixture
def judge(fake_openai):
    fake_openai.answer = rule_following_answer
    fake_openai.digit_for = value_digit  # the answer's number token: its top logprobs peak at that number
    return fake_openai


def test_prompts_are_seeded_and_hold_the_steered_continuation_once():
    data = planted(n_prompts=12)
    prompts = intervention_prompts(data, seed=0)
    assert [p.continuations[p.steered] for p in prompts] == list(data.steered)
    assert all(len(p.continuations) == 4 and sum("Paris" in c for c in p.continuations) == 1 for p in prompts)
    assert prompts == intervention_prompts(data, seed=0)  # a rerun (and the shuffled baseline) sees the same
    assert len({p.steered for p in prompts}) > 1  # the steered one does not always sit in one place
    assert prompts != intervention_prompts(data, seed=1)


def test_the_true_explanation_finds_the_steered_one_and_a_shuffled_one_does_not(judge):
    data = planted()
    own = _score(judge, "the word Paris", data)
    accuracy, auroc = own[ScoreMethod.INTERVENTION_ACCURACY], own[ScoreMethod.INTERVENTION_AUROC]
    assert accuracy.value == pytest.approx(1.0) and accuracy.ci_low is not None and accuracy.role == ScoreRole.OWN
    assert accuracy.details["chance"] == pytest.approx(0.25) and accuracy.details["n_prompts"] == 40
    assert accuracy.details["kl"] == pytest.approx(1.02) and accuracy.details["strength"] == pytest.approx(4.5)
    assert auroc.value == pytest.approx(1.0) and auroc.ci_low is not None
    assert judge.by_endpoint["chat"] == 40  # one request per neutral prompt
    # The shuffled baseline: another feature's explanation on the same continuations; the judge can only guess.
    shuffled = _score(judge, "the word Tokyo", data, role=ScoreRole.SHUFFLED)
    base = shuffled[ScoreMethod.INTERVENTION_ACCURACY]
    assert base.role == ScoreRole.SHUFFLED and 0.05 <= base.value <= 0.45  # chance: 0.25
    assert base.ci_low <= 0.25 <= base.ci_high
    assert 0.3 <= shuffled[ScoreMethod.INTERVENTION_AUROC].value <= 0.7


def test_unreadable_answers_are_failures_not_wrong_picks(judge):
    data = planted(n_prompts=20)

    def half_garbage(endpoint: str, body: dict) -> str:
        content = body["messages"][-1]["content"]
        return "I am not sure." if "Opening: The weather today" in content or "Opening: Our plan" in content \
            else rule_following_answer(endpoint, body)

    judge.answer = half_garbage
    scores = _score(judge, "the word Paris", data)
    accuracy = scores[ScoreMethod.INTERVENTION_ACCURACY]
    assert accuracy.value == pytest.approx(1.0)  # a failure counted as a wrong pick would lower this
    assert accuracy.details["n_failed"] == 4 and accuracy.details["n_answered"] == 16
    assert "names no continuation number" in accuracy.details["failures"][0]
    judge.answer = lambda endpoint, body: "no idea"
    failed = _score(judge, "the word Paris", data)
    for score in failed.values():
        assert score.value is None and score.undefined_reason.startswith("failed: no readable answer (20 of 20")
    judge.answer = lambda endpoint, body: "Continuation 7"  # a number, but not one of the four
    wrong = _score(judge, "the word Paris", data)[ScoreMethod.INTERVENTION_ACCURACY]
    assert wrong.value is None and "names continuation 7, not one of 1..4" in wrong.undefined_reason


def test_failed_requests_are_failures_too(judge):
    judge.outcome_for = lambda endpoint, body: "400" if "Yesterday" in body["messages"][-1]["content"] else None
    accuracy = _score(judge, "the word Paris", planted(n_prompts=10))[ScoreMethod.INTERVENTION_ACCURACY]
    assert accuracy.value == pytest.approx(1.0) and accuracy.details["n_failed"] == 1
    assert accuracy.details["failures"][0].startswith("LLM call failed")
    assert accuracy.details["cost"]["failed_requests"] == 1


def test_no_logprobs_leave_auroc_undefined_never_zero(judge):
    judge.ignore_logprobs = True
    scores = _score(judge, "the word Paris", planted(n_prompts=10))
    assert scores[ScoreMethod.INTERVENTION_ACCURACY].value == pytest.approx(1.0)
    auroc = scores[ScoreMethod.INTERVENTION_AUROC]
    assert auroc.value is None and "no top logprobs" in auroc.undefined_reason


def test_a_recording_client_counts_the_requests_the_scorer_sends(judge):
    """What a dry run reads: the same prompts walked with nothing sent, then sent for real."""
    data = planted(n_prompts=8, n_unsteered=2)
    recorder = RecordingClient(_client(judge))
    asyncio.run(score_and_close(intervention_scores, recorder, "the word Paris", data))
    assert judge.requests == 0 and recorder.requests == 8 and recorder.prompt_tokens > 0
    _score(judge, "the word Paris", data)
    assert judge.requests == recorder.requests


def test_no_prompts_is_undefined_with_the_reason(judge):
    empty = SteeringResult(1.0, 1.0, 1.0, (), (), ())
    for score in _score(judge, "the word Paris", empty).values():
        assert score.value is None and score.undefined_reason == "no neutral prompts with continuations to judge"
    assert judge.requests == 0


@pytest.mark.parametrize("fields,message", [
    ({"steered": ("a",)}, "2 prompts, 1 steered and 2 unsteered"),
    ({"unsteered": (("b",), ())}, "prompt 1 has 0 unsteered continuations"),
    ({"unsteered": (("b",), tuple("abcdefghi"))}, "prompt 1 has 9 unsteered continuations; the judge needs 1 to 8"),
])
def test_a_malformed_steering_result_is_a_clear_error(fields, message):
    base = {"strength": 1.0, "kl": 1.0, "target_kl": 1.0, "prompts": ("p", "q"), "steered": ("a", "b"),
            "unsteered": (("c",), ("d",))}
    with pytest.raises(ValueError, match=message):
        check_steering(SteeringResult(**(base | fields)))


@pytest.mark.parametrize("answer,expected", [
    ("2", 1), ("Continuation 4", 3), ("**Continuation 1** mentions Paris.", 0), ("5", "names continuation 5"),
])
def test_answers_read_as_chat_models_write_them(answer, expected):
    got = parse_pick(answer, 4, "continuation")
    assert got == expected if isinstance(expected, int) else isinstance(got, str) and expected in got


def test_grouped_auroc_resamples_prompts():
    # Every prompt ranks its steered option first: AUROC 1 and an interval at 1.
    assert grouped_auroc([([0.7], [0.1, 0.1, 0.1]), ([0.6], [0.2, 0.1, 0.1]), ([0.9], [0.05] * 3)]) == (1.0, 1.0, 1.0)
    # Pooled across prompts: a positive below another prompt's negative counts against it; ties count half.
    value, low, high = grouped_auroc([([0.5], [0.4]), ([0.3], [0.6]), ([0.5], [0.5])])
    assert value == pytest.approx((1 + 0 + 0.5) / 9 * 2)  # 0.5 over 0.4, 0.6, 0.5 (twice); 0.3 wins none
    assert low is not None and high is not None and low <= value <= high
    assert grouped_auroc([([0.5], [0.4])])[1:] == (None, None)  # too few prompts for an interval
