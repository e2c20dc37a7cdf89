"""Streaming, vectorised sampling of context windows for every feature of a layer at once.

`update` sees one batch of activations [batch, ctx, n_features] and only ever does whole-tensor torch ops
on the batch's device: no Python loop over features and no host round-trip, so a GPU never waits.
State per feature has a fixed size, whatever the number of tokens:

- top-k: the k windows with the highest max activation (a running torch.topk over the pool + the batch).
- random: a uniform sample of all windows, by reservoir sampling with seeded random keys (keeping the
  n largest of iid uniform keys is a uniform n-subset).
- quantile pool: the same reservoir, restricted to windows where the feature fires (max > 0). At the end
  its window maxima give the quantile boundaries, and each bin takes its first `per_quantile` members.
  One pass suffices because the pool is a uniform sample of firing windows: its empirical quantiles
  estimate the real ones (error ~ 1/sqrt(pool size)) and its members are uniform within each bin. A
  second pass binning against fixed boundaries would be exact but would cost a second forward pass.
- statistics over every scored token: max, min, firing count, mean and variance (per-batch two-pass
  moments merged with Chan's parallel formula, accumulated in float64).

Each pooled window keeps its activation row ([ctx] values for that feature), so records need no second
forward pass; token ids are not kept at all (the collector rebuilds the few selected windows by id).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

_EMPTY_RESERVOIR = -1.0  # key of an unfilled reservoir slot; real keys are uniform in [0, 1)
_NOT_FIRING = -2.0  # below the empty slots, so a non-firing window never enters the quantile pool


@dataclass(frozen=True)
class SamplerConfig:
    top_k: int = 20
    n_random: int = 20
    n_quantiles: int = 5
    per_quantile: int = 5
    quantile_pool_factor: int = 2  # the quantile pool holds factor * n_quantiles * per_quantile windows
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("top_k", "n_random", "n_quantiles", "per_quantile", "quantile_pool_factor"):
            if getattr(self, name) < 1:
                raise ValueError(f"sampler setting {name} must be >= 1 (got {getattr(self, name)})")

    @property
    def quantile_pool(self) -> int:
        return self.quantile_pool_factor * self.n_quantiles * self.per_quantile


@dataclass
class Pool:
    """A fixed-size set of windows per feature: sort keys, window ids (-1 = empty), maxima, activation rows.

    Slots are unordered. Each tensor has one extra scratch slot (index K) that absorbs the no-op writes
    of features with fewer newcomers than the batch allows, so updates need no data-dependent shapes.
    """

    keys: torch.Tensor  # [F, K + 1]
    ids: torch.Tensor  # [F, K + 1] int64
    maxes: torch.Tensor  # [F, K + 1]
    rows: torch.Tensor  # [F, K + 1, ctx]

    @classmethod
    def empty(cls, n_features: int, size: int, ctx_len: int, fill_key: float, device: torch.device,
              dtype: torch.dtype) -> Pool:
        return cls(
            keys=torch.full((n_features, size + 1), fill_key, device=device),
            ids=torch.full((n_features, size + 1), -1, dtype=torch.long, device=device),
            maxes=torch.full((n_features, size + 1), float("-inf"), device=device),
            rows=torch.zeros((n_features, size + 1, ctx_len), device=device, dtype=dtype),
        )

    @property
    def size(self) -> int:
        return self.keys.shape[1] - 1

    def merge(self, keys: torch.Tensor, window_ids: torch.Tensor, maxes: torch.Tensor, rows: torch.Tensor) -> None:
        """Keep the K largest keys of pool + batch. keys/maxes [F, B], window_ids [B], rows [F, B, ctx].

        Only newcomers are written, each into a slot it evicts: rows are copied for at most min(K, B)
        windows per feature instead of rebuilding the whole [F, K, ctx] pool every batch."""
        size, n_batch = self.size, keys.shape[1]
        width = min(size, n_batch)
        _, idx = torch.cat([self.keys[:, :size], keys], dim=1).topk(size, dim=1, sorted=False)
        chosen = torch.zeros((keys.shape[0], size + n_batch), dtype=torch.bool, device=keys.device)
        chosen.scatter_(1, idx, True)
        evicted = ~chosen[:, :size]
        # Stable sorts list evicted slots first and incoming batch entries first; their counts are equal.
        slots = (~evicted).to(torch.uint8).argsort(dim=1, stable=True)[:, :width]
        incoming = (~chosen[:, size:]).to(torch.uint8).argsort(dim=1, stable=True)[:, :width]
        live = torch.arange(width, device=keys.device) < evicted.sum(dim=1, keepdim=True)
        slots = torch.where(live, slots, torch.full_like(slots, size))
        feat = torch.arange(keys.shape[0], device=keys.device)[:, None]
        self.keys[feat, slots] = keys[feat, incoming]
        self.ids[feat, slots] = window_ids[incoming]
        self.maxes[feat, slots] = maxes[feat, incoming]
        self.rows[feat, slots] = rows[feat, incoming].to(self.rows.dtype)

    def ordered(self) -> Pool:
        """The K real slots sorted by key, descending (for the top pool: by max activation)."""
        order = self.keys[:, : self.size].argsort(dim=1, descending=True)
        feat = torch.arange(self.keys.shape[0], device=self.keys.device)[:, None]
        return Pool(keys=self.keys[feat, order], ids=self.ids[feat, order], maxes=self.maxes[feat, order],
                    rows=self.rows[feat, order])


@dataclass
class SampleSet:
    """Host-side selection for one sampling strategy: ids [F, K] (-1 = empty), maxes [F, K], rows [F, K, ctx]."""

    ids: np.ndarray
    maxes: np.ndarray
    rows: np.ndarray


@dataclass
class SamplerResult:
    n_tokens: int
    max: np.ndarray  # [F]
    min: np.ndarray
    mean: np.ndarray
    variance: np.ndarray  # population variance over all scored tokens
    firing_fraction: np.ndarray
    quantile_boundaries: np.ndarray  # [F, n_quantiles - 1], NaN where a feature never fired
    top: SampleSet  # sorted by max, descending
    random: SampleSet
    quantiles: list[SampleSet]  # one per bin, lowest bin first


class StreamingSampler:
    def __init__(self, n_features: int, ctx_len: int, config: SamplerConfig = SamplerConfig(),
                 device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> None:
        self.config = config
        self.n_features = n_features
        self.device = torch.device(device)
        self.generator = torch.Generator(device=self.device).manual_seed(config.seed)
        f64 = torch.float64
        self.count = torch.zeros((), device=self.device, dtype=f64)
        self.mean = torch.zeros(n_features, device=self.device, dtype=f64)
        self.m2 = torch.zeros(n_features, device=self.device, dtype=f64)
        self.fires = torch.zeros(n_features, device=self.device, dtype=f64)
        self.max = torch.full((n_features,), float("-inf"), device=self.device)
        self.min = torch.full((n_features,), float("inf"), device=self.device)
        empty = lambda size, key: Pool.empty(n_features, size, ctx_len, key, self.device, dtype)  # noqa: E731
        self.top = empty(config.top_k, float("-inf"))
        self.random = empty(config.n_random, _EMPTY_RESERVOIR)
        self.quantile_pool = empty(config.quantile_pool, _EMPTY_RESERVOIR)

    def update(self, acts: torch.Tensor, valid: torch.Tensor, window_ids: torch.Tensor) -> None:
        """acts [B, ctx, F]; valid [B, ctx] bool (False on padding); window_ids [B] int64."""
        if acts.shape[-1] != self.n_features:
            raise ValueError(f"sampler tracks {self.n_features} features but got activations of width {acts.shape[-1]}")
        mask = valid[..., None]
        xf = acts.float()
        window_max = xf.masked_fill(~mask, float("-inf")).amax(dim=1)  # [B, F]
        self._update_stats(xf, mask, window_max)
        window_max = window_max.T  # [F, B]
        rows = acts.permute(2, 0, 1)  # [F, B, ctx], a view: rows are gathered only where they enter a pool
        n_batch = acts.shape[0]
        self.top.merge(window_max, window_ids, window_max, rows)
        keys = torch.rand((self.n_features, n_batch), generator=self.generator, device=self.device)
        self.random.merge(keys, window_ids, window_max, rows)
        keys = torch.rand((self.n_features, n_batch), generator=self.generator, device=self.device)
        keys = torch.where(window_max > 0, keys, torch.full_like(keys, _NOT_FIRING))
        self.quantile_pool.merge(keys, window_ids, window_max, rows)

    def _update_stats(self, xf: torch.Tensor, mask: torch.Tensor, window_max: torch.Tensor) -> None:
        n_b = mask.sum().double()
        x = xf.masked_fill(~mask, 0.0)
        mean_b = x.sum(dim=(0, 1)).double() / n_b.clamp(min=1)
        m2_b = (x - mean_b.float()).masked_fill_(~mask, 0.0).square_().sum(dim=(0, 1)).double()
        total = self.count + n_b
        delta = mean_b - self.mean
        self.mean = self.mean + delta * (n_b / total.clamp(min=1))
        self.m2 = self.m2 + m2_b + delta.square() * (self.count * n_b / total.clamp(min=1))
        self.count = total
        self.fires += (x > 0).sum(dim=(0, 1)).double()
        self.max = torch.maximum(self.max, window_max.amax(dim=0))
        self.min = torch.minimum(self.min, xf.masked_fill(~mask, float("inf")).amin(dim=(0, 1)))

    def result(self) -> SamplerResult:
        """Finish: quantile bins from the pool, then one move of everything to the host."""
        cfg = self.config
        pool = self.quantile_pool.ordered()  # key order is a uniformly random order of the members
        firing_max = torch.where(pool.ids >= 0, pool.maxes.float(), torch.full_like(pool.maxes, float("nan")))
        qs = torch.linspace(0, 1, cfg.n_quantiles + 1, device=self.device)[1:-1]
        bounds = torch.nanquantile(firing_max, qs, dim=1).T if len(qs) else firing_max[:, :0]  # [F, nq-1]
        bins = (firing_max[..., None] > bounds[:, None, :]).sum(-1)  # [F, pool], NaN compares False
        quantiles = []
        for b in range(cfg.n_quantiles):
            in_bin = (bins == b) & (pool.ids >= 0)
            # Pool order is random-key order, so the first members of a bin are a uniform sample of it.
            rank = in_bin.long().cumsum(dim=1) - 1
            take = in_bin & (rank < cfg.per_quantile)
            order = torch.where(take, rank, torch.full_like(rank, pool.ids.shape[1]))
            order = order.argsort(dim=1)[:, : cfg.per_quantile]
            ids = torch.where(take.gather(1, order), pool.ids.gather(1, order), torch.full_like(order, -1))
            rows = pool.rows.gather(1, order[..., None].expand(-1, -1, pool.rows.shape[2]))
            quantiles.append(_host(ids, pool.maxes.gather(1, order), rows))
        top, rand = self.top.ordered(), self.random.ordered()
        count = max(self.count.item(), 1.0)
        return SamplerResult(
            n_tokens=int(self.count.item()), max=self.max.cpu().numpy(), min=self.min.cpu().numpy(),
            mean=self.mean.cpu().numpy(), variance=(self.m2 / count).cpu().numpy(),
            firing_fraction=(self.fires / count).cpu().numpy(), quantile_boundaries=bounds.cpu().numpy(),
            top=_host(top.ids, top.maxes, top.rows), random=_host(rand.ids, rand.maxes, rand.rows), quantiles=quantiles,
        )


def _host(ids: torch.Tensor, maxes: torch.Tensor, rows: torch.Tensor) -> SampleSet:
    return SampleSet(ids=ids.cpu().numpy(), maxes=maxes.float().cpu().numpy(), rows=rows.float().cpu().numpy())
