"""All-at-once logprob simulators: the local KV-cached batched path against the plain forward pass, and the
remote echo path through a real HTTP fake OpenAI-compatible server."""

from __future__ import annotations

import asyncio
import math

import pytest

from llm_client import Completion, TokenLogprobs, Usage, make_client
from simulator import SimulationError, make_simulator
from simulator.logprob_remote import RemoteLogprobSimulator, slot_tops, ten_is_one_token
from simulator.prompts import FEW_SHOT, FewShotExample, escape_token, prefix_text, record_text
from simulator.values import distributions_from_tops
from tests.closing import simulate_and_close

# Byte-level, whitespace, control, empty and long tokens; lengths differ so batches need padding.
AWKWARD = [
    [" The", " red", " car", "\t", "\n\n", " 1", "9", "6", "9", ".", "Ġ", "\ufffd", "", "\\", "<0xE2>", " café", "<start>"],
    [" blue"],
    [" of", " the", " unknown", "\tunknown", " sky", " is", " green", " and", " grey", ",", " not", " pink"],
]


def test_escape_keeps_each_token_on_one_visible_line():
    assert escape_token("a\tb\nc\r\\") == "a\\tb\\nc\\r\\\\"
    assert escape_token("") == "<empty>" and escape_token("\x07") == "\\x07"
    text, offsets = record_text([" a", "\t", "b"])
    assert text == " a\tunknown\n\\t\tunknown\nb\tunknown\n"
    assert all(text[o - 1] == "\t" and text[o:].startswith("unknown") for o in offsets)
    assert prefix_text("colour words").endswith("does is find colour words\nActivations: \n<start>\n")


def _few_shot_blocks(text: str) -> list[list[list[str]]]:
    """The few-shot records of a prefix, each as its lines split at the TAB."""
    blocks = text.split("<start>\n")[1:-1]  # the last <start> opens the record under test
    return [[line.split("\t") for line in block.split("\n<end>")[0].split("\n")] for block in blocks]


def test_few_shot_records_show_unknown_then_values_from_their_first_revealed_index():
    """OpenAI's layout: the model sees "unknown" lines followed by values, so it does not learn that an
    "unknown" line is always followed by another (docs/simulator-values.md)."""
    blocks = _few_shot_blocks(prefix_text("colour words"))
    records = [(example, r) for example in FEW_SHOT for r in range(len(example.records))]
    assert len(blocks) == len(records) == 6
    for lines, (example, r) in zip(blocks, records):
        first = example.first_revealed[r]
        assert first > 0  # every few-shot record starts with hidden values
        assert [token for token, _ in lines] == [t for t, _ in example.records[r]]
        assert [value for _, value in lines[:first]] == ["unknown"] * first
        assert [value for _, value in lines[first:]] == [str(a) for _, a in example.records[r][first:]]
    # a value the unknown lines hide, and a 10 still shown (the remote simulator reads from it how 10 is written)
    assert any(a > 0 for example in FEW_SHOT for r, record in enumerate(example.records)
               for _, a in record[:example.first_revealed[r]])
    assert "\t10\n" in prefix_text("colour words")


def test_few_shot_first_revealed_indices_are_checked():
    records = (((" red", 6), (" car", 0)),)
    assert FewShotExample("colours", records).shown(0) == [(" red", "6"), (" car", "0")]  # () shows every value
    assert FewShotExample("colours", records, (1,)).shown(0) == [(" red", "unknown"), (" car", "0")]
    with pytest.raises(ValueError, match="'colours': 2 first revealed indices for 1 records; give one per record"):
        FewShotExample("colours", records, (0, 1))
    with pytest.raises(ValueError, match="'colours', record 0: first revealed index 2 is outside 0..1"):
        FewShotExample("colours", records, (2,))


@pytest.fixture(scope="module")
def smollm_sim():
    from llm_client.local_models import load_model
    from simulator.logprob_local import LocalLogprobSimulator

    # One few-shot example keeps the prompts short: the equivalence does not depend on the prefix length.
    return LocalLogprobSimulator(load_model("smollm2-135m", device="cpu", dtype="float32"), batch_size=2, examples=FEW_SHOT[:1])


