"""The remote logprob simulator's hot path: a feature's records as one /v1/completions request with a list of
prompts where the endpoint takes lists, one request per record where it refuses them (remembered), the
same expected activations either way, only the slot rows parsed and cached, and the clear failure of an
endpoint that ignores echo and logprobs. All against the real-HTTP fake server."""

from __future__ import annotations

import asyncio
import json
import math
import random

import pytest

from llm_client import Completion, LLMClient, LLMError, make_client
from llm_client.cache import ResponseCache, decode, encode
from llm_client.openai_parse import load_body, parse_completion, parse_prompt_rows
from simulator import SimulationError, make_simulator
from simulator.logprob_remote import RemoteLogprobSimulator, slot_tops
from simulator.prompts import prefix_text, record_text
from tests.closing import simulate_and_close
from tests.fake_openai import _PIECE_END, FakeOpenAI, tokenize

RECORDS = [
    [" The", " red", " car", " of", " 1969", "."],
    [" blue", "\t", " sky\n", " }", "},{", '"', "\\"],
    [" x"],
    [" rain", " fell", " on", " the", " river", " bank", " at", " noon"],
]
EXPLANATION = "colour words and years"


def _digit(token: str) -> int:
    return (sum(map(ord, token)) * 7) % 11


def _simulate(server: FakeOpenAI, records=RECORDS, *, cache_path: str | None = None,
              client: LLMClient | None = None) -> tuple[list[list[float]], dict]:
    client = client or make_client("openai:fake-model", base_url=server.url, cache_path=cache_path)
    sim = RemoteLogprobSimulator(client)

    async def go():
        try:
            first = await sim.simulate(EXPLANATION, records)
            second = await sim.simulate(EXPLANATION + " again", records)  # the endpoint is known by now
            return first + second
        finally:
            await sim.aclose()

    sims = asyncio.run(go())
    return [s.expected_activations for s in sims], client.stats()


class PlainClient:
    """An LLM client without prompt_rows: the simulator sends one complete(echo=True) per record."""

    def __init__(self, real) -> None:
        self._real = real
        self.spec, self.model, self.capabilities = real.spec, real.model, real.capabilities

    async def chat(self, messages: list[dict], **kwargs) -> Completion:
        return await self._real.chat(messages, **kwargs)

    async def complete(self, prompt: str, **kwargs) -> Completion:
        return await self._real.complete(prompt, **kwargs)

    def count_tokens(self, text: str) -> int:
        return self._real.count_tokens(text)

    def stats(self) -> dict:
        return self._real.stats()

    async def aclose(self) -> None:
        await self._real.aclose()


def test_one_request_with_a_list_where_taken_else_one_per_record_with_the_same_results(fake_openai):
    fake_openai.digit_for = _digit
    listed, stats = _simulate(fake_openai)
    assert fake_openai.prompts_per_request == [4, 4] and fake_openai.list_requests == 2
    assert stats["calls"] == 8 and stats["requests"] == 2
    list_tokens = stats["prompt_tokens"]  # a list request's usage is booked once, for all its prompts

    refusing = FakeOpenAI(digit_for=_digit, refuse_lists=True).start()
    try:
        each, stats = _simulate(refusing)
        # One refused list, then one request per record, and the refusal is remembered: no second list.
        assert refusing.list_requests == 1 and refusing.prompts_per_request == [4] + [1] * 8
        assert stats["requests"] == 9 and stats["failures"] == 0
        assert stats["prompt_tokens"] == list_tokens > 0
    finally:
        refusing.stop()

    fake_openai.prompts_per_request.clear()
    plain, _ = _simulate(fake_openai, client=PlainClient(make_client("openai:fake-model", base_url=fake_openai.url)))
    assert fake_openai.prompts_per_request == [1] * 8  # the generic path: full echo, every row parsed

    assert listed == each == plain  # exactly: the same rows, the same arithmetic
    assert all(len(e) == len(r) for e, r in zip(listed, RECORDS + RECORDS))
    assert len({tuple(e) for e in listed}) > 1 and all(0 < v < 10 for e in listed for v in e)


