"""Steering on the embedded model (gemma-3-270m): a planted SAE latent whose decoder row is the unembedding
direction of " Paris" raises " Paris" in its continuations, reruns are byte-identical, and the judge-free score
ranks "the word Paris" above its near misses; MLP neurons steer too, and one that cannot reach the target KL is
a failure with its reason."""

from __future__ import annotations

import pytest

from activations.sae import load_sae
from activations.steerer import Steerer
from activations.steering import SteeringConfig, latent_vector, neuron_vector
from activations.steering_results import SteeringFailure, SteeringResult
from llm_client.local_models import load_model
from scorer.steering_gain import steering_logprob_gain
from tests.planted_sae import write_planted_sae

pytestmark = pytest.mark.slow
CONFIG = SteeringConfig(tokens=16, n_unsteered=2)
NEAR_MISSES = ("the word London", "the word France", "the word Rome", "cities in Europe")


@pytest.fixture(scope="module")
def gemma():
    return load_model("gemma-3-270m", device="cpu")


@pytest.fixture(scope="module")
def planted(gemma, tmp_path_factory):
    return load_sae(write_planted_sae(tmp_path_factory.mktemp("sae") / "planted", gemma.model, gemma.tokenizer))


@pytest.fixture(scope="module")
def paris(gemma, planted) -> SteeringResult:
    result, _ = Steerer(gemma.model, gemma.tokenizer, CONFIG).steer(latent_vector(planted, 0))
    assert isinstance(result, SteeringResult), result
    return result


def test_the_planted_latent_raises_its_token(paris):
    assert abs(paris.kl - CONFIG.target_kl) <= CONFIG.kl_tolerance * CONFIG.target_kl
    assert len(paris.steered) == len(CONFIG.prompts) and all(len(u) == 2 for u in paris.unsteered)
    steered = sum(text.count(" Paris") for text in paris.steered)
    unsteered = sum(text.count(" Paris") for row in paris.unsteered for text in row) / 2
    assert steered >= 3 and steered > 3 * unsteered, (steered, unsteered, paris.steered)


def test_a_rerun_is_byte_identical(gemma, planted, paris):
    again, _ = Steerer(gemma.model, gemma.tokenizer, CONFIG).steer(latent_vector(planted, 0))
    assert again == paris


def test_the_judge_free_score_ranks_the_true_explanation_first(gemma, paris):
    scores = {text: steering_logprob_gain(gemma.model, gemma.tokenizer, paris, text).value
              for text in ("the word Paris", *NEAR_MISSES)}
    assert all(value is not None for value in scores.values()), scores
    assert max(scores, key=lambda k: scores[k] or 0.0) == "the word Paris", scores
    assert scores["the word Paris"] > 0


def test_mlp_neurons_steer_and_a_weak_one_fails_with_its_reason(gemma):
    steerer = Steerer(gemma.model, gemma.tokenizer, SteeringConfig(tokens=8, n_unsteered=1))
    result, search = steerer.steer(neuron_vector(gemma.model, 3, 400))
    assert isinstance(result, SteeringResult), result
    assert abs(result.kl - 0.5) <= 0.05 and result.strength > 0 and search.forward_passes == len(search.tries)
    assert result.steered != tuple(row[0] for row in result.unsteered)
    capped = Steerer(gemma.model, gemma.tokenizer, SteeringConfig(max_strength_ratio=0.05))
    failure, _ = capped.steer(neuron_vector(gemma.model, 6, 800))
    assert isinstance(failure, SteeringFailure) and "below the target" in failure.reason
    assert failure.kl is not None and failure.kl < 0.5
