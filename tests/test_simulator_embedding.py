"""Embedding simulator on planted features: real sentences, activation 1 on the tokens the feature fires on
(marked [like this], or chosen by a rule), scored under the true explanation and under near-miss ones."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest

import scorer

PLANTED: dict[str, dict[str, Any]] = {
    "digits": dict(
        true="numbers and digits",
        near=["units of measurement like metres and kilograms", "words for amounts such as many, few and several"],
        sentences=[
            "The bridge is [120] metres long and was built in [1932] by [400] workers.",
            "She bought [3] kilograms of apples and many pears for the party.",
            "Several hundred people came, although only [25] had tickets.",
            "The train leaves at [7] in the morning and arrives [2] hours later.",
            "A few metres further, the road narrows to [4] lanes.",
            "Most of the [16] houses were sold for a few thousand pounds.",
        ]),
    "colours": dict(
        true="colour words such as red, blue and green",
        near=["words describing shapes and sizes", "words naming materials like wood, metal and glass"],
        sentences=[
            "The [red] car stopped next to the large wooden fence.",
            "She painted the round table [blue] and the small chairs [yellow].",
            "A tall glass vase stood on the square metal shelf.",
            "His [green] jacket had [white] buttons made of brass.",
            "The narrow path was lined with tiny [purple] flowers and huge stones.",
            "They built a wide [grey] wall out of concrete and steel.",
        ]),
    "animals": dict(
        true="animals",
        near=["plants, trees and flowers", "farms, fields and the countryside"],
        sentences=[
            "A [fox] crept through the wheat field toward the farm.",
            "The old oak tree sheltered a family of [owls] and a [squirrel].",
            "Roses and tulips grew beside the barn where the [horses] slept.",
            "In the meadow, [cows] grazed under an apple tree.",
            "The farmer planted potatoes while his [dog] chased [rabbits].",
            "Pine forests cover the hills, home to [wolves] and [deer].",
        ]),
    "negation": dict(
        true="negation words like not, never and no",
        near=["question words like what, why and how", "words expressing certainty like always and definitely"],
        sentences=[
            "I have [never] seen anything like it, and I do [not] want to.",
            "Why did he always arrive late, and what was he hiding?",
            "There is [no] reason to worry; the results are definitely correct.",
            "She could [not] explain how the machine worked.",
            "We will always remember the day, though [nobody] knows why it happened.",
            "How could they [never] notice what was certainly obvious?",
        ]),
    "weekdays": dict(
        true="days of the week",
        near=["months of the year", "times of day like morning and evening"],
        sentences=[
            "The meeting moved from [Monday] morning to [Friday] evening.",
            "In March the market opens every [Saturday] at noon.",
            "We arrived in July, on a hot [Tuesday] afternoon.",
            "The shop is closed on [Sunday] and opens late in December.",
            "By midnight on [Wednesday] the report was finished.",
            "Every evening in August we walked to the harbour.",
        ]),
    "after_of": dict(
        true="the word right after \"of\"",
        near=["the word \"of\"", "the word right after \"the\""],
        rule=lambda tokens, i: 1.0 if i > 0 and tokens[i - 1].strip() == "of" else 0.0,
        sentences=[
            "The history of Rome is told in many of the books kept at the University of Padua.",
            "Most of the guests left early, but the mayor of Bristol stayed for a cup of tea.",
            "A piece of cake and a glass of milk were left on the table.",
            "The end of the war brought a period of calm to the city.",
            "He spoke of freedom in front of thousands of people.",
            "The capital of France lies on the banks of the Seine.",
        ]),
}


def planted_records(feature: dict) -> tuple[list[list[str]], list[list[float]]]:
    all_tokens, all_acts = [], []
    for sentence in feature["sentences"]:
        tokens, acts = [], []
        for m in re.finditer(r"(\s?)\[([^\]]+)\]|\s?\w+|\s?[^\w\s]", sentence):
            tokens.append(m.group(1) + m.group(2) if m.group(2) else m.group())
            acts.append(1.0 if m.group(2) else 0.0)
        if "rule" in feature:
            acts = [feature["rule"](tokens, i) for i in range(len(tokens))]
        all_tokens.append(tokens)
        all_acts.append(acts)
    return all_tokens, all_acts


def planted_table(sim) -> dict[str, dict[str, float]]:
    """EV correlation of each feature's true and near-miss explanations."""
    table = {}
    for name, feature in PLANTED.items():
        tokens, acts = planted_records(feature)
        row = {}
        for explanation in [feature["true"], *feature["near"]]:
            sims = asyncio.run(sim.simulate(explanation, tokens))
            row[explanation] = scorer.ev_correlation(acts, [s.expected_activations for s in sims])
        table[name] = row
    return table


@pytest.fixture(scope="module")
def embedding_sim():
    from simulator.embedding import EmbeddingSimulator

    return EmbeddingSimulator(device="cpu")


@pytest.mark.slow
def test_true_explanation_beats_near_misses_on_planted_features(embedding_sim):
    table = planted_table(embedding_sim)
    wins = total = 0
    for name, row in table.items():
        true = row[PLANTED[name]["true"]]
        for near in PLANTED[name]["near"]:
            total += 1
            wins += true is not None and (row[near] is None or true > row[near])
    print(f"\ntrue > near-miss in {wins}/{total} pairs: {table}")
    assert wins / total >= 0.75, table
    assert all(row[PLANTED[name]["true"]] > 0.3 for name, row in table.items()), table


@pytest.mark.slow
def test_values_are_on_the_0_to_10_scale_and_tokens_kept(embedding_sim):
    tokens = [["The", " red", "\n", "", " car"]]
    (sim,) = asyncio.run(embedding_sim.simulate("colour words", tokens))
    assert sim.tokens == tokens[0] and len(sim.expected_activations) == 5
    assert all(0 <= v <= 10 for v in sim.expected_activations)
    assert sim.expected_activations[1] == max(sim.expected_activations)
