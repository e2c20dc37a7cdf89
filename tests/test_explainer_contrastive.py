"""The contrastive explainer (`explain(..., contrast=...)`): counterexamples in every format, marked as not
activating; hard negatives before random quiet windows; nothing outside the train split; windows where the feature
fires left out; a feature with none fails without a call; its own prompt versions and configuration."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import String

from activations.records import ActivationRecord, FeatureRecords, NeighbourWindow
from autointerp.workflows.options import ExplainOptions
from explainer.contrast import NEGATIVES_RULE, Contrast
from explainer.prompts import EVIDENCE_CHOICES, PROMPT_VERSIONS, prompt_version
from explainer.sampling import SAMPLES
from storage.core import repository as repo
from storage.core.schema import Explanation
from tests.test_explainer import FEATURE
from tests.test_explainer_snippets import explain_via


def _record(words: str, fire_at: int | None, sample: str = "top", data_split: str = "train", peak: float = 4.0,
            label: str = "") -> ActivationRecord:
    tokens = [f" {w}" for w in words.split()]
    acts = [peak if i == fire_at else 0.0 for i in range(len(tokens))]
    return ActivationRecord(tokens, acts, sample=sample, data_split=data_split, label=label or words.split()[0])


def _window(neighbour: int, words: str, own: list[float] | None, data_split: str = "train") -> NeighbourWindow:
    record = _record(words, 2, data_split=data_split, label=f"top[{words.split()[0]}]")
    return NeighbourWindow(neighbour, 0.5, record, None if own is None else tuple(own))


# The feature fires on "cat"; held-out records and a neighbour's test window carry words that must never show.
RECORDS = FeatureRecords(FEATURE, [
    _record("the cat sat down", 1), _record("a cat ran off", 1, peak=3.0),
    _record("quietrandom words here only", None, sample="random"),
    _record("faintrandom words here too", 0, sample="random", peak=0.3),  # 0 on the prompt's scale: quiet
    _record("firingrandom cat is here", 1, sample="random", peak=2.0),  # fires: never a counterexample
    _record("heldouttop cat again", 1, data_split="test", peak=9.0),
    _record("heldoutrandom words", None, sample="random", data_split="valid"),
])
WINDOWS = [
    _window(7, "zebra crossing at dawn", None),  # own activations unknown: taken as quiet
    _window(7, "ownquiet lion roars", [0.0, 0.1, 0.2]),  # known and quiet on the prompt's scale
    _window(9, "ownfires tiger here", [0.0, 4.0, 0.0]),  # the feature fires here too: left out
    _window(9, "heldoutneighbour leak text", None, data_split="test"),  # never shown: not train
]
NEVER_SHOWN = ("heldout", "ownfires", "firingrandom")
HEADERS = {"token_activation_pairs": "Texts where neuron 3 does not activate (every activation 0):",
           "highlight": "NON-ACTIVATING EXAMPLES:", "snippets": "Neuron E does not fire on:"}


def _prompt(body: dict) -> str:
    return body["prompt"] if "prompt" in body else json.dumps(body["messages"])


@pytest.mark.parametrize("fmt", ["token_activation_pairs", "highlight", "snippets"])
def test_prompt_shows_counterexamples_marked_as_not_activating_and_nothing_held_out(fake_openai, fmt):
    chat = fmt != "snippets"
    (result,), seen = explain_via(fake_openai, RECORDS, chat=chat, fmt=fmt, contrast=Contrast(3, WINDOWS))
    assert result.ok, result.failure_reason
    prompt = _prompt(seen[0][1])
    if chat:  # the feature's own turn is the last message
        prompt = seen[0][1]["messages"][-1]["content"]
    header = prompt.index(HEADERS[fmt])
    # The three counterexamples: both quiet neighbour windows (nearest neighbour's first), then the quiet random
    # window that comes closest to firing; all after the header, and the activating records before it.
    assert [prompt.index(w) > header for w in ("zebra", "ownquiet", "faintrandom")] == [True] * 3
    assert "cat" in prompt[:header] and "quietrandom" not in prompt
    assert not [w for w in NEVER_SHOWN if w in _prompt(seen[0][1])]
    assert result.params["negatives_shown"] == ["neighbour 7 top[zebra]", "neighbour 7 top[ownquiet]", "faintrandom"]
    assert result.params["negatives_by_source"] == {"neighbour": 2, "random": 1}
    assert result.params["negatives_quiet_assumed"] == 1 and result.params["explainer_mode"] == "contrastive"
    assert "contrastive/v1" in result.prompt_version


@pytest.mark.parametrize("fmt", ["token_activation_pairs", "highlight", "snippets"])
def test_few_shot_examples_carry_counterexamples_too_and_the_plain_prompt_has_none(fake_openai, fmt):
    (contrastive,), seen = explain_via(fake_openai, RECORDS, chat=fmt != "snippets", fmt=fmt,
                                       contrast=Contrast(2, WINDOWS))
    (plain,), seen_plain = explain_via(fake_openai, RECORDS, chat=fmt != "snippets", fmt=fmt)
    text, plain_text = _prompt(seen[0][1]), _prompt(seen_plain[0][1])
    counter_shot = "The farmer mixed feed" if fmt != "snippets" else "I paid with a card"
    assert counter_shot in text and counter_shot not in plain_text
    assert "zebra" not in plain_text and "counterexample" not in plain_text.lower()
    assert plain.prompt_version == f"{PROMPT_VERSIONS[fmt]}+top" and "explainer_mode" not in plain.params
    assert contrastive.prompt_version != plain.prompt_version


def test_negative_polarity_counts_a_window_quiet_where_the_feature_is_not_pushed_below_zero(fake_openai):
    records = FeatureRecords(FEATURE, [_record("the dog barked", 1, sample="bottom", peak=-5.0),
                                       _record("pushed below here", 0, sample="random", peak=-3.0),
                                       _record("positive random window", 0, sample="random", peak=6.0)])
    (result,), seen = explain_via(fake_openai, records, chat=True, fmt="highlight", polarity="negative",
                                  contrast=Contrast(5, None))
    prompt = seen[0][1]["messages"][-1]["content"]
    assert "positive random window" in prompt.split("NON-ACTIVATING EXAMPLES:")[1] and "pushed below" not in prompt
    assert "NOT pushed below zero" in seen[0][1]["messages"][0]["content"]


def test_without_neighbours_random_quiet_windows_fill_in(fake_openai):
    (result,), seen = explain_via(fake_openai, RECORDS, chat=True, fmt="highlight", contrast=Contrast(5, None))
    assert result.ok and result.params["negatives_by_source"] == {"neighbour": 0, "random": 2}
    assert result.params["negatives_shown"] == ["faintrandom", "quietrandom"]


@pytest.mark.parametrize("windows,why", [(None, "it has no nearest neighbours stored"),
                                         (WINDOWS[2:], "it fires on every train-split top window of its neighbours")])
def test_a_feature_with_no_counterexample_fails_with_the_reason_and_no_call(fake_openai, windows, why):
    records = FeatureRecords(FEATURE, [r for r in RECORDS.records if "quiet" not in r.label and "faint" not in r.label])
    results, seen = explain_via(fake_openai, records, chat=True, fmt="highlight", contrast=Contrast(5, windows),
                                n_candidates=2, temperature=1.0)
    assert seen == [] and all(not r.ok and r.failure_kind == "input" for r in results)
    assert why in results[0].failure_reason and "--explainer-mode plain" in results[0].failure_reason
    assert results[0].params["negatives_shown"] == [] and "contrastive/v1" in results[0].prompt_version


def test_the_count_shown_is_the_option_and_a_span_is_never_shown_twice(fake_openai):
    twice = [*WINDOWS[:2], _window(8, "zebra crossing at dawn", None)]
    (result,), _ = explain_via(fake_openai, RECORDS, chat=True, fmt="highlight", contrast=Contrast(10, twice))
    assert result.params["negatives_shown"] == ["neighbour 7 top[zebra]", "neighbour 7 top[ownquiet]",
                                                "faintrandom", "quietrandom"]
    (one,), _ = explain_via(fake_openai, RECORDS, chat=True, fmt="highlight", contrast=Contrast(1, twice))
    assert one.params["negatives_shown"] == ["neighbour 7 top[zebra]"]


def test_config_hash_differs_by_mode_and_count_and_plain_configs_keep_their_hash():
    plain = ExplainOptions(layer=6).explain_config()
    contrastive = ExplainOptions(layer=6, explainer_mode="contrastive").explain_config()
    more = ExplainOptions(layer=6, explainer_mode="contrastive", explainer_negatives=8).explain_config()
    assert len({repo.config_hash(c) for c in (plain, contrastive, more)}) == 3
    assert contrastive["explainer_negatives"] == 5 and contrastive["negatives_rule"] == NEGATIVES_RULE
    assert contrastive["prompt_version"].startswith("auto-contrastive/v1[")
    # A plain configuration is what it was before the mode existed: stored plain work still resumes.
    assert not {"explainer_mode", "explainer_negatives", "negatives_rule"} & set(plain)
    assert plain["prompt_version"] == f"{PROMPT_VERSIONS['auto']}+top"
    assert repo.config_hash(ExplainOptions(layer=6, explainer_negatives=8).explain_config()) == repo.config_hash(plain)


def test_every_contrastive_prompt_version_fits_its_column_and_differs_from_the_plain_ones():
    column_type = Explanation.__table__.c.prompt_version.type
    assert isinstance(column_type, String) and column_type.length is not None
    versions = {mode: [prompt_version(fmt, evidence, sample, mode) for fmt in PROMPT_VERSIONS if fmt != "auto"
                       for evidence in EVIDENCE_CHOICES for sample in SAMPLES] for mode in ("plain", "contrastive")}
    assert not set(versions["plain"]) & set(versions["contrastive"])
    assert max(map(len, versions["contrastive"])) <= column_type.length