def test_prompts_of_a_simulation_share_the_explanation_prefix(fake_openai):
    seen: list[str] = []

    def answer(endpoint: str, body: dict) -> str:
        seen.append(body["prompt"])
        return ""

    fake_openai.answer = answer
    _simulate(fake_openai, RECORDS[:2])
    prefix = prefix_text(EXPLANATION)
    assert seen[0].startswith(prefix) and seen[1].startswith(prefix)
    assert seen[0] == prefix + record_text(RECORDS[0])[0] and seen[1] == prefix + record_text(RECORDS[1])[0]


def test_cache_serves_a_rerun_whichever_way_it_was_sent(fake_openai, tmp_path):
    cache = str(tmp_path / "cache.sqlite")
    fake_openai.digit_for = _digit
    first, _ = _simulate(fake_openai, cache_path=cache)
    sent = fake_openai.requests
    again, stats = _simulate(fake_openai, cache_path=cache)
    assert fake_openai.requests == sent and again == first
    assert stats["requests"] == 0 and stats["cache_hits"] == 8 and stats["calls"] == 8

    # A server that refuses lists reads the same entries: each prompt is cached on its own.
    refusing = FakeOpenAI(digit_for=_digit, refuse_lists=True).start()
    try:
        cached, stats = _simulate(refusing, cache_path=cache)
        assert refusing.requests == 0 and cached == first and stats["cache_hits"] == 8
        # One new record among cached ones: only it is sent.
        extra = [[" green", " 2004"]]
        _, stats = _simulate(refusing, RECORDS + extra, cache_path=cache)
        assert refusing.prompts_per_request == [1, 1] and stats["cache_hits"] == 8
    finally:
        refusing.stop()


def test_an_endpoint_that_ignores_echo_and_logprobs_fails_clearly(fake_openai):
    # transformers serve: a list is refused with 400 and a single prompt comes back without logprobs.
    fake_openai.refuse_lists = True
    fake_openai.ignore_logprobs = True
    sim = make_simulator("logprob:openai:fake-model", base_url=fake_openai.url)
    with pytest.raises(SimulationError, match=r"record 0: the endpoint returned no prompt logprobs.*use json:"):
        asyncio.run(simulate_and_close(sim, EXPLANATION, RECORDS))
    # A server that takes lists but ignores logprobs fails the same way, from one request.
    fake_openai.refuse_lists = False
    fake_openai.requests = 0
    sim = make_simulator("logprob:openai:fake-model", base_url=fake_openai.url)
    with pytest.raises(SimulationError, match=r"record 0: the endpoint returned no prompt logprobs"):
        asyncio.run(simulate_and_close(sim, EXPLANATION, RECORDS))
    assert fake_openai.requests == 1


# --- servers that read the echo request otherwise than vLLM ------------------------------------------------

def _quick_client(server: FakeOpenAI) -> LLMClient:
    return make_client("openai:fake-model", base_url=server.url, max_retries=2, backoff_s=0.01)


def test_a_server_like_llama_cpp_simulates_as_vllm_does(fake_openai):
    """llama.cpp's server reads max_tokens=0 as "until the context is full" and fails a list of prompts with
    HTTP 500 (an assertion): echo requests ask for one token, and a 500 to the first list means one prompt
    per request from then on, found at once rather than after the retries' backoff."""
    fake_openai.digit_for = _digit
    vllm, _ = _simulate(fake_openai)
    llama = FakeOpenAI(digit_for=_digit, refuse_lists=True, list_status=500, zero_max_tokens="unlimited").start()
    try:
        got, stats = _simulate(llama, client=_quick_client(llama))
        assert llama.prompts_per_request == [4] + [1] * 8 and llama.by_outcome["ok"] == 9
        assert stats["failures"] == 0
        # One generated token a prompt, not the 2,048-token context's remainder.
        assert stats["completion_tokens"] == 8
    finally:
        llama.stop()
    assert got == vllm  # the generated token's row is never read as a prompt row


