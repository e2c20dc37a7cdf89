"""Many endpoints behind one client: least-in-flight routing, per-endpoint limits, a failing endpoint rested
while the others carry the job, and the per-endpoint summary of a run (real HTTP, fake servers)."""

from __future__ import annotations

import asyncio

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from autointerp.cli import main
from llm_client.endpoints import split_urls
from llm_client.openai_backend import OpenAIClient
from storage.core.db import Database
from storage.core.schema import Explanation, Simulation
from tests.fake_openai import FakeOpenAI
from tests.pipeline_data import fill_layer


@pytest.fixture
def two_servers():
    servers = [FakeOpenAI().start(), FakeOpenAI().start()]
    yield servers
    for server in servers:
        server.stop()


async def _ask(client: OpenAIClient, n: int) -> None:
    try:
        await asyncio.gather(*(client.chat([{"role": "user", "content": f"q{i}"}], max_tokens=5) for i in range(n)))
    finally:
        await client.aclose()


def test_split_urls():
    assert split_urls(None) == [None]
    assert split_urls("http://a/v1/, http://b/v1,http://a/v1") == ["http://a/v1", "http://b/v1"]
    with pytest.raises(ValueError, match="names no endpoint"):
        split_urls(" , ")


def test_requests_spread_by_fewest_in_flight_within_each_limit(two_servers):
    for server in two_servers:
        server.latency_s = 0.1
    client = OpenAIClient("fake", base_url=",".join(s.url for s in two_servers), concurrency=4)
    asyncio.run(_ask(client, 32))
    assert [s.requests for s in two_servers] == [16, 16]
    assert all(s.max_in_flight == 4 for s in two_servers)
    stats = client.endpoint_stats()
    assert [e["requests"] for e in stats] == [16, 16] and all(e["failures"] == 0 for e in stats)
    assert all(90 <= e["mean_latency_ms"] < 1000 for e in stats)


def test_a_failing_endpoint_rests_and_the_other_carries_the_job(two_servers):
    bad, good = two_servers
    bad.failure_rate, bad.failure_kinds = 1.0, ("500",)
    client = OpenAIClient("fake", base_url=f"{bad.url},{good.url}", concurrency=2, backoff_s=0.01)
    asyncio.run(_ask(client, 40))  # raises if any request failed for good
    assert good.by_outcome["ok"] == 40
    assert 1 <= bad.requests <= 8, "the failing endpoint is rested after a few failures"
    by_url = {e["url"]: e for e in client.endpoint_stats()}
    assert by_url[bad.url]["failures"] == bad.requests and by_url[bad.url]["rests"] >= 1
    assert by_url[good.url]["failures"] == 0 and by_url[good.url]["requests"] == 40


def test_server_caps_requests_served_at_once():
    server = FakeOpenAI(latency_s=0.05, max_concurrent=3).start()
    try:
        asyncio.run(_ask(OpenAIClient("fake", base_url=server.url, concurrency=10), 12))
        assert server.max_in_flight == 3 and server.requests == 12
    finally:
        server.stop()


def test_explain_over_two_endpoints_one_failing(two_servers, sqlite_url):
    bad, good = two_servers
    bad.failure_rate, bad.failure_kinds = 1.0, ("500",)
    db = Database(sqlite_url)
    fill_layer(db, 8)
    result = CliRunner().invoke(main, [
        "explain", "--model", "tiny-model", "--layer", "6", "--explainer", "openai:fake", "--base-url", bad.url,
        "--base-url", good.url, "--simulator", "logprob:openai:fake", "--concurrency", "4", "--db", sqlite_url])
    assert result.exit_code == 0, result.output
    out = " ".join(result.output.split())
    assert "8 done" in out and "0 failed of 8" in out
    assert f"endpoint {bad.url}: {bad.requests} requests, {bad.requests} failed, rested" in out
    assert f"endpoint {good.url}: {good.requests} requests, 0 failed" in out
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(Explanation)) == 8
        assert s.scalar(select(func.count()).select_from(Simulation).where(Simulation.status == "failed")) == 0
