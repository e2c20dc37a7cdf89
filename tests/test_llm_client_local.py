"""The in-process backend on the real embedded models, and the explainer end to end on gemma-3-270m."""

from __future__ import annotations

import asyncio

import pytest
import torch

from activations.records import ActivationRecord, FeatureId, FeatureRecords
from explainer import explain
from llm_client import make_client

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def gemma():
    return make_client("local:gemma-3-270m", device="cpu")


def test_gemma_has_no_chat_template_and_says_so(gemma):
    assert gemma.spec == "local:gemma-3-270m"
    assert not gemma.capabilities.chat and gemma.capabilities.prompt_logprobs


def test_greedy_token_matches_the_next_token_distribution(gemma):
    prompt = "The capital of France is"
    ids = gemma.loaded.tokenizer(prompt)["input_ids"]

    async def go():
        completion = await gemma.complete(prompt, max_tokens=1, echo=True, logprobs=2)
        dist = await gemma.next_token_distributions(ids, [len(ids) - 1, 0])
        return completion, dist

    completion, dist = asyncio.run(go())
    assert dist.shape == (2, gemma.loaded.model.config.vocab_size)
    assert torch.allclose(dist.sum(-1), torch.ones(2), atol=1e-3)
    assert completion.text == gemma.loaded.tokenizer.decode([int(dist[0].argmax())])
    assert len(completion.prompt_logprobs) == len(ids) and completion.prompt_logprobs[0].logprob is None
    assert all(len(t.top) == 2 for t in completion.prompt_logprobs[1:])
    assert len(completion.text_offsets) == len(ids) + 1 and completion.text_offsets[-1] == len(prompt)
    assert completion.generated_logprobs[0].logprob == pytest.approx(float(dist[0].max().log()), abs=1e-3)
    with pytest.raises(ValueError, match="outside the prompt"):
        asyncio.run(gemma.next_token_distributions(ids, [len(ids)]))


def test_explainer_runs_end_to_end_on_gemma(gemma):
    records = FeatureRecords(FeatureId("gemma-3-270m", 6, "mlp_neuron", 3), [
        ActivationRecord(["I", " bought", " apples", " and", " pears"], [0, 0.1, 3.0, 0, 2.5], label="top[0]"),
        ActivationRecord(["She", " ate", " a", " banana"], [0, 0, 0, 2.0], label="top[1]"),
    ])
    (result,) = asyncio.run(explain(gemma, records, max_tokens=12, n_few_shot=1, max_prompt_tokens=600))
    assert result.params["chat"] is False and result.usage.prompt_tokens == result.params["prompt_tokens_estimate"]
    assert 0 < result.usage.completion_tokens <= 12 and result.raw_output
    assert result.ok or (result.text is None and result.failure_reason), result
    assert gemma.stats()["cost_usd"] == 0.0


def test_smollm2_chat_uses_its_template():
    client = make_client("local:smollm2-135m", device="cpu")
    assert client.capabilities.chat
    completion = asyncio.run(client.chat([{"role": "user", "content": "Name a colour."}], max_tokens=6, top_logprobs=3))
    assert completion.text.strip() and completion.usage.prompt_tokens > 10  # the template wraps the message
    assert completion.generated_logprobs is not None
    assert all(len(t.top) == 3 for t in completion.generated_logprobs)
