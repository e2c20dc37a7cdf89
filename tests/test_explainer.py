"""Explainer: prompt text pinned for a tiny feature, parsing, context fitting, splits, polarity, candidates,
failures — through the real client and the fake OpenAI-compatible server."""

from __future__ import annotations

import asyncio
import json

import pytest

from activations.records import ActivationRecord, FeatureId, FeatureRecords, FeatureStats
from explainer import explain, parse_explanation
from explainer.formatting import highlight, render_plain, token_activation_pairs
from llm_client import Capabilities, make_client
from tests.fake_openai import FakeOpenAI

FEATURE = FeatureId("gemma-3-270m", 6, "mlp_neuron", 42)


def feature(*records: ActivationRecord, max_activation: float | None = None) -> FeatureRecords:
    stats = None if max_activation is None else FeatureStats(max_activation, 0.0, 1.0, 0.1, 100)
    return FeatureRecords(FEATURE, list(records), stats)


TINY = feature(
    ActivationRecord(["The", " cat", " sat", " down", " on", " the", " mat"], [0, 4.0, 0, 0, 0, 0, 0.5], label="top[0]"),
    ActivationRecord(["A", " dog"], [0.0, 2.0], label="top[1]"),
)


def run_explain(server: FakeOpenAI, records: FeatureRecords, **options):
    client = make_client("openai:gpt-4o-mini", base_url=server.url, backoff_s=0.01,
                         timeout_s=options.pop("timeout_s", 5.0), concurrency=options.pop("concurrency", 8))

    async def go():
        try:
            return await explain(client, records, **options), client.stats()
        finally:
            await client.aclose()

    return asyncio.run(go())


def last_user_message(server: FakeOpenAI) -> list[dict]:
    seen: list[dict] = []

    def answer(endpoint: str, body: dict) -> str:
        seen.append(body)
        return "cats and dogs"

    server.answer = answer
    return seen


def test_token_activation_pairs_prompt_is_pinned():
    scaled = [(("The", " cat", " sat", " down", " on", " the", " mat"), [0, 10, 0, 0, 0, 0, 1]), (("A", " dog"), [0, 5])]
    messages = token_activation_pairs(scaled, n_few_shot=0, negative=False)
    assert messages[0]["role"] == "system" and messages[0]["content"].startswith("We're studying neurons")
    assert messages[1] == {"role": "user", "content": (
        "\n\nNeuron 1\nActivations:\n"
        "<start>\nThe\t0\n cat\t10\n sat\t0\n down\t0\n on\t0\n the\t0\n mat\t1\n<end>\n"
        "<start>\nA\t0\n dog\t5\n<end>\n"
        "\nExplanation of neuron 1 behavior: the main thing this neuron does is find")}


def test_sparse_records_get_the_zero_filtered_repeat():
    scaled = [(("a", " b", " c", " d", " e", " f"), [0, 0, 7, 0, 0, 0])]
    user = token_activation_pairs(scaled, n_few_shot=0, negative=False)[1]["content"]
    assert "Same activations, but with all zeros filtered out:\n<start>\n c\t7\n<end>\n" in user
    dense = token_activation_pairs([(("a", " b"), [3, 7])], n_few_shot=0, negative=False)[1]["content"]
    assert "zeros filtered out" not in dense


def test_highlight_prompt_is_pinned_and_plain_rendering_continues_the_pattern():
    messages = highlight([(("I", " love", " New", " York", " a", " lot"), [0, 0, 10, 8, 0, 0])], n_few_shot=1,
                         negative=False)
    assert messages[-1]["content"] == "Example 1: I love<< New York>> a lot\nActivations: (' New', 10), (' York', 8)"
    assert messages[-2]["content"].startswith("[EXPLANATION]: ")  # the few-shot answer
    assert render_plain(messages, "highlight").endswith("a lot\nActivations: (' New', 10), (' York', 8)\n\n[EXPLANATION]:")
    tap = token_activation_pairs([(("x",), [10])], n_few_shot=1, negative=False)
    assert render_plain(tap, "token_activation_pairs").count("does is find") == 2
    assert " artists' materials.\n\nNeuron 2\n" in render_plain(tap, "token_activation_pairs")


