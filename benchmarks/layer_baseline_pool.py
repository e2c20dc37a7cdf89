"""The shuffled baselines' pool on one whole layer of a wide SAE: what the finishing pass of `explain` and
`rescore` does once per layer (read the layer's current explanations) and once per feature (pick another
feature's explanation), the way it was done before and the way it is done now, side by side.

- read, before: every current explanation of the layer as a whole ORM row (storage.core.repository.current_explanations
  over all of the layer's feature ids, as `layer_current_explanation_rows` did); now:
  `repository.layer_current_explanation_texts`, the (feature, id, text) columns.
- pick, before: the other features ordered afresh for every pick (as `pick_shuffled` did); now: one
  `scorer.ShuffledPicker` ordered once. Both pick the same explanations (checked); the per-pick figure of the
  old way is measured on `--picks` picks, and the whole layer's cost is that times the layer's width.

A synthetic SQLite layer (features with one selected explanation each, a 1.2 KB raw output like an LLM's) is
built once in a temporary directory. Memory is tracemalloc's peak while the read runs.

    .venv/bin/python benchmarks/layer_baseline_pool.py [--features 131072] [--picks 20]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import tracemalloc
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import insert, select

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from activations.importers import ImportedFeature  # noqa: E402
from activations.records import FeatureId  # noqa: E402
from scorer import ShuffledPicker  # noqa: E402
from storage.core import repository as repo  # noqa: E402
from storage.core.db import Database  # noqa: E402
from storage.core.schema import Explanation, Feature  # noqa: E402
from storage.records.import_store import save_imported_file  # noqa: E402


def fill(db: Database, n: int) -> Feature:
    with db.session() as s, s.begin():
        fid = FeatureId("bench-model", 6, "sae_latent", 0, sae="bench-sae")
        save_imported_file(s, [ImportedFeature(None, fid)], "bench")
        first = repo.find_feature(s, fid)
        assert first is not None  # just stored
        s.execute(insert(Feature), [{"model_id": first.model_id, "layer": 6, "kind": "sae_latent",
                                     "sae_id": first.sae_id, "sae_key": "bench-sae", "index": i, "extra": {}}
                                    for i in range(1, n)])
        ids = list(s.scalars(select(Feature.id).where(Feature.layer == 6)))
        s.execute(insert(Explanation), [
            {"feature_id": f, "explainer": "openai:bench", "config_hash": "h", "status": "ok", "selected": True,
             "text": f"latent {f}: numbers, especially years", "raw_output": "x" * 1200,
             "params": {"temperature": 0.0}, "polarity": "positive", "candidate": 0} for f in ids])
        return first


def measured(read: Callable[[], Any]) -> tuple[Any, float, float]:
    """What `read` returns, its seconds, and the peak MB allocated while it ran."""
    tracemalloc.start()
    t0 = time.perf_counter()
    out = read()
    seconds = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return out, seconds, peak


def pick_before(own: int, explanations: dict[int, str], seed: int = 0) -> tuple[int, str]:
    """The pick as it was: the others ordered for every pick."""
    others = sorted((k for k in explanations if k != own), key=repr)
    key = others[int(np.random.default_rng([seed, zlib.crc32(repr(own).encode())]).integers(len(others)))]
    return key, explanations[key]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--features", type=int, default=131_072)
    parser.add_argument("--picks", type=int, default=20, help="picks timed the old way (each orders the layer)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = Database(f"sqlite:///{Path(tmp) / 'layer.db'}")
        first = fill(db, args.features)
        with db.session() as s:
            layer_ids = list(s.scalars(select(Feature.id).where(Feature.layer == 6)))
            rows, rows_s, rows_mb = measured(lambda: repo.current_explanations(s, layer_ids))
        with db.session() as s:
            feature = repo.get_feature(s, first.id)
            texts, texts_s, texts_mb = measured(lambda: repo.layer_current_explanation_texts(s, feature))
        db.dispose()
    assert {f: (e.id, e.text) for f, e in rows.items()} == texts
    pool = {f: text for f, (_, text) in texts.items()}
    owns = layer_ids[:: max(1, len(layer_ids) // args.picks)][: args.picks]
    t0 = time.perf_counter()
    before = [pick_before(own, pool) for own in owns]
    before_ms = 1000 * (time.perf_counter() - t0) / len(owns)
    t0 = time.perf_counter()
    picker = ShuffledPicker(pool)
    build_ms = 1000 * (time.perf_counter() - t0)
    t0 = time.perf_counter()
    now = [picker.pick(own) for own in layer_ids]
    now_us = 1e6 * (time.perf_counter() - t0) / len(layer_ids)
    picked = dict(zip(layer_ids, now))
    assert [picked[own] for own in owns] == before, "the picker picks what the old way picked"
    n = len(layer_ids)
    picks_now_s = build_ms / 1000 + now_us * n / 1e6
    print(f"layer of {n} features: read rows {rows_s:.2f} s, peak {rows_mb:.0f} MB -> columns {texts_s:.2f} s, "
          f"peak {texts_mb:.0f} MB; pick {before_ms:.1f} ms each ({before_ms * n / 1000:.0f} s a layer) -> "
          f"{now_us:.0f} us each after ordering once in {build_ms:.0f} ms ({picks_now_s:.1f} s)")
    print(json.dumps({"features": n, "read_rows_s": round(rows_s, 2), "read_rows_peak_mb": round(rows_mb),
                      "read_columns_s": round(texts_s, 2), "read_columns_peak_mb": round(texts_mb),
                      "pick_before_ms": round(before_ms, 2), "picks_before_layer_s": round(before_ms * n / 1000),
                      "pick_now_us": round(now_us, 1), "picks_now_layer_s": round(picks_now_s, 2),
                      "same_picks": True}))


if __name__ == "__main__":
    main()
