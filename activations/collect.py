"""Run a subject model over a corpus and sample activation records for every feature of the asked targets.

The caller (the autointerp layer) loads the model; this module takes the torch model + tokenizer. One
forward pass feeds every target (MLP neurons of several layers, SAE latents) at once, and stops after
the deepest hooked layer, since nothing later is needed. Everything is checked (layers exist, SAE widths
match their hook points) before the first forward pass.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch

from activations.assemble import build_feature_records
from activations.collect_config import CollectConfig, Target
from activations.corpus import Corpus
from activations.hooks import HookError, HookPoint, attach, decoder_layers, hook_width, n_layers
from activations.records import FeatureRecords
from activations.sae import Sae
from activations.sampling import SamplerResult, StreamingSampler
from activations.windows import Window, WindowBatch, bos_prefix, iter_batches, iter_windows, pad_id_of


class _StopForward(Exception):
    """Raised after the deepest needed layer: the rest of the network is not needed."""


class HookedRunner:
    """Forward passes that capture `hooks` and stop after layer `last_layer` (default: the deepest hook).
    Use as a context manager; the hooks are removed on exit."""

    def __init__(self, model: Any, hooks: set[HookPoint], last_layer: int | None = None) -> None:
        self.model = model
        self.hooks = hooks
        self.last_layer = last_layer if last_layer is not None else max(h.layer for h in hooks)
        self.captured: dict[HookPoint, torch.Tensor] = {}
        self.handles: list[Any] = []

    def _sink(self, hook: HookPoint) -> Callable[[torch.Tensor], None]:
        def capture(x: torch.Tensor) -> None:
            self.captured[hook] = x  # self.captured is replaced per run: look it up on every call

        return capture

    def __enter__(self) -> HookedRunner:
        self.handles = [attach(self.model, h, self._sink(h)) for h in self.hooks]

        def stop(*_: Any) -> None:
            raise _StopForward

        self.handles.append(decoder_layers(self.model)[self.last_layer].register_forward_hook(stop))
        return self

    def __exit__(self, *_: Any) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles = []

    def run(self, batch: WindowBatch) -> dict[HookPoint, torch.Tensor]:
        self.captured = {}
        base = getattr(self.model, "base_model", self.model)
        try:
            base(input_ids=batch.input_ids, attention_mask=batch.attention_mask, use_cache=False)
        except _StopForward:
            pass
        return self.captured


def check_targets(model: Any, targets: list[Target]) -> dict[Target, int]:
    """Feature count per target; a missing layer or an SAE whose width does not fit its hook is an error."""
    if not targets:
        raise ValueError("nothing to collect: give at least one layer or SAE")
    widths = {}
    for target in targets:
        width = hook_width(model, target.hook)
        if target.sae is not None:
            _check_sae(model, target.sae, target.hook, width)
        widths[target] = target.sae.d_sae if target.sae is not None else width
    return widths


def _check_sae(model: Any, sae: Sae, hook: HookPoint, width: int) -> None:
    """The SAE reads as many values as its input point gives, and (a transcoder) writes as many as its output
    point takes, so its decoder rows are directions there."""
    if sae.d_in != width:
        raise HookError(
            f"SAE {sae.name} expects d_in={sae.d_in} at {hook}, but {type(model).__name__} gives {width} values "
            "per token there; pick the SAE trained on this model and hook point, or pass the right hook"
        )
    if sae.out_layers and sae.out_layers[-1] >= n_layers(model):
        raise HookError(f"cross-layer transcoder {sae.name} writes layers {sae.out_layers[0]}-{sae.out_layers[-1]}, "
                        f"but {type(model).__name__} has layers 0-{n_layers(model) - 1}; pick the CLT of this model")
    out = sae.hook_out
    if out is not None and sae.W_dec is not None:
        d_out = int(sae.W_dec.shape[1])
        if d_out != hook_width(model, out):
            raise HookError(
                f"transcoder {sae.name} writes d_out={d_out} at {out}, but {type(model).__name__} takes "
                f"{hook_width(model, out)} values per token there; pass the right output hook (--sae-hook-out)"
            )


def _device_and_dtype(model: Any) -> tuple[torch.device, torch.dtype]:
    param = next(model.parameters())
    return param.device, param.dtype


def stream(
    model: Any, tokenizer: Any, corpus: Corpus, targets: list[Target], config: CollectConfig,
    progress: Callable[[int], None] | None = None,
) -> dict[Target, SamplerResult]:
    """The streaming pass: sampler state per target, bounded whatever `config.max_tokens` is."""
    windows = iter_windows(corpus, tokenizer, config.ctx_len, config.max_tokens, config.min_tail)
    return {t: s.result() for t, s in stream_windows(model, tokenizer, windows, targets, config, progress).items()}


def stream_windows(
    model: Any, tokenizer: Any, windows: Iterable[Window], targets: list[Target], config: CollectConfig,
    progress: Callable[[int], None] | None = None,
) -> dict[Target, StreamingSampler]:
    """Feed these windows (all of a corpus, or one shard of it with its global window ids) to one sampler per
    target; the samplers, unfinished (a shard's are merged with the others' before their result)."""
    widths = check_targets(model, targets)
    device, dtype = _device_and_dtype(model)
    saes = {t: t.sae.to(device) for t in targets if t.sae is not None}
    samplers = {
        t: StreamingSampler(widths[t], config.ctx_len, config.sampler, device, torch.float32 if t.sae else dtype)
        for t in targets
    }
    batches = iter_batches(windows, config.batch_size, config.ctx_len, bos_prefix(tokenizer), pad_id_of(tokenizer),
                           device)
    with torch.inference_mode(), HookedRunner(model, {t.hook for t in targets}) as runner:
        for batch in batches:
            captured = runner.run(batch)
            for target, sampler in samplers.items():
                acts = captured[target.hook][:, batch.prefix:, :]
                if target.sae is not None:
                    acts = saes[target].encode(acts)
                sampler.update(acts, batch.valid, batch.window_ids)
            if progress is not None:
                progress(batch.n_tokens)
    return samplers


def collect(
    model: Any, tokenizer: Any, corpus: Corpus, targets: list[Target], model_name: str,
    config: CollectConfig = CollectConfig(), progress: Callable[[int], None] | None = None,
) -> dict[Target, list[FeatureRecords]]:
    """Stream the corpus, then turn each target's samples into records (one FeatureRecords per feature)."""
    results = stream(model, tokenizer, corpus, targets, config, progress)
    return build_feature_records(results, corpus, tokenizer, model_name, config)