@pytest.mark.slow
def test_local_fast_path_equals_plain_forward_pass(smollm_sim):
    fast = smollm_sim.distributions("colour words", AWKWARD)
    plain = smollm_sim.reference_distributions("colour words", AWKWARD)
    assert [len(r) for r in fast] == [len(t) for t in AWKWARD]
    diff = max(abs(a - b) for rf, rp in zip(fast, plain) for df, dp in zip(rf, rp) for a, b in zip(df, dp))
    assert diff <= 1e-4
    sims = asyncio.run(smollm_sim.simulate("colour words", AWKWARD))
    for sim, tokens in zip(sims, AWKWARD):
        assert sim.tokens == tokens
        assert all(0 <= v <= 10 for v in sim.expected_activations)
        assert all(abs(sum(d) - 1) < 1e-9 for d in sim.distributions)
    # The fast path computes the same expected values the plain pass implies.
    ev_plain = [sum(k * p for k, p in enumerate(d)) for d in plain[2]]
    assert max(abs(a - b) for a, b in zip(sims[2].expected_activations, ev_plain)) <= 1e-4 * 10


@pytest.mark.slow
def test_local_record_too_long_for_context_is_a_failure_with_reason(smollm_sim):
    with pytest.raises(SimulationError, match="record 1: prompt of .* exceeds the simulator's context"):
        smollm_sim.distributions("x", [[" a"], [" word"] * 3000])


YEAR = [" The", " bridge", " opened", " in", " 1932", " after", " 6", " years", "."]


@pytest.fixture(scope="module")
def gemma_sim():
    from llm_client.local_models import load_model
    from simulator.logprob_local import LocalLogprobSimulator

    # The whole few-shot prefix (~800 tokens): past Gemma 3's 512-token sliding window, as in real use.
    return LocalLogprobSimulator(load_model("gemma-3-270m", device="cpu", dtype="float32"), batch_size=2)


@pytest.mark.slow
def test_gemma_reads_ten_from_one_then_zero_as_the_plain_pass_does(gemma_sim):
    assert gemma_sim.values.splits_ten  # Gemma's tokenizer has no "10" token
    records = [YEAR, [" smoke", "\t", " 10"]]
    fast = gemma_sim.distributions("numbers, especially years", records)
    plain = gemma_sim.reference_distributions("numbers, especially years", records)
    diff = max(abs(a - b) for rf, rp in zip(fast, plain) for df, dp in zip(rf, rp) for a, b in zip(df, dp))
    assert diff <= 1e-4
    year = fast[0][YEAR.index(" 1932")]  # the few-shot example gives years 10: read as 1 before
    assert year[10] > 0.5 and year[1] < 0.1


def _expected_peaked(peak: int) -> float:
    weights = [math.exp(-abs(i - peak)) for i in range(11)]
    return sum(i * w for i, w in enumerate(weights)) / sum(weights)


def test_remote_reads_the_slot_distribution_from_echoed_prompt_logprobs(fake_openai):
    fake_openai.digit_for = lambda token: 7 if "unknown" in token else 0
    sim = make_simulator("logprob:openai:fake-model", base_url=fake_openai.url)
    records = [[" The", "\t", " red\n", " car"], [" x"]]
    sims = asyncio.run(simulate_and_close(sim, "colour words", records))
    assert [s.tokens for s in sims] == records
    for s in sims:
        assert s.expected_activations == pytest.approx([_expected_peaked(7)] * len(s.tokens), abs=1e-9)
    assert fake_openai.by_endpoint["completions"] == 1 and fake_openai.prompts_per_request == [2]  # one list


