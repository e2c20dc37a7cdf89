"""Bare forward pass vs forward pass with every neuron of one layer tracked by the streaming sampler.

Both run in this process over the same batches of the Wikipedia sample, and both stop after the hooked
layer (as `autointerp collect` does), so the difference is the tracking alone. The two are interleaved
batch by batch, alternating which goes first, so that load from other processes hits both alike.

Memory: first a bare-only warm-up (`--warmup` batches) sets the bare peak; the interleaved phase then adds
the tracker. Reported per checkpoint: peak RSS of the process (ru_maxrss; on CUDA also peak allocated
tensor memory), and `mem_growth` = (peak with tracking - bare peak) / bare peak, for RSS on CPU and for
tensor memory on CUDA. Checkpoints at growing token counts show whether memory grows with tokens.

    .venv/bin/python benchmarks/collect_speed.py [--model gemma-3-270m] [--layer 6] [--tokens 20000,100000]
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from activations.collect import HookedRunner, neuron_target  # noqa: E402
from activations.corpus import open_corpus  # noqa: E402
from activations.hooks import hook_width  # noqa: E402
from activations.sampling import SamplerConfig, StreamingSampler  # noqa: E402
from activations.windows import bos_prefix, iter_batches, iter_windows, pad_id_of  # noqa: E402
from llm_client.local_models import load_model  # noqa: E402


def peak_memory_mb(device: str) -> float:
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed(device: str, fn) -> float:
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="gemma-3-270m")
    parser.add_argument("--layer", type=int, default=6)
    parser.add_argument("--tokens", default="20000,60000", help="checkpoints, comma separated; the last is the total")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--ctx-len", type=int, default=64)
    parser.add_argument("--warmup", type=int, default=4, help="bare-only batches that set the bare memory peak")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default=None)
    args = parser.parse_args()
    checkpoints = sorted(int(t) for t in args.tokens.split(","))

    loaded = load_model(args.model, device=args.device, dtype=args.dtype)
    model, tok, device = loaded.model, loaded.tokenizer, loaded.device
    target = neuron_target(args.layer)
    sampler = StreamingSampler(hook_width(model, target.hook), args.ctx_len, SamplerConfig(), device, loaded.dtype)
    batches = lambda: iter_batches(  # noqa: E731
        iter_windows(open_corpus(), tok, args.ctx_len, checkpoints[-1]), args.batch_size, args.ctx_len, bos_prefix(tok),
        pad_id_of(tok), device,
    )
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()

    bare_s = tracked_s = 0.0
    tokens = 0
    rows = []
    with torch.inference_mode(), HookedRunner(model, set(), last_layer=args.layer) as bare, HookedRunner(model, {target.hook}) as hooked:
        def track(batch) -> None:
            acts = hooked.run(batch)[target.hook][:, batch.prefix:, :]
            sampler.update(acts, batch.valid, batch.window_ids)

        for _, batch in zip(range(args.warmup), batches()):
            bare.run(batch)
        bare_peak = peak_memory_mb(device)
        for n, batch in enumerate(batches()):
            # Alternate which goes first: the second run of a batch finds warmer caches.
            if n % 2:
                tracked_s += timed(device, lambda: track(batch))
            bare_s += timed(device, lambda: bare.run(batch))
            if not n % 2:
                tracked_s += timed(device, lambda: track(batch))
            tokens += batch.n_tokens
            if len(rows) < len(checkpoints) and tokens >= checkpoints[len(rows)]:
                rows.append({"tokens": tokens, "bare_tokens_per_s": tokens / bare_s, "tracked_tokens_per_s": tokens / tracked_s,
                             "peak_mb": peak_memory_mb(device)})
                print(f"{tokens:>9} tokens  bare {tokens / bare_s:8.1f} tok/s  tracked {tokens / tracked_s:8.1f} tok/s  "
                      f"ratio {bare_s / tracked_s:.3f}  peak {rows[-1]['peak_mb']:.0f} MB (bare peak {bare_peak:.0f} MB)", flush=True)
    sampler.result()  # the end-of-run move to the host, outside the timed loop as in a real collection
    what = "peak allocated CUDA tensor memory" if device.startswith("cuda") else "peak RSS of the process (ru_maxrss)"
    print(f"model {args.model} layer {args.layer} ({sampler.n_features} neurons) on {device}; memory = {what}; "
          f"token counts run: {[r['tokens'] for r in rows]} (the Wikipedia sample on 2 CPU cores allows no more in a few minutes)")
    final = rows[-1]
    print(json.dumps({
        "bare_tokens_per_s": round(final["bare_tokens_per_s"], 1),
        "tracked_tokens_per_s": round(final["tracked_tokens_per_s"], 1),
        "overhead": round(tracked_s / bare_s - 1, 4),
        "mem_growth": round((final["peak_mb"] - bare_peak) / bare_peak, 4),
    }))


if __name__ == "__main__":
    main()
