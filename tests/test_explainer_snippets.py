"""The snippets format for base models, the auto format choice, and the few-shot-copy / snippet-echo
rejection that applies to every format — through the real client and the fake OpenAI-compatible server,
plus gemma-3-270m on two planted features."""

from __future__ import annotations

import asyncio

import pytest

from activations.records import ActivationRecord, FeatureId, FeatureRecords
from explainer import PROMPT_VERSIONS, explain, parse_explanation
from explainer.prompts import FEW_SHOTS, SNIPPET_SHOTS
from explainer.snippets import snippet_line, snippet_lines
from llm_client import Capabilities, make_client
from tests.fake_openai import FakeOpenAI
from tests.test_explainer import TINY, feature

PINNED_TINY_PROMPT = (
    "A list of text snippets where one neuron of a language model fires. The token where it fires is marked "
    "<<like this>>.\n\n"
    "Neuron A fires on:\n"
    "- When we got to the shop I paid <<15>> dollars\n"
    "- The author of the book was born in <<1999>> in\n"
    "- the farm had a total of <<42>> cats\n"
    "Marked: 15, 1999, 42\n"
    "Summary: Neuron A fires on numbers.\n\n"
    "Neuron B fires on:\n"
    "- The <<cat>> sat down on\n"
    "- A <<dog>>\n"
    "Marked: cat, dog\n"
    "Summary: Neuron B fires on"
)


def explain_via(server: FakeOpenAI, records: FeatureRecords, *, chat: bool, answer: str = " cats and dogs.",
                **options) -> tuple[list, list[tuple[str, dict]]]:
    """explain() through the real OpenAI client; returns the results and every (endpoint, body) sent."""
    seen: list[tuple[str, dict]] = []

    def reply(endpoint: str, body: dict) -> str:
        seen.append((endpoint, body))
        return answer

    server.answer = reply
    client = make_client("openai:base-model", base_url=server.url, backoff_s=0.01)
    client.capabilities = Capabilities(chat=chat, prompt_logprobs=True, top_logprobs=True)

    async def go():
        try:
            return await explain(client, records, **options)
        finally:
            await client.aclose()

    return asyncio.run(go()), seen


def test_snippets_prompt_is_pinned_and_stops_at_the_line_end(fake_openai):
    (result,), seen = explain_via(fake_openai, TINY, chat=False, fmt="snippets", n_few_shot=1)
    ((endpoint, body),) = seen
    assert endpoint == "completions" and body["prompt"] == PINNED_TINY_PROMPT
    assert body["stop"] == ["\n"] and body["max_tokens"] == 32 and body["temperature"] == 0
    assert result.ok and result.text == "cats and dogs" and result.prompt_version == "snippets/v2+top"
    assert result.params["records_shown"] == ["top[0]", "top[1]"] and result.params["chat"] is False


def test_snippet_window_marks_strong_tokens_and_merges_neighbours():
    tokens = [f" w{i}" for i in range(20)]
    tokens[13] = "\n"
    values = [0] * 20
    values[12], values[11], values[14], values[15], values[3] = 10, 9, 6, 5, 8
    # 8 tokens before the peak and 3 after; 11 and 14 are the two strongest others in that window (15 is
    # third, 3 is outside); 11 sits next to the peak, so they form one span; the newline becomes a space.
    assert snippet_line(tokens, values) == "w4 w5 w6 w7 w8 w9 w10 <<w11 w12>> <<w14>> w15"
    weak = [0] * 20
    weak[12], weak[11] = 10, 4  # under half the max: context, not marked
    assert snippet_line(tokens, weak) == "w4 w5 w6 w7 w8 w9 w10 w11 <<w12>> w14 w15"
    same = (("I", " paid", " 15"), (0, 0, 10))
    assert snippet_lines([same, same, (("A", " dog"), (0, 5))]) == ["I paid <<15>>", "A <<dog>>"]


def test_negative_snippets_mark_the_most_negative_token(fake_openai):
    # The negative side is explained from the most negative records (sample kind bottom).
    records = feature(ActivationRecord(["up", " down", " again"], [3.0, -2.0, 0.0], sample="bottom", label="bottom[0]"),
                      ActivationRecord(["only", " up"], [1.0, 2.0], sample="bottom", label="bottom[1]"))
    (result,), seen = explain_via(fake_openai, records, chat=False, fmt="snippets", polarity="negative", n_few_shot=0)
    prompt = seen[0][1]["prompt"]
    assert result.ok and result.params["records_shown"] == ["bottom[0]"]
    assert prompt.startswith("A list of text snippets where one neuron of a language model is pushed furthest "
                             "below zero")
    assert prompt.endswith("Neuron A is most negative on:\n- up <<down>> again\nMarked: down\n"
                           "Summary: Neuron A is most negative on")


def test_snippets_drop_the_weakest_records_to_fit(fake_openai):
    records = feature(*[ActivationRecord([f"w{i}"] * 30, [float(i + 1)] * 30, label=f"top[{i}]") for i in range(6)])
    (full,), _ = explain_via(fake_openai, records, chat=False, fmt="snippets")
    (fitted,), _ = explain_via(fake_openai, records, chat=False, fmt="snippets",
                               max_prompt_tokens=full.params["prompt_tokens_estimate"] - 10)
    assert full.params["records_shown"] == [f"top[{i}]" for i in (5, 4, 3, 2, 1, 0)]
    assert fitted.ok and fitted.params["records_dropped"][0] == "top[0]"


