"""The judge on the embedded local model (teacher-forced list answers) and the embedding scorer on MiniLM."""

from __future__ import annotations

import asyncio

import pytest
import torch

from activations.vocab import ClassificationSubset, ScoreMethod
from llm_client import make_client
from scorer import Example, ExampleSet, detection_scores
from scorer.embedding_scorer import EmbeddingScorer
from scorer.judge import ANSWER_OPENER, CHOICES, prompt

pytestmark = pytest.mark.slow

RANDOM, NEIGHBOURS = ClassificationSubset.RANDOM, ClassificationSubset.NEIGHBOURS


def _example(text: str) -> Example:
    tokens = tuple((" " if i else "") + w for i, w in enumerate(text.split()))
    return Example(tokens, tuple(8.0 if w.strip().isdigit() else 0.0 for w in tokens))


NUMBERS = [_example(t) for t in ("in 1999 there were 42 cars", "he counted 7 8 9 10", "page 12 of 300")]
WORDS = [_example(t) for t in ("the cat sat on the mat", "a quiet river bank today", "birds sang in the trees")]


@pytest.fixture(scope="module")
def gemma():
    return make_client("local:gemma-3-270m", device="cpu")


def test_teacher_forced_slots_match_the_models_own_distribution(gemma):
    messages = prompt("detection", "numbers and digits", [e.text for e in NUMBERS[:2]])
    completion = asyncio.run(gemma.choice_slots(messages, choices=CHOICES, n_slots=2, opener=ANSWER_OPENER))
    assert completion.text.strip().startswith("[") and completion.text.count(",") == 1
    rows = completion.generated_logprobs
    assert len(rows) == 2 and all(set(r.top) == {"0", "1"} for r in rows)
    # The first slot's distribution is the plain next-token distribution after prompt + opener.
    tok = gemma.loaded.tokenizer
    ids = tok(messages[0]["content"])["input_ids"] + tok(ANSWER_OPENER, add_special_tokens=False)["input_ids"]
    dist = asyncio.run(gemma.next_token_distributions(ids, [len(ids) - 1]))[0]
    one, zero = (tok(c, add_special_tokens=False)["input_ids"][0] for c in ("1", "0"))
    assert rows[0].top["1"] == pytest.approx(float(torch.log(dist[one])), abs=1e-3)
    assert rows[0].top["0"] == pytest.approx(float(torch.log(dist[zero])), abs=1e-3)
    assert rows[0].token == ("1" if dist[one] > dist[zero] else "0")


def test_local_detection_answers_every_slot_with_a_probability(gemma):
    examples = ExampleSet(NUMBERS, {RANDOM: WORDS}, {NEIGHBOURS: "none stored"})
    scores = {(s.method, s.subset): s for s in asyncio.run(
        detection_scores(gemma, "numbers and digits", examples, per_prompt=3))}
    auroc = scores[(ScoreMethod.DETECTION_AUROC, RANDOM)]
    assert auroc.value is not None and 0.0 <= auroc.value <= 1.0
    assert auroc.details["n_failed"] == 0 and auroc.details["cost"]["requests"] == 2
    assert scores[(ScoreMethod.DETECTION_BALANCED_ACCURACY, NEIGHBOURS)].undefined_reason == "none stored"


def test_embedding_scorer_ranks_matching_examples_first():
    from simulator.embedding import EmbeddingSimulator

    scorer = EmbeddingScorer(EmbeddingSimulator(device="cpu"))
    examples = ExampleSet(NUMBERS, {RANDOM: WORDS, NEIGHBOURS: [_example("two dozen and a hundred more")]})
    scores = {s.subset: s for s in asyncio.run(scorer.score("numbers and digits", examples))}
    assert scores[RANDOM].method == ScoreMethod.EMBEDDING_AUROC and scores[RANDOM].value > 0.8
    assert scores[RANDOM].ci_low is not None and scores[NEIGHBOURS].value is not None


def test_local_intervention_judge_gives_every_option_a_probability(gemma):
    """The embedded judge is teacher-forced to an option number: every prompt is answered, every continuation has
    a probability (summing to one over the options), so AUROC is defined even for a model that would ramble."""
    from activations.steering_results import SteeringResult
    from scorer.intervention import (
        intervention_prompts,
        intervention_scores,
        option_probabilities,
        prompt_messages,
    )

    data = SteeringResult(3.0, 1.0, 1.0, ("The weather today", "My plan was"),
                             (" Paris is lovely and Paris is near.", " to visit Paris in May."),
                             ((" it rained all day.", " we walked home."), (" to stay home.", " to cook dinner.")))
    scores = {s.method: s for s in asyncio.run(intervention_scores(gemma, "the word Paris", data))}
    accuracy, auroc = scores[ScoreMethod.INTERVENTION_ACCURACY], scores[ScoreMethod.INTERVENTION_AUROC]
    assert accuracy.value is not None and accuracy.details["n_failed"] == 0 and accuracy.details["chance"] == 1 / 3
    assert auroc.value is not None and 0.0 <= auroc.value <= 1.0
    assert accuracy.details["cost"]["requests"] == 2
    first = intervention_prompts(data, seed=0)[0]
    completion = asyncio.run(gemma.choice_slots(prompt_messages("the word Paris", first), choices=["1", "2", "3"],
                                                n_slots=1, opener=" ", separator="", closer=""))
    probabilities = option_probabilities(completion, 3)
    assert probabilities is not None and sum(probabilities) == pytest.approx(1.0)
