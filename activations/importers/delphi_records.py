"""Rebuild each latent's records from a delphi cache with our own sampling (activations.sampling): the cached
sequences are cut into windows as a collection cuts documents, each window's dense activations (zero where delphi
kept no location) stream through a StreamingSampler per shard, and the selected windows become records with the
collection's statistics and balanced splits (activations.assemble). A cache imports as our own collection of
the same tokens would have sampled it."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from activations.assemble import WindowRecords, features_of, selected_window_ids
from activations.collect_config import CollectConfig
from activations.importers.common import ImportedFeature, ImportFormatError
from activations.importers.delphi_cache import DelphiHookpoint, DelphiShard
from activations.records import FeatureId
from activations.sampling import SamplerResult, StreamingSampler
from activations.windows import Window

# Dense activations of one batch are [windows, ctx, shard latents]; keep a batch under this many values.
_BATCH_VALUES = 2**25


class _Windows:
    """The cached sequences cut into windows of ctx_len; a short tail is kept (padded) when >= min_tail tokens."""

    def __init__(self, tokens: np.ndarray, config: CollectConfig) -> None:
        seq_len = tokens.shape[1]
        self.ctx = min(config.ctx_len, seq_len)
        starts = [s for s in range(0, seq_len, self.ctx) if s == 0 or seq_len - s >= config.min_tail]
        self.per_seq = len(starts)
        self.windows = [
            Window(id=seq * self.per_seq + k, document=str(seq), offset=start,
                   token_ids=tuple(int(t) for t in tokens[seq, start:start + self.ctx]))
            for seq in range(len(tokens)) for k, start in enumerate(starts)]
        self.lengths = torch.tensor([len(w.token_ids) for w in self.windows])

    def locate(self, shard: DelphiShard) -> tuple[np.ndarray, np.ndarray]:
        """Each location's window id and position in it (-1 for positions in a dropped tail)."""
        k, pos = shard.locations[:, 1] // self.ctx, shard.locations[:, 1] % self.ctx
        kept = k < self.per_seq
        return np.where(kept, shard.locations[:, 0] * self.per_seq + k, -1), pos


def _sample_shard(shard: DelphiShard, windows: _Windows, config: CollectConfig) -> SamplerResult:
    width = shard.last - shard.first + 1
    sampler = StreamingSampler(width, windows.ctx, config.sampler, first_feature=shard.first)
    window_ids, positions = windows.locate(shard)
    order = np.argsort(window_ids, kind="stable")
    window_ids, positions = window_ids[order], positions[order]
    latents, values = shard.locations[order, 2], shard.activations[order]
    batch = max(1, min(config.batch_size, _BATCH_VALUES // (windows.ctx * width)))
    for lo in range(0, len(windows.windows), batch):
        hi = min(lo + batch, len(windows.windows))
        a, b = np.searchsorted(window_ids, [lo, hi])
        acts = torch.zeros(hi - lo, windows.ctx, width)
        acts[window_ids[a:b] - lo, positions[a:b], latents[a:b]] = torch.from_numpy(values[a:b])
        valid = torch.arange(windows.ctx)[None, :] < windows.lengths[lo:hi, None]
        sampler.update(acts, valid, torch.arange(lo, hi, dtype=torch.long))
    return sampler.result()


def _check_vocabulary(hookpoint: DelphiHookpoint, tokenizer: Any, model_name: str) -> None:
    vocab = len(tokenizer)
    if hookpoint.tokens.size and int(hookpoint.tokens.max()) >= vocab:
        raise ImportFormatError(
            f"{hookpoint.name}: field 'tokens' holds token id {int(hookpoint.tokens.max())}, beyond the {vocab} "
            f"tokens of {model_name}'s tokenizer: pass the cache's subject model with --model "
            f"(config.json names {hookpoint.config.get('model_name', 'none')!r})")


def delphi_features(hookpoint: DelphiHookpoint, tokenizer: Any, model_name: str,
                    config: CollectConfig = CollectConfig()) -> list[ImportedFeature]:
    """Every latent of every shard of the hookpoint, with records, statistics and splits."""
    _check_vocabulary(hookpoint, tokenizer, model_name)
    windows = _Windows(hookpoint.tokens, config)
    results = [(shard, _sample_shard(shard, windows, config)) for shard in hookpoint.shards]
    wanted = selected_window_ids(dict(enumerate(res for _, res in results)))
    corpus = f"{hookpoint.config.get('dataset_repo', 'delphi')}:{hookpoint.config.get('dataset_split', '')}"
    builder = WindowRecords({w.id: w for w in windows.windows if w.id in wanted}, tokenizer, corpus, config)
    sae_info = {"layer": hookpoint.layer,
                "meta": {"source": "delphi", "hookpoint": hookpoint.name, "cache_config": hookpoint.config}}
    out = []
    for shard, res in results:
        first = FeatureId(model_name, hookpoint.layer, "sae_latent", shard.first, sae=hookpoint.name)
        out += [ImportedFeature(records=records, feature=records.feature, sae_info=sae_info)
                for records in features_of(res, builder, first)]
    return out