def test_remote_reads_a_ten_token_as_ten(fake_openai):
    fake_openai.digit_for = lambda token: 10 if "unknown" in token else 0
    sim = make_simulator("logprob:openai:fake-model", base_url=fake_openai.url)
    (s,) = asyncio.run(simulate_and_close(sim, "colour words", [[" fire", " smoke"]]))
    assert s.expected_activations == pytest.approx([_expected_peaked(10)] * 2, abs=1e-9)
    assert all(max(range(11), key=d.__getitem__) == 10 for d in s.distributions)


def test_remote_endpoint_that_splits_ten_is_one_clear_failure(fake_openai):
    """Its "1" at a slot is value 1 or the start of 10: reading it as 1 would turn the strongest predictions
    into 1s, so the simulator refuses and names json: (the echo shows how the few-shot "10" came back)."""
    fake_openai.split_digits = True
    fake_openai.digit_for = lambda token: 1 if "unknown" in token else 0
    sim = make_simulator("logprob:openai:fake-model", base_url=fake_openai.url)
    with pytest.raises(SimulationError, match=r'logprob:openai:fake-model: the endpoint\'s tokenizer writes "10" as '
                                              r'"1" then "0".*simulate with json:openai:fake-model instead'):
        asyncio.run(simulate_and_close(sim, "colour words", [[" fire"], [" smoke"]]))
    assert fake_openai.by_endpoint["completions"] == 1  # read from the simulation's own echo: no extra request


def test_remote_reads_how_ten_is_written_from_the_echo_row_that_holds_it():
    one = _completion(["x", "\t10", "\n"], [{}, {}, {}])
    split = _completion(["x", "\t1", "0", "\n"], [{}, {}, {}, {}])
    assert ten_is_one_token(one, 2) and not ten_is_one_token(split, 2)
    assert not ten_is_one_token(_completion([], []), 2)  # nothing echoed: never taken for a "10" token


def test_remote_needs_a_ten_in_its_few_shot_examples():
    no_ten = FewShotExample("colours", (((" red", 6), (" car", 0)),))
    with pytest.raises(ValueError, match="few-shot examples show no activation 10"):
        RemoteLogprobSimulator(make_client("openai:fake", base_url="http://127.0.0.1:9/v1"), examples=(no_ten,))


def _completion(tokens: list[str], tops: list[dict]) -> Completion:
    offsets, pos = [], 0
    for t in tokens:
        offsets.append(pos)
        pos += len(t)
    return Completion("", Usage(), [TokenLogprobs(t, -1.0, top) for t, top in zip(tokens, tops)], offsets, None)


def slot_distributions(completion, slot_offsets, tokens, where):
    """One record's value distributions, read as the remote simulator reads them."""
    return distributions_from_tops(slot_tops(completion, slot_offsets, tokens, where),
                                   lambda n: f"{where}, token {n} ({tokens[n]!r})")


def test_remote_unalignable_slot_and_missing_digits_are_failures_not_zeros():
    digits = {"3": math.log(0.5), "4": math.log(0.5), "foo": -0.1}
    ok = _completion(["ab", "\t", "unknown", "\n"], [{}, {}, digits, {}])
    (dist,) = slot_distributions(ok, [3], ["ab"], "record 0")
    assert dist[3] == pytest.approx(0.5) and dist[4] == pytest.approx(0.5)
    merged = _completion(["a", "b\tunknown", "\n"], [{}, digits, {}])
    with pytest.raises(SimulationError, match=r"record 0, token 0 \('ab'\): cannot find the activation slot"):
        slot_distributions(merged, [3], ["ab"], "record 0")
    no_digits = _completion(["ab", "\tunknown", "\n"], [{}, {"the": -0.1, "a": -2.0}, {}])
    with pytest.raises(SimulationError, match="no probability on any activation value"):
        slot_distributions(no_digits, [3], ["ab"], "record 0")


@pytest.mark.parametrize("spec, message", [
    ("embeddings", "unknown simulator spec"),
    ("logprob:", "needs an llm spec"),
    ("json:anthropic:claude", "needs an llm spec"),
    ("logprob:local", "needs an llm spec"),
])
def test_bad_specs_say_what_to_use(spec, message):
    with pytest.raises(ValueError, match=message):
        make_simulator(spec)
