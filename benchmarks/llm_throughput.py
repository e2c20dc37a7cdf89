"""Explain throughput through the OpenAI-compatible client against the fake server with a fixed latency.

N explain requests (one per feature, the full explainer path: record ranking, prompt fitting, the client's
limits and retries, parsing) at concurrency 1, 10 and 64, side by side with the bound concurrency / latency.
The server runs in its own process so it does not share the client's GIL; each concurrency gets a fresh
client, warmed with one request per connection first. Last line: one JSON object.

    python benchmarks/llm_throughput.py [--n 500] [--latency 0.05] [--concurrency 1,10,64]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from activations.records import ActivationRecord, FeatureId, FeatureRecords
from explainer import ExplanationResult, explain
from llm_client import make_client


def features(n: int, offset: int = 0) -> list[FeatureRecords]:
    out = []
    for i in range(offset, offset + n):
        tokens = [f" w{(i + j) % 97}" for j in range(16)]
        acts = [float((i * 7 + j * 3) % 11) if j % 4 == 0 else 0.0 for j in range(16)]
        acts[0] = 1.0  # every record fires somewhere
        record = ActivationRecord(tokens, acts, label="top[0]")
        out.append(FeatureRecords(FeatureId("bench", 0, "mlp_neuron", i), [record]))
    return out


async def explain_all(client, features: list[FeatureRecords]) -> list[ExplanationResult]:
    """Every feature explained concurrently (the client's concurrency limit paces the requests)."""
    per_feature = await asyncio.gather(*(explain(client, f) for f in features))
    return [r for results in per_feature for r in results]


async def measure(url: str, concurrency: int, n: int) -> tuple[float, dict]:
    client = make_client("openai:bench-model", base_url=url, concurrency=concurrency, timeout_s=30)
    try:
        await explain_all(client, features(concurrency, offset=10**6))  # open the connections
        start = time.perf_counter()
        results = await explain_all(client, features(n))
        elapsed = time.perf_counter() - start
    finally:
        await client.aclose()
    failed = [r for r in results if not r.ok]
    if failed:
        raise SystemExit(f"{len(failed)} explain requests failed, e.g. {failed[0].failure_reason}")
    return n / elapsed, client.stats()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--concurrency", default="1,10,64")
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]

    os.environ.setdefault("OPENAI_API_KEY", "EMPTY")
    root = Path(__file__).resolve().parents[1]
    server = subprocess.Popen([sys.executable, "-m", "tests.fake_openai", "--latency", str(args.latency)],
                              cwd=root, stdout=subprocess.PIPE, text=True)
    assert server.stdout is not None  # stdout=PIPE
    try:
        port = int(server.stdout.readline().split()[1])
        url = f"http://127.0.0.1:{port}/v1"
        figures = {}
        print(f"{args.n} explain requests, server latency {args.latency * 1000:.0f} ms")
        print(f"{'concurrency':>11} {'req/s':>9} {'bound':>9} {'efficiency':>10}")
        for c in levels:
            rps, _ = asyncio.run(measure(url, c, args.n))
            bound = c / args.latency
            figures[c] = rps
            print(f"{c:>11} {rps:>9.1f} {bound:>9.1f} {rps / bound:>10.1%}")
    finally:
        server.terminate()
        server.wait()
    top = max(levels)
    out = {f"rps_c{c}": round(figures[c], 1) for c in levels}
    out[f"efficiency_c{top}"] = round(figures[top] / (top / args.latency), 3)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
