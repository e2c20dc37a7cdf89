"""Bare forward pass vs forward pass with every neuron of one layer tracked by the streaming sampler.

Both stop after the hooked layer (as `autointerp collect` does), so the difference is the tracking alone.
One process, three phases over the same windows of the Wikipedia sample:

1. warm-up: a few bare batches, not measured (first-call allocations, thread pools).
2. bare: the first checkpoint's tokens, bare only, before any sampler exists. Memory is sampled after
   every batch; its steady state is the median over the phase's second half.
3. tracked: the same windows again and on to the last checkpoint. Every batch runs bare and tracked,
   alternating which goes first, so load from other processes hits both alike: tokens/s and the overhead
   come from this phase. Memory is sampled after every tracked step; the steady state over the first
   checkpoint's tokens (same windows, same length as phase 2) gives `mem_growth` = (tracked - bare) / bare,
   and the steady state at each later checkpoint shows whether memory grows with the number of tokens.

Memory on CPU is the process's private (anonymous) resident memory, RssAnon. The file-backed part,
RssFile, is printed apart: it is mostly the model's safetensors file, memory-mapped, whose embedding
rows page in as new token ids appear. It grows with vocabulary coverage (up to the file's size, and the
kernel may drop those clean pages at will) whether or not anything is tracked, so it would hide the
tracker's own footprint. On CUDA, memory is torch.cuda.memory_allocated (current, not peak).

    .venv/bin/python benchmarks/collect_speed.py [--model gemma-3-270m] [--layer 6] [--tokens 100000,300000]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from activations.collect import HookedRunner
from activations.collect_config import neuron_target
from activations.corpus import open_corpus
from activations.hooks import hook_width
from activations.sampling import SamplerConfig, StreamingSampler
from activations.windows import WindowBatch, bos_prefix, iter_batches, iter_windows, pad_id_of
from llm_client.local_models import load_model


def memory_mb(device: str) -> tuple[float, float]:
    """(private memory, file-backed memory) in MB: RssAnon and RssFile on CPU; allocated tensors on CUDA."""
    if device.startswith("cuda"):
        return torch.cuda.memory_allocated() / 2**20, 0.0
    status = Path("/proc/self/status").read_text().splitlines()
    fields = dict(line.split(":", 1) for line in status if line.startswith("Rss"))
    return int(fields["RssAnon"].split()[0]) / 1024, int(fields["RssFile"].split()[0]) / 1024


def timed(device: str, fn: Callable[[], object]) -> float:
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - start


def steady(samples: list[tuple[int, float, float]], upto: int, span: int) -> tuple[float, float]:
    """Median (private, file) memory over the samples taken in the last `span` tokens up to `upto`."""
    window = [s for s in samples if upto - span < s[0] <= upto] or samples[-1:]
    return statistics.median(s[1] for s in window), statistics.median(s[2] for s in window)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="gemma-3-270m")
    parser.add_argument("--layer", type=int, default=6)
    parser.add_argument("--tokens", default="100000,300000",
                        help="checkpoints, comma separated: the first is the bare phase's length, the last the total")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--ctx-len", type=int, default=64)
    parser.add_argument("--warmup", type=int, default=4, help="unmeasured bare batches first")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default=None)
    args = parser.parse_args()
    checkpoints = sorted(int(t) for t in args.tokens.split(","))

    loaded = load_model(args.model, device=args.device, dtype=args.dtype)
    model, tok, device = loaded.model, loaded.tokenizer, loaded.device
    target = neuron_target(args.layer)

    def batches(limit: int):
        windows = iter_windows(open_corpus(), tok, args.ctx_len, limit)
        return iter_batches(windows, args.batch_size, args.ctx_len, bos_prefix(tok), pad_id_of(tok), device)

    bare_phase: list[tuple[int, float, float]] = []
    tracked_phase: list[tuple[int, float, float]] = []
    with (torch.inference_mode(), HookedRunner(model, set(), last_layer=args.layer) as bare,
          HookedRunner(model, {target.hook}) as hooked):
        for _, batch in zip(range(args.warmup), batches(checkpoints[0])):
            bare.run(batch)
        phase_start, tokens = time.perf_counter(), 0
        for batch in batches(checkpoints[0]):
            bare.run(batch)
            tokens += batch.n_tokens
            bare_phase.append((tokens, *memory_mb(device)))
        bare_only_tokens_per_s = tokens / (time.perf_counter() - phase_start)

        sampler = StreamingSampler(hook_width(model, target.hook), args.ctx_len, SamplerConfig(), device, loaded.dtype)

        def track(batch: WindowBatch) -> None:
            acts = hooked.run(batch)[target.hook][:, batch.prefix:, :]
            sampler.update(acts, batch.valid, batch.window_ids)

        bare_s = tracked_s = 0.0
        tokens = 0
        for n, batch in enumerate(batches(checkpoints[-1])):
            # Alternate which goes first: the second run of a batch finds warmer caches.
            if n % 2:
                tracked_s += timed(device, partial(track, batch))
            bare_s += timed(device, partial(bare.run, batch))
            if not n % 2:
                tracked_s += timed(device, partial(track, batch))
            tokens += batch.n_tokens
            tracked_phase.append((tokens, *memory_mb(device)))
    sampler.result()  # the end-of-run move to the host, outside the timed loop as in a real collection

    span = checkpoints[0] // 2  # a phase's second half
    bare_mb, bare_file_mb = steady(bare_phase, checkpoints[0], span)
    rows = []
    for checkpoint in checkpoints:
        mb, file_mb = steady(tracked_phase, checkpoint, span)
        rows.append({"tokens": min(checkpoint, tokens), "private_mb": mb, "file_mb": file_mb})
    what = "allocated CUDA tensors" if device.startswith("cuda") else "private RSS (RssAnon)"
    print(f"model {args.model}, layer {args.layer} ({sampler.n_features} neurons) on {device}, "
          f"batch {args.batch_size} x {args.ctx_len}; "
          f"memory = {what}, steady state = median over the last {span} tokens before each point")
    print(f"bare only   {checkpoints[0]:>8} tokens: {bare_only_tokens_per_s:7.1f} tok/s   "
          f"memory {bare_mb:7.1f} MB  (file-backed {bare_file_mb:.0f} MB)")
    for row in rows:
        print(f"tracked  to {row['tokens']:>8} tokens: memory {row['private_mb']:7.1f} MB  "
              f"(file-backed {row['file_mb']:.0f} MB)")
    print(f"side by side over {tokens} tokens: bare {tokens / bare_s:.1f} tok/s, "
          f"tracked {tokens / tracked_s:.1f} tok/s")
    first, last = rows[0], rows[-1]
    print(json.dumps({
        "bare_tokens_per_s": round(tokens / bare_s, 1),
        "tracked_tokens_per_s": round(tokens / tracked_s, 1),
        "overhead": round(tracked_s / bare_s - 1, 4),
        "mem_growth": round((first["private_mb"] - bare_mb) / bare_mb, 4),
        "mem_growth_with_tokens": round((last["private_mb"] - first["private_mb"]) / first["private_mb"], 4),
        "tokens": [row["tokens"] for row in rows],
    }))


if __name__ == "__main__":
    main()
