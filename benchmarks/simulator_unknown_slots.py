"""Value tokens at the simulator's slots: every few-shot value shown (prompt 1) vs OpenAI-style few-shots whose
records show "unknown" on their first lines before the values (prompt 2), side by side on the same records and
explanations, on the embedded local models.

At every slot of the record under test (`token<TAB>unknown` lines) the full next-token distribution is read
(full vocabulary, not renormalised): whether any value token (the first token of 0..10) is among the top 5 and
the top 20 (what an endpoint's top-k logprobs would keep: a record whose slot has none fails its whole
simulation), the probability on value tokens, and the probability of copying "unknown" (its first token).

Records and explanations come from an autointerp database with explained features, e.g.

    autointerp demo --n-features 12 --tokens 10000 --db sqlite:///demo.db
    .venv/bin/python benchmarks/simulator_unknown_slots.py --db sqlite:///demo.db

Each feature's selected explanation and its test split's top and random records (the scored set). One JSON line
per model and prompt, then one per model with both prompts' headline figures.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import os
import statistics
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

TOP_KS = (5, 20)


def scored_sets(db_url: str, n_features: int, n_records: int) -> list[tuple[str, list[list[str]]]]:
    """(explanation, records' tokens) of the first `n_features` explained features: the selected ok explanation
    and up to `n_records` records of the test split's top and random samples."""
    from sqlalchemy import select

    from activations.vocab import DataSplit, OutcomeStatus, SampleKind
    from storage.core.db import Database
    from storage.core.schema import Explanation, Feature
    from storage.records.record_store import load_feature_records

    db = Database(db_url)
    out = []
    with db.session() as session:
        rows = session.execute(
            select(Explanation.text, Feature)
            .join(Feature, Feature.id == Explanation.feature_id)
            .where(Explanation.status == OutcomeStatus.OK, Explanation.selected.is_(True),
                   Explanation.polarity == "positive")
            .order_by(Feature.layer, Feature.index).limit(n_features)).all()
        for text, feature in rows:
            records = load_feature_records(session, feature).select(
                samples=[SampleKind.TOP, SampleKind.RANDOM], data_splits=[DataSplit.TEST])
            if records and text:
                out.append((text, [list(r.tokens) for r in records[:n_records]]))
    if not out:
        sys.exit(f"{db_url}: no feature with an ok explanation and test records; explain some first, e.g. "
                 "autointerp demo --n-features 12 --tokens 10000 --db URL")
    return out


def slot_rows(sim, explanation: str, records: list[list[str]]):
    """Per record: the full-vocabulary next-token probabilities at its slots, (slots, vocabulary), from one
    forward of the record behind the explanation's cached prefix."""
    import torch

    model = sim.loaded.model
    prefix = sim.prefix_ids(explanation)
    with torch.inference_mode():
        # logits_to_keep=1: the prefix's own logits are not needed (on Gemma they would be 262k per token)
        cache = model(input_ids=torch.tensor([prefix]), use_cache=True, logits_to_keep=1).past_key_values
        for tokens in records:
            rec = sim.record_ids(tokens)
            logits = model(input_ids=torch.tensor([rec.ids]), past_key_values=copy.deepcopy(cache), use_cache=True,
                           logits_to_keep=torch.tensor(rec.slots)).logits[0]
            yield torch.softmax(logits.double(), dim=-1)


def measure(sim, sets, bin_width: int) -> dict:
    """The figures of one model under one prompt."""
    import torch

    from simulator.prompts import SLOT

    value_ids = torch.tensor(sorted(set(sim.values.ids)))  # first tokens of 0..10 ("1" starts "10" when it splits)
    unknown_id = sim.loaded.tokenizer(SLOT, add_special_tokens=False).input_ids[0]  # copying "unknown"
    slots: list[dict] = []
    failed = {k: 0 for k in TOP_KS}
    n_records = 0
    for explanation, records in sets:
        for probs in slot_rows(sim, explanation, records):
            n_records += 1
            best_value = probs[:, value_ids].max(dim=-1).values
            # rank of the most likely value token: how many tokens are strictly more likely
            rank = (probs > best_value[:, None]).sum(dim=-1)
            mass = probs[:, value_ids].sum(dim=-1)
            for k in TOP_KS:
                failed[k] += bool((rank >= k).any())
            slots += [{"pos": i, "rank": int(r), "mass": float(m), "unknown": float(u)}
                      for i, (r, m, u) in enumerate(zip(rank, mass, probs[:, unknown_id]))]

    def figures(rows: list[dict]) -> dict:
        return {"slots": len(rows),
                **{f"no_value_top{k}": round(sum(r["rank"] >= k for r in rows) / len(rows), 4) for k in TOP_KS},
                "median_value_mass": round(statistics.median(r["mass"] for r in rows), 4),
                "median_unknown_mass": round(statistics.median(r["unknown"] for r in rows), 4)}

    by_position = []
    for start in range(0, max(r["pos"] for r in slots) + 1, bin_width):
        rows = [r for r in slots if start <= r["pos"] < start + bin_width]
        by_position.append({"positions": f"{start}-{start + bin_width - 1}", **figures(rows)})
    return {"records": n_records, **figures(slots),
            **{f"records_fail_top{k}": round(failed[k] / n_records, 4) for k in TOP_KS},
            "by_position": by_position}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", required=True, help="database URL with explained features (autointerp demo makes one)")
    parser.add_argument("--models", default="gemma-3-270m,smollm2-135m")
    parser.add_argument("--features", type=int, default=12)
    parser.add_argument("--records", type=int, default=10, help="records per feature (test split, top and random)")
    parser.add_argument("--bin", type=int, default=16, help="slot positions per bin of the by-position figures")
    args = parser.parse_args()

    from llm_client.local_models import load_model
    from simulator.logprob_local import LocalLogprobSimulator
    from simulator.prompts import FEW_SHOT

    prompts = {"values_shown": tuple(dataclasses.replace(e, first_revealed=()) for e in FEW_SHOT),
               "unknown_first": FEW_SHOT}
    sets = scored_sets(args.db, args.features, args.records)
    print(f"{len(sets)} features, {sum(len(r) for _, r in sets)} records; explanations: "
          + "; ".join(repr(e) for e, _ in sets), flush=True)
    for name in args.models.split(","):
        loaded = load_model(name, device="cpu", dtype="float32")
        headline = {"model": name}
        for style, examples in prompts.items():
            t0 = time.perf_counter()
            result = measure(LocalLogprobSimulator(loaded, examples=examples), sets, args.bin)
            print(json.dumps({"model": name, "prompt": style, **result, "s": round(time.perf_counter() - t0, 1)}),
                  flush=True)
            headline |= {f"{key}_{style}": result[key] for key in
                         ("no_value_top5", "no_value_top20", "records_fail_top5", "records_fail_top20",
                          "median_value_mass", "median_unknown_mass")}
        print(json.dumps(headline), flush=True)


if __name__ == "__main__":
    main()