@pytest.mark.parametrize("plain", [False, True], ids=["prompt_rows", "complete"])
def test_a_server_that_fails_max_tokens_zero_still_echoes(fake_openai, plain):
    """transformers serve answers max_tokens=0 with HTTP 400; echo requests never send it."""
    fake_openai.digit_for = _digit
    vllm, _ = _simulate(fake_openai)
    strict = FakeOpenAI(digit_for=_digit, zero_max_tokens="refuse").start()
    try:
        client = _quick_client(strict)
        got, stats = _simulate(strict, client=PlainClient(client) if plain else client)
        assert stats["failures"] == 0 and strict.by_outcome == {"ok": 8 if plain else 2}
    finally:
        strict.stop()
    assert got == vllm


def test_a_list_answered_with_the_wrong_number_of_choices_falls_back_to_one_per_record(fake_openai):
    fake_openai.digit_for = _digit
    honest, _ = _simulate(fake_openai)
    sloppy = FakeOpenAI(digit_for=_digit).start()
    original = sloppy._completion_json

    def first_prompt_only(body: dict) -> str:
        if isinstance(body["prompt"], list):
            body = {**body, "prompt": body["prompt"][0]}
        return original(body)

    sloppy._completion_json = first_prompt_only  # type: ignore[method-assign]
    try:
        each, stats = _simulate(sloppy)
        assert sloppy.prompts_per_request == [4] + [1] * 8 and stats["failures"] == 0
    finally:
        sloppy.stop()
    assert each == honest


def test_a_failing_list_is_a_simulation_failure_naming_the_records(fake_openai):
    fake_openai.script = ["500"] * 10
    client = make_client("openai:fake-model", base_url=fake_openai.url, max_retries=1, backoff_s=0.01)
    with pytest.raises(SimulationError, match=r"records 0-3: the LLM call failed: .*HTTP 500.*max_tokens=1.*json:"):
        asyncio.run(simulate_and_close(RemoteLogprobSimulator(client), EXPLANATION, RECORDS))
    assert client.stats()["failures"] == 4 and client.stats()["calls"] == 4


# --- the parser: only the slot rows, the same rows as a full parse -----------------------------------------

def _body(tokens: list[str], tops: list[dict | None], *, compact: bool, choices: int = 1) -> tuple[str, str]:
    prompt = "".join(tokens)
    offsets, pos = [], 0
    for t in tokens:
        offsets.append(pos)
        pos += len(t)
    lp = {"text_offset": offsets, "token_logprobs": [None] + [-0.5] * (len(tokens) - 1), "tokens": tokens,
          "top_logprobs": tops}
    choice = [{"index": i, "text": prompt, "logprobs": lp, "finish_reason": "length"} for i in range(choices)]
    body = {"id": "x", "choices": choice[::-1], "usage": {"prompt_tokens": len(tokens), "completion_tokens": 0}}
    return prompt, json.dumps(body, separators=(",", ":") if compact else None, ensure_ascii=compact)


TRICKY_KEYS = ["}", "},{", "}]", '"}', "\\", "top_logprobs", '"top_logprobs":[', "{", "null", "é", " ]},"]