@pytest.mark.parametrize("raw,fmt,text", [
    (" words about cats.", "token_activation_pairs", "words about cats"),
    ("Explanation of neuron 3 behavior: the main thing this neuron does is find dogs.  \nNeuron 4", "token_activation_pairs", "dogs"),
    ("The main thing this neuron does is find \"plural nouns\".", "token_activation_pairs", "plural nouns"),
    ("The marked tokens are cities.\n[EXPLANATION]: city names.", "highlight", "city names"),
    ("Reasoning first...\nplace names after prepositions", "highlight", "place names after prepositions"),
])
def test_parsing_strips_prefixes_and_trailing_period(raw, fmt, text):
    assert parse_explanation(raw, fmt).text == text


@pytest.mark.parametrize("raw,reason", [
    ("   .  ", "empty explanation"),
    ("the main thing this neuron does is find.", "empty explanation"),
    ("<start>\ncat\t10", "echoes the prompt"),
    ("Neuron 4\nActivations:", "echoes the prompt"),
    ("x" * 600, "longer than 500"),
])
def test_parsing_rejects_empty_and_echoed_output(raw, reason):
    parsed = parse_explanation(raw, "token_activation_pairs")
    assert parsed.text is None and parsed.failure_reason is not None and reason in parsed.failure_reason


def test_explain_ok_result_carries_provenance(fake_openai):
    fake_openai.answer = lambda endpoint, body: " cats and dogs."
    (result,), stats = run_explain(fake_openai, TINY)
    assert result.ok and result.text == "cats and dogs" and result.raw_output == " cats and dogs."
    assert (result.explainer, result.prompt_version, result.polarity, result.candidate) == (
        "openai:gpt-4o-mini", "token-activation-pairs/v2+top", "positive", 0)
    assert result.params["records_shown"] == ["top[0]", "top[1]"] and result.params["records_dropped"] == []
    assert result.usage.prompt_tokens > 0 and result.usage.cost_usd > 0 and stats["calls"] == 1


def test_only_train_records_reach_the_prompt(fake_openai):
    seen = last_user_message(fake_openai)
    records = feature(
        ActivationRecord(["train", " word"], [0, 1.0], label="top[0]"),
        ActivationRecord(["valid", " secret"], [0, 9.0], data_split="valid", label="top[1]"),
        ActivationRecord(["test", " hidden"], [0, 9.0], data_split="test", label="top[2]"),
    )
    run_explain(fake_openai, records)
    prompt = json.dumps(seen[0]["messages"])
    assert " word" in prompt and "secret" not in prompt and "hidden" not in prompt


def test_values_are_scaled_by_the_maximum_of_the_records_shown(fake_openai):
    """OpenAI's scale: the collection's maximum (8.0, in a test-split record the explainer never sees) does not
    set the scale; the top shown token is a 10, and the others floor(10 * x / 4.0)."""
    seen = last_user_message(fake_openai)
    records = feature(ActivationRecord(["a", " b", " c"], [-0.5, 4.0, 1.9], label="top[0]"),
                      ActivationRecord(["d", " e"], [3.0, 0.0], label="top[1]"),
                      ActivationRecord(["x", " y"], [8.0, 0.0], label="top[2]", data_split="test"),
                      max_activation=8.0)
    (result,), _ = run_explain(fake_openai, records, n_few_shot=0)
    user = seen[0]["messages"][-1]["content"]
    assert "a\t0\n b\t10\n c\t4\n" in user and "d\t7\n e\t0\n" in user and "x\t" not in user
    assert result.params["max_activation"] == 4.0


def test_scale_is_the_maximum_of_what_the_fitted_prompt_shows(fake_openai):
    records = feature(*[ActivationRecord([f"w{i}"] * 30, [float(i + 1)] * 30, label=f"top[{i}]") for i in range(6)],
                      max_activation=50.0)
    (full,), _ = run_explain(fake_openai, records, n_few_shot=0)
    seen = last_user_message(fake_openai)
    (fitted,), _ = run_explain(fake_openai, records, n_few_shot=0,
                               max_prompt_tokens=full.params["prompt_tokens_estimate"] - 100)
    assert fitted.params["records_dropped"] and fitted.params["max_activation"] == 6.0
    assert "w5\t10\n" in seen[0]["messages"][-1]["content"]


def test_negative_side_uses_negated_activations_and_says_so(fake_openai):
    seen = last_user_message(fake_openai)
    # The negative side's records are a signed collection's bottom ones (its most negative windows).
    records = feature(ActivationRecord(["up", " down"], [3.0, -2.0], sample="bottom", label="bottom[0]"),
                      ActivationRecord(["only", " up"], [1.0, 2.0], label="top[0]"))
    (result,), _ = run_explain(fake_openai, records, polarity="negative", n_few_shot=0)
    assert result.ok and result.polarity == "negative" and result.params["records_shown"] == ["bottom[0]"]
    system, user = seen[0]["messages"][0]["content"], seen[0]["messages"][-1]["content"]
    assert "BELOW zero" in system and "up\t0\n down\t10\n" in user


