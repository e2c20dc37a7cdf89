"""Turn sampler results into FeatureRecords: rebuild the selected windows, decode tokens, assign data splits.

The streaming pass keeps only window ids and activation rows. The selected windows are rebuilt here by
walking the corpus windows again (same corpus, tokenizer and settings give the same ids), so token
memory never grows with the corpus. Every window's tokens are decoded once and shared by all features.
Each feature's train/valid/test splits come from `activations.splits`: one split per window of the feature
(whatever samples hold it), valid and test balanced between top and random records, seeded, so a local and a
Ray collection (both assemble here) give the same splits.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import numpy as np

from activations.collect_config import CollectConfig, Target
from activations.corpus import Corpus
from activations.records import ActivationRecord, FeatureId, FeatureRecords, FeatureStats, Provenance
from activations.sampling import SamplerResult, SampleSet
from activations.splits import balanced_splits, bottom_splits, data_split_of
from activations.vocab import SampleKind
from activations.windows import Window, iter_windows


def selected_window_ids(results: dict[Any, SamplerResult]) -> set[int]:
    ids: set[int] = set()
    for res in results.values():
        for sample in (res.top, res.random, *res.quantiles, *_bottom_of(res)):
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


class WindowRecords:
    """Builds one feature's records from sample sets; shares decoded tokens and provenance per window."""

    def __init__(self, windows: dict[int, Window], tokenizer: Any, corpus_name: str, config: CollectConfig) -> None:
        self.windows = windows
        cache: dict[int, str] = {}
        decode = lambda i: cache.setdefault(i, tokenizer.decode([i]))  # noqa: E731
        self.tokens = {wid: tuple(decode(i) for i in w.token_ids) for wid, w in windows.items()}
        self.provenance = {wid: Provenance(corpus_name, w.document, w.offset) for wid, w in windows.items()}
        self.seed, self.fractions = config.sampler.seed, config.data_split_fractions
        self.hashed: dict[int, str] = {}  # the hash rule's split of a window is the same for every feature

    def splits(self, res: SamplerResult, f: int, fid: FeatureId, dead: bool) -> dict[int, str]:
        """Window id -> split for this feature: balanced over its top and random samples (a dead feature has no
        top records); the hash rule for windows in neither (quantile-only, or a dead feature's random ones)."""
        top = [] if dead else _window_ids(res.top, f)
        splits = balanced_splits(top, _window_ids(res.random, f), self.fractions, f"{self.seed}:{fid}")
        for sample_set in (res.random, *res.quantiles):
            for wid in _window_ids(sample_set, f):
                if wid not in splits:
                    if wid not in self.hashed:
                        self.hashed[wid] = data_split_of(wid, self.seed, self.fractions)
                    splits[wid] = self.hashed[wid]
        if res.bottom is not None:
            bottom = _negative_window_ids(res.bottom, f)
            splits.update(bottom_splits(bottom, _window_ids(res.random, f), splits, f"{self.seed}:{fid}:bottom"))
        return splits

    def build(self, sample_set: SampleSet, f: int, sample: str, fid: FeatureId,
              splits: dict[int, str], only: set[int] | None = None) -> list[ActivationRecord]:
        """Records of the sample set's windows (those in `only`, when given)."""
        out = []
        for j, wid in enumerate(int(i) for i in sample_set.ids[f]):
            if wid < 0 or (only is not None and wid not in only):
                continue
            tokens = self.tokens[wid]
            out.append(ActivationRecord(
                tokens=tokens, activations=sample_set.rows[f, j, : len(tokens)].tolist(), sample=sample,
                data_split=splits[wid], provenance=self.provenance[wid], label=f"{sample}[{j}]", feature=fid,
                token_ids=self.windows[wid].token_ids,
            ))
        return out


def _bottom_of(res: SamplerResult) -> tuple[SampleSet, ...]:
    return (res.bottom,) if res.bottom is not None else ()


def _negative_window_ids(sample_set: SampleSet, f: int) -> list[int]:
    """Feature f's bottom windows that go below zero (most negative first): a window whose minimum is not below
    zero shows nothing of the negative side, so a feature that never goes below zero has no bottom records."""
    return [int(i) for i, low in zip(sample_set.ids[f], sample_set.maxes[f]) if i >= 0 and low < 0]


def _window_ids(sample_set: SampleSet, f: int) -> list[int]:
    """Feature f's window ids in the sample's order (top: strongest first), empty slots left out."""
    return [int(i) for i in sample_set.ids[f] if i >= 0]


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
    """Per target, one FeatureRecords per feature (see `features_of`)."""
    windows = rebuild_windows(corpus, tokenizer, config, selected_window_ids(results))
    builder = WindowRecords(windows, tokenizer, corpus.name, config)
    return {target: features_of(res, builder, FeatureId(model_name, target.layer, target.kind, 0, target.sae_name))
            for target, res in results.items()}


def features_of(res: SamplerResult, builder: WindowRecords, first: FeatureId) -> list[FeatureRecords]:
    """One FeatureRecords per feature of one sampler result, its feature f being `first` with index
    first.index + f (a sampler may cover a slice of a layer: see StreamingSampler's first_feature). A dead
    feature (never > 0) keeps its statistics and its random sample (negative examples); it has no top or
    quantile records, as nothing was selected by activation. A signed collection adds each feature's bottom
    records, those of its most negative windows that go below zero (none for a feature that never does)."""
    features = []
    for f in range(len(res.max)):
        fid = replace(first, index=first.index + f)
        stats = feature_stats(res, f)
        splits = builder.splits(res, f, fid, stats.dead)
        records = [] if stats.dead else builder.build(res.top, f, SampleKind.TOP, fid, splits)
        records += builder.build(res.random, f, SampleKind.RANDOM, fid, splits)
        if not stats.dead:
            for b, sample_set in enumerate(res.quantiles):
                records += builder.build(sample_set, f, SampleKind.quantile(b), fid, splits)
        if res.bottom is not None:
            negative = set(_negative_window_ids(res.bottom, f))
            records += builder.build(res.bottom, f, SampleKind.BOTTOM, fid, splits, only=negative)
        features.append(FeatureRecords(feature=fid, records=records, stats=stats))
    return features
