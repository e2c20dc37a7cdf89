"""The OpenAI-compatible backend against a real local HTTP server (tests/fake_openai.py), through the real
openai package: formats, the retry matrix, limits, cache, key handling, cost."""

from __future__ import annotations

import asyncio
import logging

import pytest

from llm_client import LLMError, make_client
from tests.fake_openai import FakeOpenAI

KEY = "sk-test-fake-key-123"
CHAT = [{"role": "user", "content": "hello there"}]


def client_for(server: FakeOpenAI, model: str = "gpt-4o-mini", **options):
    options.setdefault("backoff_s", 0.01)
    options.setdefault("timeout_s", 5.0)
    return make_client(f"openai:{model}", base_url=server.url, **options)


async def _use(client, coro_fn):
    try:
        return await coro_fn(client)
    finally:
        await client.aclose()


def run(client, coro_fn):
    return asyncio.run(_use(client, coro_fn))


def test_chat_returns_text_usage_cost_and_top_logprobs(fake_openai):
    fake_openai.answer = lambda endpoint, body: "numbers in lists"
    completion = run(client_for(fake_openai), lambda c: c.chat(CHAT, top_logprobs=11))
    assert completion.text == "numbers in lists"
    assert completion.usage.completion_tokens == 3 and completion.usage.prompt_tokens > 0
    assert completion.usage.cost_usd == pytest.approx((completion.usage.prompt_tokens * 0.15 + 3 * 0.60) / 1e6)
    assert [t.token for t in completion.generated_logprobs] == ["numbers", " in", " lists"]
    assert set(completion.generated_logprobs[0].top) == {str(i) for i in range(11)}


def test_completion_echo_splits_prompt_and_generated_logprobs(fake_openai):
    fake_openai.answer = lambda endpoint, body: " on the mat"
    completion = run(client_for(fake_openai), lambda c: c.complete("The cat sat", max_tokens=2, echo=True, logprobs=3))
    assert completion.text == " on the"
    assert [t.token for t in completion.prompt_logprobs] == ["The", " cat", " sat"]
    assert completion.prompt_logprobs[0].logprob is None and completion.prompt_logprobs[1].logprob is not None
    assert [t.token for t in completion.generated_logprobs] == [" on", " the"]
    assert completion.text_offsets == [0, 3, 7, 11, 14]
    assert len(completion.prompt_logprobs[1].top) == 3


def test_429_waits_for_retry_after(fake_openai):
    fake_openai.script = ["429", "ok"]
    fake_openai.retry_after = "1"
    client = client_for(fake_openai)
    completion = run(client, lambda c: c.chat(CHAT))
    (t429, first), (t_ok, second) = fake_openai.arrivals
    assert (first, second) == ("429", "ok")
    assert t_ok - t429 >= 0.95  # backoff alone would be ~0.01 s
    assert completion.attempts == 2 and client.stats()["retries"] == 1


def test_500_and_timeout_are_retried(fake_openai):
    fake_openai.script = ["500", "hang", "ok"]
    fake_openai.hang_s = 3
    client = client_for(fake_openai, timeout_s=0.4)
    completion = run(client, lambda c: c.chat(CHAT))
    assert completion.attempts == 3 and fake_openai.requests == 3
    assert client.stats() | {"cost_usd": None} == {
        "calls": 1, "requests": 3, "retries": 2, "failures": 0, "cache_hits": 0,
        "prompt_tokens": completion.usage.prompt_tokens, "completion_tokens": completion.usage.completion_tokens,
        "cost_usd": None}


@pytest.mark.parametrize("outcome", ["400"])
def test_unrecoverable_4xx_is_not_retried(fake_openai, outcome):
    fake_openai.script = [outcome, "ok"]
    client = client_for(fake_openai)
    with pytest.raises(LLMError) as err:
        run(client, lambda c: c.chat(CHAT))
    assert not err.value.retryable and "HTTP 400" in err.value.reason
    assert fake_openai.requests == 1 and client.stats()["failures"] == 1


