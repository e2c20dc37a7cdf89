"""End-to-end `explain` throughput against a remote OpenAI-compatible endpoint: the real pipeline path
(autointerp.workflows.explain_run.run_explain: explain best-of-1, remote logprob simulation of the test split,
scoring, storing on SQLite, shuffled baseline) over synthetic features, against the fake server run in its
own process at a fixed latency.

Two runs side by side, each on a fresh database and response cache:
- `lists`: the server accepts a list of prompts on /v1/completions (as vLLM does), so a feature's records
  are simulated in one request;
- `per_record`: the server refuses lists (as `transformers serve` does), so the simulator falls back to one
  request per record, which is how every simulation was sent before list prompts.

The latency bound is concurrency / (rounds per feature * latency), with 3 rounds for best-of-1 (explain,
simulate, shuffled baseline): no client can do better at that concurrency. `bound_fraction` is the
`lists` run's features/s against it.

    .venv/bin/python benchmarks/pipeline_throughput.py [--features 200] [--records 40] [--tokens 64]
        [--latency 0.2] [--concurrency 100] [--modes lists,per_record] [--rounds 3] [--profile OUT]

Each mode runs `--rounds` times, the modes alternating (on a shared machine CPU speed drifts by tens of percent
over minutes); the median run is reported, and every run's features/s under `features_per_s_rounds`.
`machine_ms` times a fixed Python workload (parsing a simulation body and scoring, as the client does) before
the runs: a rough guide to how fast the sitting was (it times one thread; a busy neighbour on the other core
slows the runs more than it).
Last line: {"features_per_s", "requests_per_s", "client_cpu_ms_per_feature", "bound_fraction", ...}, with the
`per_record` run's figures under the same names suffixed `_per_record`.

The local path (`--local-features 32`, 0 to skip): explain with the embedded gemma-3-270m and the embedding
simulator, batched across the features in flight, next to the same run unbatched (max batch 1, as before);
see benchmarks/local_throughput.py. It adds `local_features_per_s`, `local_features_per_s_before`,
`local_cpu_s_per_feature[_before]`, `local_speedup` and `local_same_explanations`.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from activations.importers import ImportedFeature  # noqa: E402
from activations.records import (  # noqa: E402  # noqa: E402
    ActivationRecord,
    FeatureId,
    FeatureRecords,
    FeatureStats,
    interleaved_data_split,
)
from autointerp.workflows.explain_run import run_explain  # noqa: E402
from autointerp.workflows.options import ExplainOptions  # noqa: E402
from storage.core.db import Database  # noqa: E402
from storage.records.import_store import save_imported_file  # noqa: E402
from storage.results import runs  # noqa: E402

MODEL, LAYER = "bench-model", 0
ROUNDS_BEST_OF_1 = 3  # explain, simulate the test split, simulate it again under a shuffled explanation
WORDS = ("the of and to in a is that for it as was with be by on not he this are or his from at which but have "
         "an they you were her she there been one all we their has would when if so no will more can out who up "
         "about time river water sea bridge city year years people first new two three after during between "
         "under government history music film team season church school war army house").split()
NUMBERS = ("1", "2", "3", "7", "12", "40", "1932", "1950", "1999", "2004")
PUNCT = (",", ".", ";", " (", ")", "'s", " -", ":")
# Records of a feature per sample, split train/train/valid/test by position as an import splits them: 40 in
# all, 10 of them (5 top, 5 random) in the test split that the simulation and the baseline score.
SAMPLES = {"top": 20, "random": 20}


def window(rng: random.Random, length: int, fires: bool) -> ActivationRecord:
    """A 64-token window of word-like tokens as a subject tokenizer decodes them (leading spaces, numbers,
    punctuation, a capital now and then); a firing window is active on numbers."""
    tokens = []
    for i in range(length):
        r = rng.random()
        if r < 0.1:
            tok = " " + rng.choice(NUMBERS)
        elif r < 0.2:
            tok = rng.choice(PUNCT)
        else:
            word = rng.choice(WORDS)
            tok = (" " if i else "") + (word.capitalize() if rng.random() < 0.08 else word)
        tokens.append(tok)
    acts = [(2.0 + 3 * rng.random()) if fires and t.strip().isdigit() else 0.0 for t in tokens]
    if fires and max(acts) == 0:
        tokens[length // 2], acts[length // 2] = " 5", 2.5
    return ActivationRecord(tokens, acts)


def fill(db: Database, n_features: int, n_tokens: int, seed: int = 0) -> int:
    rng = random.Random(seed)
    n_records = 0
    with db.session() as s, s.begin():
        for index in range(n_features):
            fid = FeatureId(MODEL, LAYER, "mlp_neuron", index)
            records = []
            for sample, n in SAMPLES.items():
                for position in range(n):
                    r = window(rng, n_tokens, fires=sample == "top")
                    records.append(ActivationRecord(r.tokens, r.activations, sample=sample,
                                                    data_split=interleaved_data_split(position)))
            stats = FeatureStats(max_activation=max(r.max_activation for r in records), mean=0.1, variance=0.2,
                                 firing_fraction=0.05, n_tokens=10_000)
            save_imported_file(s, [ImportedFeature(FeatureRecords(fid, records, stats), fid)], "bench")
            n_records += len(records)
    return n_records


class FakeServer:
    """tests/fake_openai.py in its own process (so it does not share the client's GIL or CPU clock)."""

    def __init__(self, latency: float, *, refuse_lists: bool) -> None:
        cmd = [sys.executable, "-m", "tests.fake_openai", "--latency", str(latency)]
        if refuse_lists:
            cmd.append("--refuse-lists")
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None  # stdout=PIPE
        line = self.proc.stdout.readline()
        if not line.startswith("PORT "):
            self.proc.kill()
            raise SystemExit(f"the fake server did not start (said {line!r})")
        self.url = f"http://127.0.0.1:{int(line.split()[1])}/v1"

    def cpu_s(self) -> float | None:
        """The server process's CPU time so far (Linux), to tell a slow client from a saturated server."""
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait()


def run_mode(mode: str, args: argparse.Namespace) -> dict:
    server = FakeServer(args.latency, refuse_lists=mode == "per_record")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            db = Database(f"sqlite:///{Path(tmp) / 'bench.db'}")
            n_records = fill(db, args.features, args.tokens)
            opts = ExplainOptions(model=MODEL, layer=LAYER, explainer="openai:fake", base_url=server.url,
                                  simulator="logprob:openai:fake", n_candidates=1, shuffled_baseline=True,
                                  concurrency=args.concurrency, request_timeout_s=120.0)
            profiler = None
            if args.profile and mode == args.modes[0]:
                import cProfile

                profiler = cProfile.Profile()
            server_cpu0 = server.cpu_s()
            cpu0, t0 = time.process_time(), time.perf_counter()
            if profiler is not None:
                profiler.enable()
            run_id = run_explain(db, opts, show_progress=False)
            if profiler is not None:
                profiler.disable()
                profiler.dump_stats(args.profile)
            wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
            server_cpu1 = server.cpu_s()
            with db.session() as s:
                run = runs.get_run(s, run_id)
                assert run is not None  # run_explain made it
                stats = run["stats"]
            db.dispose()
    finally:
        server.close()
    if stats.get("failed"):
        raise SystemExit(f"{mode}: {stats['failed']} feature(s) failed, e.g. {next(iter(stats['failures'].values()))}")
    n = args.features
    server_cpu = server_cpu1 - server_cpu0 if server_cpu0 is not None and server_cpu1 is not None else None
    return {"server_cpu_ms_per_feature": None if server_cpu is None else 1000 * server_cpu / n,
            "features_per_s": n / wall, "requests_per_s": stats["llm_requests"] / wall,
            "requests_per_feature": stats["llm_requests"] / n, "client_cpu_ms_per_feature": 1000 * cpu / n,
            "wall_s": wall, "records": n_records, "retries": stats["llm_retries"], "cache_hits": stats["cache_hits"]}


def machine_ms(repeats: int = 7) -> float:
    """Median ms of a fixed client-like workload: decode a synthetic echoed body and score records."""
    from llm_client.openai_parse import parse_prompt_rows
    from scorer import ScoredRecord, score_records

    rng = random.Random(1)
    tops = [{str(d): -0.1 * d - rng.random() for d in range(11)} for _ in range(3000)]
    offsets = list(range(0, 6 * len(tops), 6))
    body = json.dumps({"choices": [{"index": 0, "text": "", "logprobs": {
        "tokens": ["tok"] * len(tops), "token_logprobs": [-1.0] * len(tops), "top_logprobs": tops,
        "text_offset": offsets}}]}).encode()
    prompt, wanted = "x" * (offsets[-1] + 6), offsets[::4]
    records = [ScoredRecord("top" if i % 2 else "random", [rng.random() for _ in range(64)],
                            [rng.random() for _ in range(64)]) for i in range(10)]
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(5):
            parse_prompt_rows(body, [prompt], [wanted])
            score_records(records)
        times.append(1000 * (time.perf_counter() - t0))
    return sorted(times)[len(times) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--features", type=int, default=200)
    parser.add_argument("--tokens", type=int, default=64, help="tokens per record")
    parser.add_argument("--latency", type=float, default=0.2, help="the server's seconds per request")
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--modes", default="lists,per_record")
    parser.add_argument("--rounds", type=int, default=3,
                        help="runs of each mode (alternating); the median run is reported, every run's features/s too")
    parser.add_argument("--profile", help="write a cProfile of the first mode's explain run here")
    parser.add_argument("--local-features", type=int, default=32, help="features for the local path (0: skip it)")
    parser.add_argument("--local-concurrency", type=int, default=8)
    parser.add_argument("--local-rounds", type=int, default=1, help="alternate the local modes, keep each's best")
    args = parser.parse_args()
    args.modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if not set(args.modes) <= {"lists", "per_record"} or not args.modes:
        raise SystemExit("--modes: lists and/or per_record")
    os.environ.setdefault("OPENAI_API_KEY", "EMPTY")
    # Imported before any clock starts: the openai package takes a second or two to import, once per process,
    # which a real job (thousands of features) never notices but 200 features would.
    importlib.import_module("llm_client.openai_backend")

    bound = args.concurrency / (ROUNDS_BEST_OF_1 * args.latency)
    machine = machine_ms()
    per_feature = sum(SAMPLES.values())
    print(f"explain: {args.features} features x {per_feature} records of {args.tokens} tokens, best-of-1, "
          f"logprob:openai simulator, shuffled baseline; server latency {args.latency * 1000:.0f} ms, concurrency "
          f"{args.concurrency}; latency bound {bound:.1f} features/s; machine_ms {machine:.1f} (a fixed workload)")
    results = {}
    print(f"{'mode':>10} {'features/s':>10} {'requests/s':>10} {'req/feature':>11} {'cpu ms/feature':>14} "
          f"{'server cpu':>10} {'of bound':>8} {'wall s':>7} {'retries':>7}")
    runs: dict[str, list[dict]] = {mode: [] for mode in args.modes}
    for _ in range(args.rounds):  # modes alternate, so a slow spell of a shared machine hits both
        for mode in args.modes:
            runs[mode].append(run_mode(mode, args))
        args.profile = None  # only the first round's run is profiled
    for mode in args.modes:
        # the median round (the lower one of an even count) stands for the mode; every round is printed
        ordered = sorted(runs[mode], key=lambda x: x["features_per_s"])
        r = results[mode] = ordered[(len(ordered) - 1) // 2]
        r["rounds"] = [round(x["features_per_s"], 2) for x in runs[mode]]
        print(f"{mode:>10} {r['features_per_s']:>10.1f} {r['requests_per_s']:>10.1f} "
              f"{r['requests_per_feature']:>11.1f} {r['client_cpu_ms_per_feature']:>14.1f} "
              f"{r['server_cpu_ms_per_feature'] or float('nan'):>10.1f} {r['features_per_s'] / bound:>8.1%} "
              f"{r['wall_s']:>7.1f} {r['retries']:>7}  rounds: {r['rounds']}")
    out: dict = {"machine_ms": round(machine, 1)}
    for mode, r in results.items():
        suffix = "" if mode == "lists" or len(results) == 1 else f"_{mode}"
        out[f"features_per_s{suffix}"] = round(r["features_per_s"], 2)
        out[f"requests_per_s{suffix}"] = round(r["requests_per_s"], 1)
        out[f"client_cpu_ms_per_feature{suffix}"] = round(r["client_cpu_ms_per_feature"], 1)
        out[f"bound_fraction{suffix}"] = round(r["features_per_s"] / bound, 3)
        out[f"features_per_s_rounds{suffix}"] = r["rounds"]
    if args.local_features > 0:
        sys.path.insert(0, str(ROOT / "benchmarks"))
        from local_throughput import measure_local

        print(f"local: {args.local_features} features, explainer local:gemma-3-270m, simulator embedding, "
              f"concurrency {args.local_concurrency}: batched across features vs max batch 1 (before)")
        out.update(measure_local(args.local_features, args.local_concurrency, rounds=args.local_rounds))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