@pytest.mark.parametrize("chat,fmt,version,endpoint", [
    (True, "token_activation_pairs", "token-activation-pairs/v2+top", "chat"),
    (False, "snippets", "snippets/v2+top", "completions"),
])
def test_auto_picks_pairs_for_chat_models_and_snippets_for_base_models(fake_openai, chat, fmt, version, endpoint):
    (result,), seen = explain_via(fake_openai, TINY, chat=chat)  # fmt defaults to "auto"
    assert result.ok and result.params["format"] == fmt and result.params["requested_format"] == "auto"
    assert result.prompt_version == version == f"{PROMPT_VERSIONS[fmt]}+top" and seen[0][0] == endpoint
    # The auto entry (the pipeline's config hash) names both formats' versions, so bumping either re-explains.
    assert "token-activation-pairs/v2" in PROMPT_VERSIONS["auto"] and "snippets/v2" in PROMPT_VERSIONS["auto"]


@pytest.mark.parametrize("fmt,shot", [
    ("token_activation_pairs", FEW_SHOTS[0].explanation),
    ("highlight", FEW_SHOTS[1].explanation),
    ("snippets", SNIPPET_SHOTS[0].explanation),
    ("snippets", SNIPPET_SHOTS[2].explanation),
])
@pytest.mark.parametrize("tail", [".", " and other things."])
def test_a_copied_few_shot_explanation_is_a_failure_in_every_format(fake_openai, fmt, shot, tail):
    answer = f" {shot}{tail}" if fmt != "highlight" else f"[EXPLANATION]: {shot}{tail}"
    (result,), _ = explain_via(fake_openai, TINY, chat=True, fmt=fmt, answer=answer)
    assert result.status == "failed" and result.text is None and result.raw_output == answer
    assert f"copies the prompt's few-shot explanation {shot!r}" in result.failure_reason


def test_a_few_shot_left_out_of_the_prompt_is_not_held_against_the_answer(fake_openai):
    (result,), _ = explain_via(fake_openai, TINY, chat=False, fmt="snippets", n_few_shot=1,
                               answer=f" {SNIPPET_SHOTS[1].explanation}.")
    assert result.ok and result.text == SNIPPET_SHOTS[1].explanation


@pytest.mark.parametrize("answer,reason", [
    (" The cat sat down on", "echoes a snippet"),
    (" the <<cat>> sat", "echoes the prompt"),
    (" - A dog", "echoes the prompt"),
    (" Summary: Neuron C fires on cats", "echoes the prompt"),
    ("", "empty explanation"),
])
def test_snippet_echoes_and_empty_answers_are_failures(fake_openai, answer, reason):
    (result,), _ = explain_via(fake_openai, TINY, chat=False, answer=answer)
    assert result.status == "failed" and reason in result.failure_reason and result.raw_output == answer


@pytest.mark.parametrize("raw,text", [
    (' the word "cat".', 'the word "cat"'),
    (' "animals".', "animals"),
    (" cat", "cat"),  # one word shared with a snippet may be the explanation itself
    (" numbered lists", "numbered lists"),  # a copy starts with the few-shot's whole words ("numbers ...")
])
def test_snippet_answers_parse_to_one_line(raw, text):
    few_shots = [shot.explanation for shot in SNIPPET_SHOTS]
    parsed = parse_explanation(raw, "snippets", few_shots=few_shots, snippets=["The <<cat>> sat down on"])
    assert parsed.text == text, parsed


@pytest.fixture(scope="module")
def gemma():
    return make_client("local:gemma-3-270m", device="cpu")


def planted(index: int, sentences: list[tuple[list[str], int]]) -> FeatureRecords:
    """A feature that fires (5.0) on one chosen token of each sentence."""
    records = []
    for i, (tokens, peak) in enumerate(sentences):
        acts = [0.0] * len(tokens)
        acts[peak] = 5.0
        records.append(ActivationRecord(tokens, acts, label=f"top[{i}]"))
    return FeatureRecords(FeatureId("gemma-3-270m", 6, "mlp_neuron", index), records)


@pytest.mark.slow
def test_gemma_explains_two_planted_features_differently_without_copying(gemma):
    cities = planted(1, [
        (["We", " flew", " from", " Paris", " to", " Rome", " last", " week"], 3),
        (["The", " museum", " in", " London", " was", " closed"], 3),
        (["She", " grew", " up", " in", " Berlin", " and", " moved"], 4),
        (["Our", " office", " in", " Madrid", " opened", " today"], 3),
    ])
    negation = planted(2, [
        (["She", " did", " not", " want", " to", " go"], 2),
        (["It", " is", " not", " the", " right", " time"], 2),
        (["They", " could", " not", " find", " the", " key"], 2),
        (["He", " was", " not", " at", " home", " today"], 2),
    ])

    async def go():
        return [(await explain(gemma, f))[0] for f in (cities, negation)]

    results = asyncio.run(go())
    for r in results:
        assert r.ok, r  # a copied few-shot or an echo would be a failure with its reason
        assert r.params["format"] == "snippets" and r.prompt_version == "snippets/v2+top"
    assert results[0].text.lower() != results[1].text.lower()
