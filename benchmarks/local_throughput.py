"""Local explain throughput: the real `explain` path (explain with the embedded gemma-3-270m, embedding
simulator, scoring, storing, shuffled baseline) over 32 synthetic features on SQLite, with the in-process
backends batching across features in flight, next to the same run with batching off (max batch 1: the
behaviour before batching, one request at a time through the model).

    .venv/bin/python benchmarks/local_throughput.py [--features 32] [--concurrency 8] [--rounds 3]

`measure_local(...)` is the function `pipeline_throughput.py` calls for `local_features_per_s`. Last line:
{"local_features_per_s", "local_features_per_s_before", "local_cpu_s_per_feature",
"local_cpu_s_per_feature_before", "local_speedup", "local_same_explanations"}. On a machine shared with other
work, wall-clock figures move with its load (printed per run); CPU seconds per feature do not.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

MODEL = "gemma-3-270m"
LAYER = 6
CTX = 64


def _text_tokens() -> list[str]:
    """Real news text as gemma-3-270m's tokenizer decodes it token by token (what a collected layer holds)."""
    from gensim.test.utils import datapath

    from llm_client.local_models import load_model

    tok = load_model(MODEL, device="cpu").tokenizer
    with open(datapath("lee_background.cor"), encoding="utf-8") as fh:
        ids = tok(fh.read(), add_special_tokens=False).input_ids
    return [tok.decode([t]) for t in ids]


def fill_layer(db, n_features: int, seed: int = 0) -> None:
    """A collected-looking layer: per feature 20 top and 20 random windows of 64 tokens of real text, split
    60/20/20 into train/valid/test; feature i fires on a few words of its own."""
    from activations.importers import ImportedFeature
    from activations.records import ActivationRecord, FeatureId, FeatureRecords, FeatureStats
    from storage.records.import_store import save_imported_file

    rng = random.Random(seed)
    tokens = _text_tokens()
    windows = [tokens[i:i + CTX] for i in range(0, len(tokens) - CTX, CTX)]
    vocab = sorted({t.strip().lower() for t in tokens if len(t.strip()) > 3 and t.strip().isalpha()})
    splits = ["train"] * 12 + ["valid"] * 4 + ["test"] * 4
    with db.session() as s, s.begin():
        for index in range(n_features):
            triggers = set(rng.sample(vocab, 40))

            def acts(window: list[str], triggers: set[str] = triggers) -> list[float]:
                return [2.0 + rng.random() if t.strip().lower() in triggers else 0.0 for t in window]

            scored = sorted(windows, key=lambda w: -sum(acts(w)))
            top = scored[:20]
            random_windows = rng.sample(windows, 20)
            records = []
            for sample, chosen in (("top", top), ("random", random_windows)):
                for w, d in zip(chosen, splits):
                    values = acts(w)
                    if sample == "top" and max(values) == 0:
                        values[5] = 2.5
                    records.append(ActivationRecord(w, values, sample=sample, data_split=d))
            fid = FeatureId(MODEL, LAYER, "mlp_neuron", index)
            stats = FeatureStats(max_activation=max(r.max_activation for r in records), mean=0.1, variance=0.2,
                                 firing_fraction=0.05, n_tokens=10_000)
            save_imported_file(s, [ImportedFeature(FeatureRecords(fid, records, stats), fid)], "bench")


def _set_max_batch(n: int | None) -> None:
    """None: the backends' defaults (batching on); 1: one request at a time, as before batching."""
    from llm_client import local_backend
    from simulator import embedding

    local_backend.MAX_BATCH = n if n is not None else local_backend.DEFAULT_MAX_BATCH
    embedding.MAX_BATCH = n if n is not None else embedding.DEFAULT_MAX_BATCH


def run_once(n_features: int, concurrency: int, max_batch: int | None, path: Path) -> tuple[float, dict, dict]:
    """Seconds for one `run_explain` over n_features fresh features (fresh database and response cache), the
    run's stats, and the explanation text per feature index."""
    from sqlalchemy import select

    from autointerp.workflows.explain_run import run_explain
    from autointerp.workflows.options import ExplainOptions
    from storage.core.db import Database
    from storage.core.schema import Explanation, Feature, Run

    _set_max_batch(max_batch)
    db = Database(f"sqlite:///{path}")
    try:
        fill_layer(db, n_features)
        opts = ExplainOptions(model=MODEL, layer=LAYER, explainer=f"local:{MODEL}", simulator="embedding",
                              concurrency=concurrency, device="cpu")
        t0, cpu0 = time.perf_counter(), time.process_time()
        run_id = run_explain(db, opts, show_progress=False)
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        with db.session() as session:
            run = session.get(Run, run_id)
            stats = dict(run.stats or {}) if run is not None else {}
            stats["cpu_s"] = cpu
            texts = dict(session.execute(select(Feature.index, Explanation.text).join(
                Explanation, Explanation.feature_id == Feature.id).where(Explanation.selected.is_(True))).all())
        return elapsed, stats, texts
    finally:
        db.dispose()
        _set_max_batch(None)


def measure_local(n_features: int = 32, concurrency: int = 8, modes: tuple[str, ...] = ("batched", "serial"),
                  rounds: int = 1, verbose: bool = True) -> dict:
    """`local_features_per_s` (batching on) and `local_features_per_s_before` (max batch 1, as before
    batching), side by side in this process after a warm-up run that loads both models; with several rounds
    the modes alternate and each keeps its best run (other load on the machine only ever slows a run down).
    Also the CPU seconds per feature of each mode's best run, and how many explanations came out the same."""
    out: dict = {}
    best: dict[str, tuple[float, dict, dict]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        run_once(2, 2, None, Path(tmp) / "warm.db")
        for r in range(rounds):
            for mode in modes:
                elapsed, stats, texts = run_once(n_features, concurrency, None if mode == "batched" else 1,
                                                 Path(tmp) / f"{mode}{r}.db")
                if verbose:
                    print(f"{mode:8s}: {n_features} features in {elapsed:.1f}s = {n_features / elapsed:.3f} "
                          f"features/s, {stats['cpu_s'] / n_features:.2f} CPU s per feature, load average "
                          f"{os.getloadavg()[0]:.1f} (done {stats.get('done')}, failed {stats.get('failed')})",
                          flush=True)
                if mode not in best or elapsed < best[mode][0]:
                    best[mode] = (elapsed, stats, texts)
    for mode, (elapsed, stats, _) in best.items():
        suffix = "" if mode == "batched" else "_before"
        out[f"local_features_per_s{suffix}"] = round(n_features / elapsed, 3)
        out[f"local_cpu_s_per_feature{suffix}"] = round(stats["cpu_s"] / n_features, 2)
    if "batched" in best and "serial" in best:
        out["local_speedup"] = round(best["serial"][0] / best["batched"][0], 2)
        new_texts, old_texts = best["batched"][2], best["serial"][2]
        same = sum(new_texts.get(i) == t for i, t in old_texts.items())
        out["local_same_explanations"] = f"{same}/{len(old_texts)}"
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--features", type=int, default=32)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--modes", default="batched,serial")
    parser.add_argument("--rounds", type=int, default=1, help="alternate the modes this many times, keep each's best")
    args = parser.parse_args()
    import torch

    print(f"torch {torch.__version__}: {torch.get_num_threads()} intra-op threads, {os.cpu_count()} cpus", flush=True)
    print(json.dumps(measure_local(args.features, args.concurrency, tuple(args.modes.split(",")), args.rounds)))


if __name__ == "__main__":
    main()