@pytest.mark.parametrize("compact", [True, False])
@pytest.mark.parametrize("keys", [["a", "b"], ["}", "\"}", "x}y"], TRICKY_KEYS])
def test_slot_rows_equal_the_rows_a_full_parse_finds(compact, keys):
    tokens = ["Hello", " wor", "ld", "\t", "unknown", "\n", "x", "\tunknown", "\n"]
    tops: list[dict | None] = [None] + [{k: -0.1 * (i + j) for j, k in enumerate(keys + [str(i % 11)])}
                                        for i in range(1, len(tokens))]
    prompt, raw = _body(tokens, tops, compact=compact, choices=3)
    slots = [len("Hello world\t"), len("Hello world\tunknown\nx\t")]
    full, _ = parse_completion(load_body(raw), prompt, echo=True)
    completions, usage, reported = parse_prompt_rows(raw.encode(), [prompt] * 3, [slots] * 3)
    assert reported and usage.prompt_tokens == len(tokens) and len(completions) == 3
    for c in completions:
        assert [r.token for r in c.prompt_logprobs] == ["unknown", "\tunknown"]
        assert c.text_offsets == [full.text_offsets[4], full.text_offsets[7]]
        assert [r.top for r in c.prompt_logprobs] == [full.prompt_logprobs[4].top, full.prompt_logprobs[7].top]
        for s, token in zip(slots, ["t0", "t1"]):
            assert slot_tops(c, [s], [token], "r") == slot_tops(full, [s], [token], "r")
        # The cache keeps the rows' top alternatives as the text they arrived in, and reads back the same rows.
        assert c.tops_json is not None
        back = decode(encode(c))
        assert (back.prompt_logprobs, back.generated_logprobs, back.text_offsets) == (
            c.prompt_logprobs, c.generated_logprobs, c.text_offsets)


def test_nulls_and_odd_arrays_read_the_same_as_a_full_parse():
    tokens = ["a", "\t", "unknown", "\n", "b", "\tunknown", "\n"]
    tops: list[dict | None] = [None, {"1": -1.0}, {"2": -0.5, "3": -1.5}, None, {"x": -0.1}, {"4": -0.2}, None]
    slots = [2, 12]
    for compact in (True, False):
        prompt, raw = _body(tokens, tops, compact=compact)
        full, _ = parse_completion(load_body(raw), prompt, echo=True)
        (c,), _, _ = parse_prompt_rows(raw, [prompt], [slots])
        assert [r.top for r in c.prompt_logprobs] == [full.prompt_logprobs[2].top, full.prompt_logprobs[5].top]
        assert [r.logprob for r in c.prompt_logprobs] == [-0.5, -0.5]
        assert decode(encode(c)).prompt_logprobs == c.prompt_logprobs
    # A null alternative (a non-finite logprob written strictly) is left out, fresh and from the cache alike.
    null_alt = raw.replace('"3": -1.5', '"3": null').replace('"3":-1.5', '"3":null')
    (c,), _, _ = parse_prompt_rows(null_alt, [prompt], [slots])
    assert c.prompt_logprobs is not None and c.prompt_logprobs[0].top == {"2": -0.5}
    assert decode(encode(c)).prompt_logprobs == c.prompt_logprobs
    # token_logprobs holding something else than numbers, and a top_logprobs that is no array at all
    body = json.loads(raw)
    body["choices"][0]["logprobs"]["token_logprobs"][1] = "oops"
    (c,), _, _ = parse_prompt_rows(json.dumps(body), [prompt], [slots])
    assert c.prompt_logprobs is not None and c.prompt_logprobs[0].top == {"2": -0.5, "3": -1.5}
    body["choices"][0]["logprobs"]["top_logprobs"] = 0
    from llm_client.openai_parse import Garbage

    with pytest.raises(Garbage, match="malformed completion logprobs"):
        parse_prompt_rows(json.dumps(body), [prompt], [slots])


def test_a_body_that_is_not_json_is_garbage():
    from llm_client.openai_parse import Garbage

    with pytest.raises(Garbage, match="not JSON"):
        parse_prompt_rows(b"<html>oops</html>", ["p"], [[0]])
    with pytest.raises(Garbage, match="no choices"):
        parse_prompt_rows(b'{"choices": []}', ["p"], [[0]])


# --- the cache ---------------------------------------------------------------------------------------------

