"""Local logprob simulator: naive (one full prompt per record, full forward pass; on a tokenizer that splits
"10", as Gemma's does, one more full prompt per token, cut after its slot with "1" typed there) vs the fast path
(shared prefix KV cache computed once, records batched behind it with a "1" per slot seen through tree
attention, digit rows of the head only but at those "1"s), side by side on gemma-3-270m with the real few-shot
prefix and 20 records of 64 tokens of news text. The naive pass runs a prompt per token: on a CPU, try
`--records 4 --tokens 16` first.

    .venv/bin/python benchmarks/simulator_speed.py [--model gemma-3-270m] [--records 20] [--tokens 64]

Last line: {"naive_s", "fast_s", "speedup", "max_abs_diff"} (max |Δ| of expected values, 0..10 scale).
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def news_records(tokenizer, n: int, length: int) -> list[list[str]]:
    """Windows of real text, as the subject tokenizer decodes them token by token."""
    from gensim.test.utils import datapath

    with open(datapath("lee_background.cor"), encoding="utf-8") as fh:
        ids = tokenizer(fh.read(), add_special_tokens=False).input_ids
    return [[tokenizer.decode([t]) for t in ids[i * length:(i + 1) * length]] for i in range(n)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="gemma-3-270m")
    parser.add_argument("--records", type=int, default=20)
    parser.add_argument("--tokens", type=int, default=64)
    args = parser.parse_args()

    import torch

    from llm_client.local_models import load_model
    from simulator.base import expected_value
    from simulator.logprob_local import LocalLogprobSimulator

    loaded = load_model(args.model, device="cpu", dtype="float32")
    sim = LocalLogprobSimulator(loaded)
    records = news_records(loaded.tokenizer, args.records, args.tokens)
    explanation = "words about fire, smoke and burning"
    prompt_len = len(sim.prefix_ids(explanation)) + len(sim.record_ids(records[0]).ids)
    print(f"model {args.model}, {torch.get_num_threads()} threads; prefix {len(sim.prefix_ids(explanation))} tokens, "
          f"prompt ~{prompt_len} tokens per record, {len(records)} records of {args.tokens} tokens")

    sim.distributions(explanation, records[:1])  # warm-up (allocator, kernels) for both paths
    t0 = time.perf_counter()
    naive = sim.reference_distributions(explanation, records)
    naive_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    fast = sim.distributions(explanation, records)
    fast_s = time.perf_counter() - t0

    diff = max(abs(expected_value(a) - expected_value(b)) for ra, rb in zip(naive, fast) for a, b in zip(ra, rb))
    print(f"naive (one prompt per record{' and per slot' if sim.values.splits_ten else ''}, full logits): "
          f"{naive_s:.2f}s")
    print(f"fast  (prefix cached once, batched, digit head): {fast_s:.2f}s")
    print(f"speedup {naive_s / fast_s:.1f}x, max |Δ expected value| {diff:.2e}")
    print(json.dumps({"naive_s": round(naive_s, 3), "fast_s": round(fast_s, 3), "speedup": round(naive_s / fast_s, 2),
                      "max_abs_diff": diff}))


if __name__ == "__main__":
    main()
