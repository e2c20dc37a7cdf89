"""Streaming, vectorised sampling of context windows for every feature of a layer at once.

`update` sees one batch of activations [batch, ctx, n_features] and only ever does whole-tensor torch ops
on the batch's device: no Python loop over features and no host round-trip, so a GPU never waits.
State per feature has a fixed size, whatever the number of tokens:

- top-k: the k windows with the highest max activation (a running torch.topk over the pool + the batch).
- bottom-k (signed collections only, `bottom_k` > 0): the k windows with the lowest min activation, the top
  windows of the feature's negative side, kept the same way on the negated minima.
- random: a uniform sample of all windows, by reservoir sampling with random keys (keeping the n largest of
  iid uniform keys is a uniform n-subset). A key is a hash of (seed, window id, feature), not a draw from a
  stream, so the sample does not depend on how windows were batched or split over processes.
- quantile pool: the same reservoir, restricted to windows where the feature fires (max > 0). At the end
  its window maxima give the quantile boundaries, and each bin takes its first `per_quantile` members.
  One pass suffices because the pool is a uniform sample of firing windows: its empirical quantiles
  estimate the real ones (error ~ 1/sqrt(pool size)) and its members are uniform within each bin. A
  second pass binning against fixed boundaries would be exact but would cost a second forward pass.
- statistics over every scored token: max, min, firing count, mean and variance (per-batch two-pass
  moments merged with Chan's parallel formula, accumulated in float64).

Each pooled window keeps its activation row ([ctx] values for that feature), so records need no second
forward pass; token ids are not kept at all (the collector rebuilds the few selected windows by id).

Pool keys are int64 and never tie: random keys are 62-bit hashes, top keys are the window max's float bits in
an order-preserving integer with the window id below them (equal maxima: the earlier window wins). So the
state after any split of the windows, merged (`merge`, e.g. the shards of a distributed collection), holds
exactly what one pass over all of them holds; the statistics merge by Chan's parallel formula.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch

_EMPTY_RESERVOIR = -1  # key of an unfilled reservoir slot; real keys are hashes in [0, 2**62)
_NOT_FIRING = -2  # below the empty slots, so a non-firing window never enters the quantile pool
_EMPTY_TOP = -(2**63)  # below every top key
_M31 = 0x7FFFFFFF
_Int = TypeVar("_Int", int, torch.Tensor)
_RANDOM_SALT, _QUANTILE_SALT = 1, 2


def _mix31(x: _Int) -> _Int:
    """A 31-bit integer hash (xor-shift-multiply); products stay below 2**58, so int64 never overflows."""
    x = ((x >> 16) ^ x) * 0x45D9F3B & _M31
    x = ((x >> 16) ^ x) * 0x45D9F3B & _M31
    return (x >> 16) ^ x


def _feature_salts(n_features: int, seed: int, salt: int, device: torch.device, first: int = 0) -> torch.Tensor:
    """[F, 2] int64: the per-feature halves of the key hash, for features first .. first + F - 1."""
    f = torch.arange(first, first + n_features, device=device, dtype=torch.long)[:, None]
    halves = [_mix31((seed * 4 + salt * 2 + half) & _M31) for half in (0, 1)]
    return torch.cat([_mix31(_mix31(f ^ h)) for h in halves], dim=1)


def hashed_keys(window_ids: torch.Tensor, feature_salts: torch.Tensor) -> torch.Tensor:
    """[F, B] int64 keys in [0, 2**62), a pure function of (seed, salt, feature, window id)."""
    lo, hi = window_ids & _M31, window_ids >> 31
    base = _mix31(_mix31(lo) ^ hi)[None, :]  # [1, B]
    high = _mix31(base ^ feature_salts[:, :1])
    low = _mix31(base ^ feature_salts[:, 1:])
    return (high << 31) | low


def top_keys(window_max: torch.Tensor, window_ids: torch.Tensor) -> torch.Tensor:
    """[F, B] int64 ordered as (max, -window id): float32 bits made order-preserving, the id below them."""
    bits = window_max.float().contiguous().view(torch.int32)
    ordered = torch.where(bits < 0, bits ^ _M31, bits).long()
    return ordered * (1 << 32) + ((1 << 32) - 1 - (window_ids & 0xFFFFFFFF))[None, :]


@dataclass(frozen=True)
class SamplerConfig:
    top_k: int = 20
    n_random: int = 20
    n_quantiles: int = 5
    per_quantile: int = 5
    quantile_pool_factor: int = 2  # the quantile pool holds factor * n_quantiles * per_quantile windows
    seed: int = 0
    # The most negative windows kept per feature (`collect --signed`: top_k); 0 keeps none, as an unsigned
    # collection, whose state carries no bottom pool at all.
    bottom_k: int = 0

    def __post_init__(self) -> None:
        for name in ("top_k", "n_random", "n_quantiles", "per_quantile", "quantile_pool_factor"):
            if getattr(self, name) < 1:
                raise ValueError(f"sampler setting {name} must be >= 1 (got {getattr(self, name)})")
        if self.bottom_k < 0:
            raise ValueError(f"sampler setting bottom_k must be >= 0 (got {self.bottom_k})")

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
    def empty(cls, n_features: int, size: int, ctx_len: int, fill_key: int, device: torch.device,
              dtype: torch.dtype) -> Pool:
        return cls(
            keys=torch.full((n_features, size + 1), fill_key, device=device, dtype=torch.long),
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

    def absorb(self, other: Pool) -> None:
        """Keep the K largest keys of both pools (another process's pool of the same features)."""
        size = self.size
        keys = torch.cat([self.keys[:, :size], other.keys[:, :other.size].to(self.keys.device)], dim=1)
        _, idx = keys.topk(size, dim=1, sorted=False)
        ids = torch.cat([self.ids[:, :size], other.ids[:, :other.size].to(self.ids.device)], dim=1)
        maxes = torch.cat([self.maxes[:, :size], other.maxes[:, :other.size].to(self.maxes.device)], dim=1)
        rows = torch.cat([self.rows[:, :size], other.rows[:, :other.size].to(self.rows)], dim=1)
        self.keys[:, :size] = keys.gather(1, idx)
        self.ids[:, :size] = ids.gather(1, idx)
        self.maxes[:, :size] = maxes.gather(1, idx)
        self.rows[:, :size] = rows.gather(1, idx[..., None].expand(-1, -1, rows.shape[2]))

    def to(self, device: torch.device) -> Pool:
        return Pool(self.keys.to(device), self.ids.to(device), self.maxes.to(device), self.rows.to(device))

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
    bottom: SampleSet | None = None  # signed collections: sorted by min, ascending; `maxes` holds the minima


@dataclass
class SamplerState:
    """A sampler's whole state on the host: what one process saw, mergeable with others' (see merge)."""

    n_features: int
    config: SamplerConfig
    count: torch.Tensor
    mean: torch.Tensor
    m2: torch.Tensor
    fires: torch.Tensor
    max: torch.Tensor
    min: torch.Tensor
    top: Pool
    random: Pool
    quantile_pool: Pool
    first_feature: int = 0
    bottom: Pool | None = None


class StreamingSampler:
    """`first_feature`: the layer index of this sampler's feature 0. A sampler over a slice of a layer's features
    (an imported cache shard) keys each feature by its layer index, so its random and quantile samples are the
    ones a sampler over the whole layer would pick."""

    def __init__(self, n_features: int, ctx_len: int, config: SamplerConfig = SamplerConfig(),
                 device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
                 first_feature: int = 0) -> None:
        self.config = config
        self.n_features = n_features
        self.first_feature = first_feature
        self.device = torch.device(device)
        self.random_salts = _feature_salts(n_features, config.seed, _RANDOM_SALT, self.device, first_feature)
        self.quantile_salts = _feature_salts(n_features, config.seed, _QUANTILE_SALT, self.device, first_feature)
        f64 = torch.float64
        self.count = torch.zeros((), device=self.device, dtype=f64)
        self.mean = torch.zeros(n_features, device=self.device, dtype=f64)
        self.m2 = torch.zeros(n_features, device=self.device, dtype=f64)
        self.fires = torch.zeros(n_features, device=self.device, dtype=f64)
        self.max = torch.full((n_features,), float("-inf"), device=self.device)
        self.min = torch.full((n_features,), float("inf"), device=self.device)
        empty = lambda size, key: Pool.empty(n_features, size, ctx_len, key, self.device, dtype)  # noqa: E731
        self.top = empty(config.top_k, _EMPTY_TOP)
        self.random = empty(config.n_random, _EMPTY_RESERVOIR)
        self.quantile_pool = empty(config.quantile_pool, _EMPTY_RESERVOIR)
        self.bottom = empty(config.bottom_k, _EMPTY_TOP) if config.bottom_k else None

    def update(self, acts: torch.Tensor, valid: torch.Tensor, window_ids: torch.Tensor) -> None:
        """acts [B, ctx, F]; valid [B, ctx] bool (False on padding); window_ids [B] int64."""
        if acts.shape[-1] != self.n_features:
            raise ValueError(f"sampler tracks {self.n_features} features but got activations of width {acts.shape[-1]}")
        mask = valid[..., None]
        xf = acts.float()
        window_max = xf.masked_fill(~mask, float("-inf")).amax(dim=1)  # [B, F]
        window_min = xf.masked_fill(~mask, float("inf")).amin(dim=1)  # [B, F]
        self._update_stats(xf, mask, window_max, window_min)
        window_max = window_max.T  # [F, B]
        rows = acts.permute(2, 0, 1)  # [F, B, ctx], a view: rows are gathered only where they enter a pool
        self.top.merge(top_keys(window_max, window_ids), window_ids, window_max, rows)
        if self.bottom is not None:  # the negative side's top: ordered by the negated minimum
            window_min = window_min.T
            self.bottom.merge(top_keys(-window_min, window_ids), window_ids, window_min, rows)
        self.random.merge(hashed_keys(window_ids, self.random_salts), window_ids, window_max, rows)
        keys = hashed_keys(window_ids, self.quantile_salts)
        keys = torch.where(window_max > 0, keys, torch.full_like(keys, _NOT_FIRING))
        self.quantile_pool.merge(keys, window_ids, window_max, rows)

    def _update_stats(self, xf: torch.Tensor, mask: torch.Tensor, window_max: torch.Tensor,
                      window_min: torch.Tensor) -> None:
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
        self.min = torch.minimum(self.min, window_min.amin(dim=0))

    def state(self) -> SamplerState:
        """Everything seen so far, on the host (picklable: a shard's result, a checkpoint)."""
        cpu = torch.device("cpu")
        return SamplerState(
            n_features=self.n_features, config=self.config, count=self.count.cpu(), mean=self.mean.cpu(),
            m2=self.m2.cpu(), fires=self.fires.cpu(), max=self.max.cpu(), min=self.min.cpu(), top=self.top.to(cpu),
            random=self.random.to(cpu), quantile_pool=self.quantile_pool.to(cpu), first_feature=self.first_feature,
            bottom=self.bottom.to(cpu) if self.bottom is not None else None)

    def merge(self, other: SamplerState) -> None:
        """Add another sampler's state (other windows of the same features): the result is the one a single
        sampler fed every window would give (pools exactly, statistics to the rounding of float32 batch sums)."""
        if (other.n_features, other.config, other.first_feature) != (self.n_features, self.config, self.first_feature):
            raise ValueError(f"cannot merge a sampler of {other.n_features} features ({other.config}) into one of "
                             f"{self.n_features} ({self.config}): states of one collection only")
        dev = self.device
        n_a, n_b = self.count, other.count.to(dev)
        total = n_a + n_b
        delta = other.mean.to(dev) - self.mean
        self.mean = self.mean + delta * (n_b / total.clamp(min=1))
        self.m2 = self.m2 + other.m2.to(dev) + delta.square() * (n_a * n_b / total.clamp(min=1))
        self.count = total
        self.fires = self.fires + other.fires.to(dev)
        self.max = torch.maximum(self.max, other.max.to(dev))
        self.min = torch.minimum(self.min, other.min.to(dev))
        self.top.absorb(other.top)
        self.random.absorb(other.random)
        self.quantile_pool.absorb(other.quantile_pool)
        if self.bottom is not None and other.bottom is not None:  # equal configs: both or neither have one
            self.bottom.absorb(other.bottom)

    @classmethod
    def from_state(cls, state: SamplerState, device: str | torch.device = "cpu") -> StreamingSampler:
        ctx_len, dtype = state.top.rows.shape[2], state.top.rows.dtype
        sampler = cls(state.n_features, ctx_len, state.config, device, dtype, state.first_feature)
        sampler.merge(state)
        return sampler

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
            bottom=_ordered_host(self.bottom) if self.bottom is not None else None,
        )


def _ordered_host(pool: Pool) -> SampleSet:
    ordered = pool.ordered()
    return _host(ordered.ids, ordered.maxes, ordered.rows)


def _host(ids: torch.Tensor, maxes: torch.Tensor, rows: torch.Tensor) -> SampleSet:
    return SampleSet(ids=ids.cpu().numpy(), maxes=maxes.float().cpu().numpy(), rows=rows.float().cpu().numpy())