def test_cache_round_trips_compact_rows_and_reads_the_old_format(tmp_path):
    from llm_client.base import TokenLogprobs, Usage

    c = Completion("hi", Usage(3, 1, 0.5), [TokenLogprobs("a", None, {}), TokenLogprobs("\tunknown", -0.2, {"3": -1.0})],
                   [0, 1], [TokenLogprobs("x", -0.1, {"x": -0.1})])
    back = decode(encode(c))
    assert back.cached and back.attempts == 0 and back.usage.cost_usd == 0.0
    assert (back.text, back.prompt_logprobs, back.text_offsets, back.generated_logprobs) == (
        c.text, c.prompt_logprobs, c.text_offsets, c.generated_logprobs)
    old = json.dumps({"text": "hi", "usage": {"prompt_tokens": 3, "completion_tokens": 1, "cost_usd": 0.5},
                      "prompt_logprobs": [{"token": "a", "logprob": None, "top": {}}], "text_offsets": [0],
                      "generated_logprobs": None})
    assert decode(old).prompt_logprobs == [TokenLogprobs("a", None, {})]

    cache = ResponseCache(tmp_path / "c.sqlite")
    cache.put_many([(f"k{i}", c) for i in range(50)], "openai", "m")
    assert cache.get("k7") is not None  # served while queued or once written
    assert len(cache) == 50  # len() waits for the writer
    cache.close()
    reopened = ResponseCache(tmp_path / "c.sqlite")
    assert set(reopened.get_many(["k1", "k49", "nope"])) == {"k1", "k49"}
    reopened.close()


def test_expected_values_match_the_fake_servers_distribution(fake_openai):
    fake_openai.digit_for = lambda token: 7 if "unknown" in token else 0
    sims, _ = _simulate(fake_openai, RECORDS[:2])
    weights = [math.exp(-abs(i - 7)) for i in range(11)]
    expected = sum(i * w for i, w in enumerate(weights)) / sum(weights)
    assert all(v == pytest.approx(expected, abs=1e-9) for e in sims for v in e)


def test_prompt_rows_rejects_mismatched_arguments_and_reports_a_failed_request(fake_openai):
    client = make_client("openai:fake-model", base_url=fake_openai.url)

    async def go(prompts, rows_at):
        try:
            return await client.prompt_rows(prompts, top_logprobs=5, rows_at=rows_at)  # type: ignore[attr-defined]
        finally:
            await client.aclose()

    with pytest.raises(ValueError, match="2 prompts but 1"):
        asyncio.run(go(["a", "b"], [[0]]))
    fake_openai.script = ["400"]
    with pytest.raises(LLMError, match="HTTP 400"):
        asyncio.run(go(["a"], [[0]]))
    assert client.stats()["failures"] == 1


def test_a_request_on_a_connection_the_server_dropped_is_retried_at_once():
    from llm_client.openai_errors import dropped_connection as _dropped_connection
    from llm_client.openai_errors import reason as _reason

    disconnected = type("ServerDisconnectedError", (Exception,), {})("Server disconnected")
    try:
        try:
            raise disconnected
        except Exception as inner:
            raise TimeoutError("wrapped, as the openai package reports it") from inner
    except TimeoutError as exc:
        assert _dropped_connection(exc) and _reason(exc, 5) == "the server closed the connection"
    assert not _dropped_connection(TimeoutError("a real timeout"))


def test_fake_server_bodies_do_not_depend_on_how_it_splits_prompts():
    """The fake server tokenises prompts piece by piece and a list's shared prefix once: every choice of a
    list must equal the same prompt's body sent alone, and pieces must tokenise as the whole text does."""
    rng = random.Random(0)
    alphabet = ["a", "b", " ", "\n", "\t", ".", "1", "é", "\n\n", "x\n", " \n", "\t\n", "<"]
    for _ in range(3000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30)))
        assert [t for p in _PIECE_END.split(text) for t, _ in tokenize(p)] == [t for t, _ in tokenize(text)]
    prefix = prefix_text("numbers")
    prompts = [prefix + record_text(["The", " year", " 1932", "\t"])[0], prefix + record_text([" river", "."])[0]]
    listed = json.loads(FakeOpenAI()._completion_json({"prompt": prompts, "max_tokens": 0, "echo": True,
                                                        "logprobs": 5}))["choices"]
    for i, prompt in enumerate(prompts):
        (alone,) = json.loads(FakeOpenAI()._completion_json({"prompt": prompt, "max_tokens": 0, "echo": True,
                                                               "logprobs": 5}))["choices"]
        assert {**listed[i], "index": 0} == alone
