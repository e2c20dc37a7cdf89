"""Turn sampler results into FeatureRecords: rebuild the selected windows, decode tokens, assign data splits.

The streaming pass keeps only window ids and activation rows. The selected windows are rebuilt here by
walking the corpus windows again (same corpus, tokenizer and settings give the same ids), so token
memory never grows with the corpus. Every window's tokens are decoded once and shared by all features.
The train/valid/test split of a record is a seeded hash of its window id: a window belongs to one split
for every feature, so the splits are disjoint by construction and reproducible.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any

import numpy as np

from activations.collect_config import CollectConfig, Target
from activations.corpus import Corpus
from activations.records import DATA_SPLITS, ActivationRecord, FeatureId, FeatureRecords, FeatureStats, Provenance
from activations.sampling import SamplerResult, SampleSet
from activations.vocab import SampleKind
from activations.windows import Window, iter_windows


def data_split_of(window_id: int, seed: int, fractions: tuple[float, float, float]) -> str:
    digest = hashlib.blake2b(f"{seed}:{window_id}".encode(), digest_size=8).digest()
    u = int.from_bytes(digest, "big") / 2**64
    edges = np.cumsum(fractions) / sum(fractions)
    return DATA_SPLITS[min(int(np.searchsorted(edges, u, side="right")), 2)]


def selected_window_ids(results: dict[Any, SamplerResult]) -> set[int]:
    ids: set[int] = set()
    for res in results.values():
        for sample in (res.top, res.random, *res.quantiles):
            ids.update(int(i) for i in np.unique(sample.ids) if i >= 0)
    return ids


def rebuild_windows(corpus: Corpus, tokenizer: Any, config: CollectConfig, wanted: set[int]) -> dict[int, Window]:
    found: dict[int, Window] = {}
    last = max(wanted, default=-1)
    for window in iter_windows(corpus, tokenizer, config.ctx_len, config.max_tokens, config.min_tail):
        if window.id in wanted:
            found[window.id] = window
        if window.id >= last:
            break
    missing = wanted - set(found)
    if missing:
        raise RuntimeError(
            f"{len(missing)} sampled windows (e.g. id {min(missing)}) are missing on the second walk over corpus "
            f"{corpus.name}: the corpus changed during collection"
        )
    return found


class _Records:
    """Builds one feature's records from sample sets; shares decoded tokens and provenance per window."""

    def __init__(self, windows: dict[int, Window], tokenizer: Any, corpus: Corpus, config: CollectConfig) -> None:
        self.windows = windows
        cache: dict[int, str] = {}
        decode = lambda i: cache.setdefault(i, tokenizer.decode([i]))  # noqa: E731
        self.tokens = {wid: tuple(decode(i) for i in w.token_ids) for wid, w in windows.items()}
        self.provenance = {wid: Provenance(corpus.name, w.document, w.offset) for wid, w in windows.items()}
        self.data_splits = {wid: data_split_of(wid, config.sampler.seed, config.data_split_fractions)
                            for wid in windows}

    def build(self, sample_set: SampleSet, f: int, sample: str, fid: FeatureId) -> list[ActivationRecord]:
        out = []
        for j, wid in enumerate(int(i) for i in sample_set.ids[f]):
            if wid < 0:
                continue
            tokens = self.tokens[wid]
            out.append(ActivationRecord(
                tokens=tokens, activations=sample_set.rows[f, j, : len(tokens)].tolist(), sample=sample,
                data_split=self.data_splits[wid], provenance=self.provenance[wid], label=f"{sample}[{j}]", feature=fid,
                token_ids=self.windows[wid].token_ids,
            ))
        return out


def feature_stats(res: SamplerResult, f: int) -> FeatureStats:
    bounds = res.quantile_boundaries[f]
    return FeatureStats(
        max_activation=float(res.max[f]), mean=float(res.mean[f]), variance=float(res.variance[f]),
        firing_fraction=float(res.firing_fraction[f]), n_tokens=res.n_tokens,
        quantile_boundaries=tuple(float(b) for b in bounds) if not any(math.isnan(b) for b in bounds) else (),
        min_activation=float(res.min[f]),
    )


def build_feature_records(
    results: dict[Target, SamplerResult], corpus: Corpus, tokenizer: Any, model_name: str, config: CollectConfig,
) -> dict[Target, list[FeatureRecords]]:
    """Per target, one FeatureRecords per feature. A dead feature (never > 0) keeps its statistics and
    its random sample (negative examples); it has no top or quantile records, as nothing was selected by
    activation."""
    windows = rebuild_windows(corpus, tokenizer, config, selected_window_ids(results))
    builder = _Records(windows, tokenizer, corpus, config)
    out: dict[Any, list[FeatureRecords]] = {}
    for target, res in results.items():
        features = []
        for f in range(len(res.max)):
            fid = FeatureId(model=model_name, layer=target.layer, kind=target.kind, index=f, sae=target.sae_name)
            stats = feature_stats(res, f)
            records = [] if stats.dead else builder.build(res.top, f, SampleKind.TOP, fid)
            records += builder.build(res.random, f, SampleKind.RANDOM, fid)
            if not stats.dead:
                for b, sample_set in enumerate(res.quantiles):
                    records += builder.build(sample_set, f, SampleKind.quantile(b), fid)
            features.append(FeatureRecords(feature=fid, records=records, stats=stats))
        out[target] = features
    return out