def test_no_activity_on_the_side_asked_is_a_failure_without_a_call(fake_openai):
    records = feature(ActivationRecord(["a", " b"], [0.0, 1.0], label="top[0]"))
    (result,), stats = run_explain(fake_openai, records, polarity="negative")
    assert not result.ok and "below zero" in result.failure_reason and fake_openai.requests == 0


def test_records_dropped_lowest_ranked_first_to_fit_the_budget(fake_openai):
    records = feature(*[ActivationRecord([f"w{i}"] * 30, [float(i + 1)] * 30, label=f"top[{i}]") for i in range(6)])
    (full,), _ = run_explain(fake_openai, records, n_few_shot=0)
    budget = full.params["prompt_tokens_estimate"] - 100
    (fitted,), _ = run_explain(fake_openai, records, n_few_shot=0, max_prompt_tokens=budget)
    assert full.params["records_shown"] == [f"top[{i}]" for i in (5, 4, 3, 2, 1, 0)]
    assert fitted.params["records_dropped"][0] == "top[0]"  # the weakest goes first
    assert fitted.params["prompt_tokens_estimate"] <= budget and fitted.ok

    (too_small,), _ = run_explain(fake_openai, records, max_prompt_tokens=50)
    assert not too_small.ok and "over the budget of 50" in too_small.failure_reason


def test_candidates_differ_by_seed_and_greedy_candidates_are_refused(fake_openai):
    fake_openai.answer = lambda endpoint, body: f"candidate with seed {body.get('seed')}"
    results, _ = run_explain(fake_openai, TINY, n_candidates=3)
    assert [r.candidate for r in results] == [0, 1, 2]
    assert [r.text for r in results] == [f"candidate with seed {i}" for i in range(3)]
    assert results[0].params["temperature"] == 1.0
    with pytest.raises(ValueError, match="temperature > 0"):
        run_explain(fake_openai, TINY, n_candidates=2, temperature=0.0)


def test_unusable_answer_is_a_failure_carrying_the_raw_output(fake_openai):
    fake_openai.answer = lambda endpoint, body: "<start>\ncat\t10\n<end>"
    (result,), _ = run_explain(fake_openai, TINY)
    assert result.status == "failed" and result.text is None
    assert result.raw_output == "<start>\ncat\t10\n<end>" and "echoes the prompt" in result.failure_reason


def test_completion_path_for_models_without_chat(fake_openai):
    seen = last_user_message(fake_openai)
    client = make_client("openai:gpt-4o-mini", base_url=fake_openai.url)
    client.capabilities = Capabilities(chat=False, prompt_logprobs=True, top_logprobs=True)

    async def go():
        try:
            return await explain(client, TINY, fmt="token_activation_pairs")
        finally:
            await client.aclose()

    (result,) = asyncio.run(go())
    assert result.ok and result.params["chat"] is False and fake_openai.by_endpoint["completions"] == 1
    assert seen[0]["prompt"].endswith("Explanation of neuron 3 behavior: the main thing this neuron does is find")


def test_failure_mix_every_feature_ends_explained_or_failed_with_reason(fake_openai):
    fake_openai.failure_rate = 0.3
    fake_openai.script = ["hang", "429", "500", "garbage"]  # each kind for sure, then the 30% random mix
    fake_openai.retry_after = "0"
    fake_openai.hang_s = 2.0
    features = [feature(ActivationRecord(["tok", f" w{i}"], [0, 1.0 + i], label="top[0]")) for i in range(30)]
    client = make_client("openai:gpt-4o-mini", base_url=fake_openai.url, backoff_s=0.01, timeout_s=0.5,
                         max_retries=2, concurrency=16)

    async def go():
        try:
            per_feature = await asyncio.gather(*(explain(client, f) for f in features))
            return [r for results in per_feature for r in results]
        finally:
            await client.aclose()

    results = asyncio.run(go())
    assert len(results) == 30
    for r in results:
        assert (r.ok and r.text) or (r.status == "failed" and r.failure_reason and r.text is None)
    stats = client.stats()
    assert stats["retries"] > 0 and stats["requests"] == fake_openai.requests
    assert {"429", "500", "hang", "garbage"} <= set(fake_openai.by_outcome)
    assert stats["failures"] == sum(not r.ok for r in results)
