"""Latency of the two hot API endpoints on a SQLite database of 100,000 features.

Builds the database with bulk Core inserts (records, explanations, simulations, scores for every feature),
then times the feature list (one layer, sorted by score, page of 50, at varying offsets) and the feature page
(random features) two ways side by side: real HTTP (httpx against uvicorn on localhost, what a browser sees;
the headline figures) and in-process through FastAPI's TestClient (`testclient_*`, the app's own cost).
Last line: one JSON object with p50/p95 in ms.

    python benchmarks/api_latency.py [--features 100000] [--requests 300] [--db PATH (kept and reused)]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, insert, select

from autointerp.api import create_app
from storage.core.activation_codec import encode
from storage.core.db import Database
from storage.core.schema import (
    ActivationRecordRow,
    Explanation,
    Feature,
    Score,
    SimulatedRecord,
    Simulation,
    SubjectModel,
    Window,
)
from storage.reads.score_source import CURRENT_SCORER_HASH
from storage.records.windows import content_hash

MODEL = "bench-model"
LAYERS = 20
CTX = 24
SAMPLES = (("top", "train"), ("quantile:0", "valid"), ("random", "test"))  # (sample kind, data split)
WORDS = "numbers cats code brackets dates names verbs plural french legal sports music colour rivers".split()
CHUNK = 5000


def _rows_for(fid: int, layer: int, index: int, rng: random.Random) -> dict[str, list[dict]]:
    """Every row of one feature; ids are derived from the feature id so the tables can be filled in bulk."""
    value = rng.random()
    out: dict[str, list[dict]] = {"windows": [], "records": [], "sim_records": []}
    out["features"] = [{
        "id": fid, "model_id": 1, "layer": layer, "kind": "mlp_neuron", "sae_key": "", "index": index,
        "max_activation": 5.0, "mean": 0.1, "variance": 0.3, "firing_fraction": 0.01, "n_tokens": 100_000,
        "dead": False, "quantile_boundaries": [0.1, 0.5, 1.0], "extra": {},
    }]
    for k, (sample, data_split) in enumerate(SAMPLES):
        acts = [round(rng.random() * 5, 3) for _ in range(CTX)]
        tokens = [f" w{(index + j) % 997}" for j in range(CTX)]
        out["windows"].append({
            "id": fid * 3 + k, "model_id": 1, "content_hash": content_hash("bench", str(fid), k, tokens),
            "corpus": "bench", "document": str(fid), "offset": k, "tokens": tokens, "token_ids": None,
        })
        out["records"].append({
            "id": fid * 3 + k, "feature_id": fid, "window_id": fid * 3 + k, "sample": sample, "data_split": data_split,
            "position": 0, "activations": encode(acts), "max_activation": max(acts),
        })
        out["sim_records"].append({
            "id": fid * 3 + k, "simulation_id": fid, "position": k, "record_id": fid * 3 + k, "sample": sample,
            "expected_activations": encode([round(a / 2, 3) for a in acts]),
        })
    text = f"{rng.choice(WORDS)} and {rng.choice(WORDS)} in feature {index}"
    out["explanations"] = [{
        "id": fid, "feature_id": fid, "status": "ok", "text": text, "explainer": "local:bench", "params": {},
        "config_hash": "bench", "polarity": "positive", "candidate": 0, "selected": True, "prompt_version": "v1",
    }]
    out["simulations"] = [{
        "id": fid, "explanation_id": fid, "simulator": "embedding", "config_hash": "bench", "role": "own",
        "feature_id": fid, "status": "ok", "params": {},
    }]
    base = {"explanation_id": fid, "feature_id": fid, "model_id": 1, "layer": layer, "simulator": "embedding",
            "scorer_hash": CURRENT_SCORER_HASH, "details": {}}
    out["scores"] = [
        {**base, "id": fid * 4, "simulation_id": fid, "method": "ev_correlation", "subset": "top_and_random",
         "role": "own", "value": value},
        {**base, "id": fid * 4 + 1, "simulation_id": fid, "method": "ev_correlation", "subset": "random_only",
         "role": "own", "value": value * 0.8},
        {**base, "id": fid * 4 + 2, "simulation_id": fid, "method": "rsquared", "subset": "top_and_random",
         "role": "own", "value": value - 0.3},
        # the shuffled baseline borrows the previous feature's explanation
        {**base, "id": fid * 4 + 3, "simulation_id": None, "explanation_id": max(1, fid - 1),
         "method": "ev_correlation", "subset": "top_and_random", "role": "shuffled", "value": value * 0.1},
    ]
    return out


TABLES = (
    ("features", Feature), ("windows", Window), ("records", ActivationRecordRow), ("explanations", Explanation),
    ("simulations", Simulation), ("sim_records", SimulatedRecord), ("scores", Score),
)


def build(db: Database, n_features: int) -> float:
    rng = random.Random(0)
    start = time.perf_counter()
    with db.engine.begin() as conn:
        conn.execute(insert(SubjectModel), [{"id": 1, "name": MODEL, "n_layers": LAYERS, "meta": {}}])
    per_layer = n_features // LAYERS
    for lo in range(0, n_features, CHUNK):
        batch: dict[str, list[dict]] = {name: [] for name, _ in TABLES}
        for fid in range(lo + 1, min(lo + CHUNK, n_features) + 1):
            rows = _rows_for(fid, (fid - 1) // per_layer, (fid - 1) % per_layer, rng)
            for name, _ in TABLES:
                batch[name].extend(rows[name])
        with db.engine.begin() as conn:
            for name, table in TABLES:
                conn.execute(insert(table), batch[name])
    return time.perf_counter() - start


def _percentiles(samples: list[float]) -> tuple[float, float]:
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    return cuts[49] * 1000, cuts[94] * 1000


def measure(client: TestClient | httpx.Client, urls: list[str]) -> tuple[float, float]:
    for url in urls[:10]:  # warm caches and code paths
        assert client.get(url).status_code == 200, url
    samples = []
    for url in urls:
        start = time.perf_counter()
        response = client.get(url)
        samples.append(time.perf_counter() - start)
        assert response.status_code == 200, (url, response.text[:200])
    return _percentiles(samples)


def _serve(app: FastAPI) -> tuple[uvicorn.Server, threading.Thread, str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    return server, thread, f"http://127.0.0.1:{port}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--features", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--db", type=Path, default=None, help="SQLite file to build (or reuse when it exists)")
    args = parser.parse_args()

    tmp = tempfile.TemporaryDirectory() if args.db is None else None
    path = args.db or Path(tmp.name) / "bench.db"  # type: ignore[union-attr]
    db = Database(f"sqlite:///{path}")
    with db.session() as s:
        existing = s.scalar(select(func.count()).select_from(Feature))
    if existing == 0:
        seconds = build(db, args.features)
        print(f"built {args.features} features in {seconds:.1f}s ({path})", file=sys.stderr)
    elif existing != args.features:
        sys.exit(f"{path} holds {existing} features, not {args.features}; delete it or pass another --db")
    per_layer = args.features // LAYERS

    rng = random.Random(1)
    list_urls = [
        f"/api/features?model={MODEL}&layer={rng.randrange(LAYERS)}&limit=50&offset={50 * rng.randrange(10)}"
        for _ in range(args.requests)
    ]
    feature_urls = [f"/api/features/{rng.randrange(1, args.features + 1)}" for _ in range(args.requests)]
    app = create_app(db.url)
    figures: dict[str, float] = {}
    server, thread, base = _serve(app)
    try:
        with httpx.Client(base_url=base) as client:
            figures["list_p50_ms"], figures["list_p95_ms"] = measure(client, list_urls)
            figures["feature_p50_ms"], figures["feature_p95_ms"] = measure(client, feature_urls)
            sample = client.get(list_urls[0]).json()["items"]
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    with TestClient(app) as client:
        figures["testclient_list_p50_ms"], figures["testclient_list_p95_ms"] = measure(client, list_urls)
        figures["testclient_feature_p50_ms"], figures["testclient_feature_p95_ms"] = measure(client, feature_urls)
    assert len(sample) == 50 and sample[0]["score"] >= sample[-1]["score"], "list is not a page sorted by score"
    print(f"{per_layer} features per layer; list = one layer, page of 50; feature = full feature page;"
          f" {args.requests} requests each", file=sys.stderr)
    db.dispose()
    print(json.dumps({key: round(value, 2) for key, value in figures.items()}))


if __name__ == "__main__":
    main()
