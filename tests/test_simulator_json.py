"""JSON simulator: strict validation of the chat reply, and expected values from top logprobs, through a
real HTTP fake OpenAI-compatible server."""

from __future__ import annotations

import asyncio
import json
import math

import pytest

from simulator import SimulationError, make_simulator
from simulator.json_sim import parse_reply
from tests.closing import simulate_and_close

TOKENS = ["The", " red", "\tcar"]


def test_valid_reply_gives_values_and_value_offsets():
    text = '```json\n[["The", 0], [" red", 8], ["\\tcar", 1]]\n```'
    values, spans = parse_reply(text, TOKENS, "record 0")
    assert values == [0.0, 8.0, 1.0]
    assert [text[s] for s in spans] == ["0", "8", "1"]


@pytest.mark.parametrize("reply, message", [
    ('[["The", 0], [" red", 8]]', "2 pairs for 3 tokens"),
    ('[["The", 0], [" blue", 8], ["\\tcar", 1]]', r"pair 1: token ' blue' does not match the record's token ' red'"),
    ('[["The", 0], [" red", 11], ["\\tcar", 1]]', "value 11 is outside 0..10"),
    ('[["The", 0], [" red", "8"], ["\\tcar", 1]]', r"pair 1: expected \[token, number\]"),
    ('[["The", 0], [" red", 8], ["\\tcar", 1]', "not valid JSON"),
    ("I think the neuron fires on red.", "no JSON list"),
])
def test_mismatches_are_failures_with_the_reason(reply, message):
    with pytest.raises(SimulationError, match=message):
        parse_reply(reply, TOKENS, "record 0")


def _reply_for(endpoint: str, body: dict) -> str:
    """Answer with value 9 for colour words, 0 otherwise, echoing the tokens from the prompt."""
    prompt = body["messages"][-1]["content"]
    tokens = json.loads(prompt.split("Tokens (a JSON list):\n", 1)[1].split("\n\n", 1)[0])
    return json.dumps([[t, 9 if t.strip() in {"red", "blue"} else 0] for t in tokens])


def test_expected_values_come_from_top_logprobs_at_each_value(fake_openai):
    fake_openai.answer = _reply_for
    fake_openai.digit_for = lambda token: int(token) if token.strip().isdigit() else 0
    sim = make_simulator("json:openai:fake-model", base_url=fake_openai.url)
    (a, b) = asyncio.run(simulate_and_close(sim, "colour words", [TOKENS, [" blue", " sky"]]))

    def peaked(v: int) -> float:  # the fake's distribution: logits -|i - v| over the digits 0..10
        w = [math.exp(-abs(i - v)) for i in range(11)]
        return sum(i * x for i, x in enumerate(w)) / sum(w)

    assert a.expected_activations == pytest.approx([peaked(0), peaked(9), peaked(0)])
    assert b.expected_activations == pytest.approx([peaked(9), peaked(0)])
    assert len(a.distributions) == 3 and abs(sum(a.distributions[1]) - 1) < 1e-9


def test_bad_reply_from_the_endpoint_fails_the_simulation(fake_openai):
    fake_openai.answer = lambda endpoint, body: '[["The", 0]]'
    sim = make_simulator("json:openai:fake-model", base_url=fake_openai.url)
    with pytest.raises(SimulationError, match="record 0: the reply has 1 pairs for 3 tokens"):
        asyncio.run(simulate_and_close(sim, "colour words", [TOKENS]))
