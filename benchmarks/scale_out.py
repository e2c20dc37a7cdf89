"""Scale-out: `explain --executor ray` with 1 and 2 worker actors on a CPU-bound job, and one client spread
over four endpoints.

1. Workers. The job is CPU-bound on purpose: the fake OpenAI server (its own process) answers at once, and
   the embedding simulator (MiniLM, one compute thread per worker) does the work; 400 synthetic features,
   no shuffled baseline. Each worker count runs on a fresh SQLite database and a local Ray cluster of 2 CPUs.
   features/s is measured over the steady part of the run (first to last stored result, from the rows'
   timestamps), so actor start-up and model loading are left out; the wall-clock figure is printed too.
   `scaling_w2` = fps_w2 / fps_w1 (2.0 would be perfect; the machine's other load counts against it).
2. Endpoints. Four fake servers (own processes), each serving at most 8 requests at once at 200 ms; one
   client with the four base URLs and 8 requests in flight per endpoint sends 800 chat requests. The bound
   is 4 * 8 / 0.2 = 160 requests/s; `endpoint_efficiency` is the achieved fraction. Beside it, one server
   taking all 32 at once (`single_endpoint_efficiency`): the same bound without routing, i.e. what the
   machine's CPUs allow the client and the servers at that rate.

    .venv/bin/python benchmarks/scale_out.py [--features 400] [--requests 800]

Last line: {"fps_w1", "fps_w2", "scaling_w2", "endpoint_efficiency", ...}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # Ray on 127.0.0.1
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("OPENAI_API_KEY", "EMPTY")

from pipeline_throughput import LAYER, MODEL, fill  # noqa: E402
from sqlalchemy import func, select  # noqa: E402

from autointerp.executors.ray_batch import RayJob, run_explain_on_ray  # noqa: E402
from autointerp.workflows.options import ExplainOptions  # noqa: E402
from llm_client.openai_backend import OpenAIClient  # noqa: E402
from storage.core.db import Database  # noqa: E402
from storage.core.schema import Explanation  # noqa: E402
from storage.results import runs  # noqa: E402

TOKENS_PER_RECORD = 16  # 40 records a feature; short ones keep the CPU-bound run to minutes on 2 cores


class FakeServer:
    """tests/fake_openai.py in its own process."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "tests.fake_openai", *args], cwd=ROOT,
                                     stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("PORT "):
            self.proc.kill()
            raise SystemExit(f"the fake server did not start (said {line!r})")
        self.url = f"http://127.0.0.1:{int(line.split()[1])}/v1"

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait()


def run_workers(workers: int, n_features: int, server_url: str) -> dict:
    import ray

    ray.init(num_cpus=2, object_store_memory=200 * 1024**2, include_dashboard=False, log_to_driver=False)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            db = Database(f"sqlite:///{Path(tmp) / 'bench.db'}")
            fill(db, n_features, TOKENS_PER_RECORD)
            opts = ExplainOptions(model=MODEL, layer=LAYER, explainer="openai:fake", base_url=server_url,
                                  simulator="embedding", shuffled_baseline=False, concurrency=8, device="cpu")
            t0 = time.perf_counter()
            run_id = run_explain_on_ray(db, opts, RayJob(workers=workers, lease_s=300.0), show_progress=False)
            wall = time.perf_counter() - t0
            with db.session() as s:
                stored = select(func.min(Explanation.created_at), func.max(Explanation.created_at))
                first, last = s.execute(stored).one()
                run = runs.get_run(s, run_id)
            db.dispose()
    finally:
        ray.shutdown()
    assert run is not None
    stats = run["stats"]
    if stats.get("failed") or stats.get("done") != n_features:
        raise SystemExit(f"{workers} worker(s): {stats.get('done')} done, {stats.get('failed')} failed")
    steady = (last - first).total_seconds()
    return {"fps": (n_features - 1) / steady, "fps_wall": n_features / wall, "wall_s": wall}


async def _send(client: OpenAIClient, n: int) -> None:
    try:
        await asyncio.gather(*(client.chat([{"role": "user", "content": f"request {i}"}], max_tokens=8)
                               for i in range(n)))
    finally:
        await client.aclose()


def _timed(client: OpenAIClient, n_requests: int) -> float:
    t0 = time.perf_counter()
    asyncio.run(_send(client, n_requests))
    return n_requests / (time.perf_counter() - t0)


def run_endpoints(n_requests: int, per_endpoint: int = 8, latency: float = 0.2, n_endpoints: int = 4) -> dict:
    """The pool over four servers, and beside it one server taking all 32 at once: what this machine's CPUs
    allow the client and servers at that rate, without any routing."""
    servers = [FakeServer("--latency", str(latency), "--max-concurrent", str(per_endpoint))
               for _ in range(n_endpoints)]
    single = FakeServer("--latency", str(latency), "--max-concurrent", str(n_endpoints * per_endpoint))
    try:
        asyncio.run(_send(OpenAIClient("fake", base_url=servers[0].url, concurrency=4), 8))  # imports, first sockets
        client = OpenAIClient("fake", base_url=",".join(s.url for s in servers), concurrency=per_endpoint)
        rps = _timed(client, n_requests)
        single_rps = _timed(OpenAIClient("fake", base_url=single.url, concurrency=n_endpoints * per_endpoint),
                            n_requests)
    finally:
        for server in [*servers, single]:
            server.close()
    bound = n_endpoints * per_endpoint / latency
    return {"rps": rps, "bound": bound, "efficiency": rps / bound, "single_efficiency": single_rps / bound,
            "per_endpoint": [e["requests"] for e in client.endpoint_stats()]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--features", type=int, default=400)
    parser.add_argument("--requests", type=int, default=800)
    args = parser.parse_args()

    server = FakeServer("--latency", "0")
    try:
        results = {}
        print(f"explain --executor ray: {args.features} features, embedding simulator, fake server at 0 ms")
        print(f"{'workers':>7} {'features/s (steady)':>19} {'features/s (wall)':>17} {'wall s':>7}")
        for workers in (1, 2):
            r = results[workers] = run_workers(workers, args.features, server.url)
            print(f"{workers:>7} {r['fps']:>19.1f} {r['fps_wall']:>17.1f} {r['wall_s']:>7.1f}")
    finally:
        server.close()
    endpoints = run_endpoints(args.requests)
    print(f"4 endpoints x 8 at once at 200 ms: {endpoints['rps']:.1f} requests/s of a {endpoints['bound']:.0f}/s "
          f"bound ({endpoints['efficiency']:.1%}); requests per endpoint {endpoints['per_endpoint']}; one endpoint "
          f"x 32 at once, same bound: {endpoints['single_efficiency']:.1%}")
    print(json.dumps({
        "fps_w1": round(results[1]["fps"], 2), "fps_w2": round(results[2]["fps"], 2),
        "scaling_w2": round(results[2]["fps"] / results[1]["fps"], 3),
        "endpoint_efficiency": round(endpoints["efficiency"], 3),
        "fps_wall_w1": round(results[1]["fps_wall"], 2), "fps_wall_w2": round(results[2]["fps_wall"], 2),
        "endpoint_rps": round(endpoints["rps"], 1),
        "single_endpoint_efficiency": round(endpoints["single_efficiency"], 3),
    }))


if __name__ == "__main__":
    main()