def test_garbage_is_retried_a_few_times_then_fails_with_reason(fake_openai):
    fake_openai.script = ["garbage", "empty", "garbage", "ok"]
    with pytest.raises(LLMError) as err:
        run(client_for(fake_openai), lambda c: c.chat(CHAT))
    assert "unusable response" in err.value.reason and "not JSON" in err.value.reason
    assert fake_openai.requests == 3  # 1 + MAX_GARBAGE_RETRIES, never reaching the "ok"


def test_retries_give_up_after_max_retries(fake_openai):
    fake_openai.script = ["500"] * 5
    with pytest.raises(LLMError) as err:
        run(client_for(fake_openai, max_retries=2), lambda c: c.chat(CHAT))
    assert err.value.retryable and err.value.attempts == 3 and fake_openai.requests == 3


def test_concurrency_limit_is_observed_by_the_server(fake_openai):
    fake_openai.latency_s = 0.1

    async def many(c):
        return await asyncio.gather(*(c.chat([{"role": "user", "content": f"q{i}"}]) for i in range(12)))

    run(client_for(fake_openai, concurrency=3), many)
    assert fake_openai.max_in_flight == 3 and fake_openai.requests == 12


def test_cache_hit_makes_no_request_and_failures_are_not_cached(fake_openai, tmp_path):
    cache = str(tmp_path / "llm-cache.sqlite")
    first = run(client_for(fake_openai, cache_path=cache), lambda c: c.chat(CHAT))
    client = client_for(fake_openai, cache_path=cache)  # a new process's client on the same file
    again = run(client, lambda c: c.chat(CHAT))
    assert fake_openai.requests == 1
    assert again.cached and not first.cached and again.text == first.text and again.usage.cost_usd == 0.0
    assert client.stats()["cache_hits"] == 1 and client.stats()["requests"] == 0

    fake_openai.script = ["400"]
    other = [{"role": "user", "content": "something else"}]
    with pytest.raises(LLMError):
        run(client_for(fake_openai, cache_path=cache), lambda c: c.chat(other))
    run(client_for(fake_openai, cache_path=cache), lambda c: c.chat(other))
    assert fake_openai.requests == 3  # the failure was not served from the cache


def test_api_key_read_at_call_time_and_never_kept_or_logged(fake_openai, monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)
    monkeypatch.delenv("OPENAI_API_KEY")
    client = client_for(fake_openai)
    monkeypatch.setenv("OPENAI_API_KEY", KEY)  # set after the client exists: read when the call is made

    async def call_and_inspect(c):
        await c.chat(CHAT)
        return repr(c) + repr(vars(c)) + "".join(repr(vars(e.conn)) for e in c._state.pool.endpoints)

    seen = run(client, call_and_inspect)
    assert fake_openai.authorization == [f"Bearer {KEY}"]
    assert KEY not in seen and KEY not in caplog.text
    assert any(r.name.startswith("openai") for r in caplog.records)  # the openai client did log, redacted


def test_missing_key_uses_dummy_for_local_servers(fake_openai, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY")
    run(client_for(fake_openai), lambda c: c.chat(CHAT))
    assert fake_openai.authorization == ["Bearer EMPTY"]


def test_unknown_model_cost_is_none_not_zero(fake_openai):
    client = client_for(fake_openai, model="my-finetune")
    completion = run(client, lambda c: c.chat(CHAT))
    assert completion.usage.cost_usd is None and client.stats()["cost_usd"] is None
    assert client.stats()["completion_tokens"] == completion.usage.completion_tokens > 0


def test_bad_spec_and_bad_messages_say_what_to_do():
    with pytest.raises(ValueError, match="openai:<model> or local:<name>"):
        make_client("gpt-4o")
    with pytest.raises(ValueError, match="unknown backend 'anthropic'"):
        make_client("anthropic:claude")
    client = make_client("openai:gpt-4o-mini", base_url="http://127.0.0.1:9/v1")
    with pytest.raises(ValueError, match="message 0 must be a dict"):
        asyncio.run(client.chat(["hi"]))  # type: ignore[list-item]  # the wrong type is the point
