"""The streaming sampler's cost per batch, side by side in one process: the sampler of another checkout (the code
before signed collections), this checkout's default (unsigned) sampler, and its signed one
(`collect --signed`: bottom_k = top_k). Batches are a layer's worth of activations ([batch, ctx, features], a
gemma-3-270m MLP layer by default: 2048 neurons), gated-model-like (most values small, both signs); the three
samplers take turns on every batch, so load from other processes hits all alike. State bytes are the sampler's
tensors (its pools and statistics), what a collection holds per layer whatever its length.

    .venv/bin/python benchmarks/signed_sampler.py --before OLD_CHECKOUT [--features 2048] [--batches 40]

Prints, last, one JSON object: `before_ms`, `default_ms`, `signed_ms` (median per batch), `default_overhead` and
`signed_overhead` (fractions of before_ms), `before_state_mb`, `default_state_mb`, `signed_state_mb`.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from activations import sampling


def _module_from(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None, f"cannot load {path}"
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def _state_mb(sampler: Any) -> float:
    tensors = [v for v in vars(sampler).values() if isinstance(v, torch.Tensor)]
    for pool in ("top", "random", "quantile_pool", "bottom"):
        if getattr(sampler, pool, None) is not None:
            tensors += [t for t in vars(getattr(sampler, pool)).values() if isinstance(t, torch.Tensor)]
    return sum(t.nbytes for t in tensors) / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", required=True,
                        help="the checkout before signed collections: its activations/sampling.py is 'before'")
    parser.add_argument("--features", type=int, default=2048)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--ctx-len", type=int, default=64)
    parser.add_argument("--batches", type=int, default=40)
    args = parser.parse_args()
    torch.manual_seed(0)
    before = _module_from(Path(args.before) / "activations" / "sampling.py", "sampling_before")
    samplers = {
        "before": before.StreamingSampler(args.features, args.ctx_len, before.SamplerConfig()),
        "default": sampling.StreamingSampler(args.features, args.ctx_len, sampling.SamplerConfig()),
        "signed": sampling.StreamingSampler(args.features, args.ctx_len, sampling.SamplerConfig(bottom_k=20)),
    }
    times: dict[str, list[float]] = {name: [] for name in samplers}
    valid = torch.ones(args.batch_size, args.ctx_len, dtype=torch.bool)
    for b in range(args.batches):
        acts = torch.randn(args.batch_size, args.ctx_len, args.features) * 0.3 - 0.05
        ids = torch.arange(b * args.batch_size, (b + 1) * args.batch_size)
        order = list(samplers)[b % 3:] + list(samplers)[:b % 3]  # each goes first in turn
        for name in order:
            start = time.perf_counter()
            samplers[name].update(acts, valid, ids)
            times[name].append(time.perf_counter() - start)
    ms = {name: 1000 * statistics.median(t[2:]) for name, t in times.items()}  # the first batches warm up
    mb = {name: _state_mb(s) for name, s in samplers.items()}
    for name in samplers:
        print(f"{name:8s} {ms[name]:8.1f} ms/batch  state {mb[name]:7.1f} MB")
    print(json.dumps({"before_ms": round(ms["before"], 2), "default_ms": round(ms["default"], 2),
                      "signed_ms": round(ms["signed"], 2),
                      "default_overhead": round(ms["default"] / ms["before"] - 1, 3),
                      "signed_overhead": round(ms["signed"] / ms["before"] - 1, 3),
                      "before_state_mb": round(mb["before"], 1), "default_state_mb": round(mb["default"], 1),
                      "signed_state_mb": round(mb["signed"], 1)}))


if __name__ == "__main__":
    main()
