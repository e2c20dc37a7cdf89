"""Sampler states merge exactly: windows split over several samplers (in any batching and order), merged, give
the pools one sampler fed every window gives, and the statistics to 1e-6."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from activations.sampling import SamplerConfig, SamplerResult, StreamingSampler, hashed_keys, top_keys

F, CTX = 24, 6
CONFIG = SamplerConfig(top_k=4, n_random=3, n_quantiles=3, per_quantile=2, seed=7)


def _windows(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """n windows of activations [n, ctx, F] (sparse, with ties: quantised and many exact zeros) and validity."""
    gen = torch.Generator().manual_seed(seed)
    acts = torch.relu(torch.randn((n, CTX, F), generator=gen) - 0.8).mul(4).round().div(4)
    acts[:, :, 0] = 0.0  # a dead feature: every window ties at 0
    valid = torch.ones((n, CTX), dtype=torch.bool)
    valid[::5, 4:] = False  # some short tails
    return acts, valid


def _feed(sampler: StreamingSampler, acts: torch.Tensor, valid: torch.Tensor, ids: torch.Tensor, batch: int) -> None:
    for start in range(0, len(ids), batch):
        sl = slice(start, start + batch)
        sampler.update(acts[sl], valid[sl], ids[sl])


def _assert_same(a: SamplerResult, b: SamplerResult) -> None:
    for name in ("top", "random"):
        sa, sb = getattr(a, name), getattr(b, name)
        np.testing.assert_array_equal(sa.ids, sb.ids, err_msg=name)
        np.testing.assert_array_equal(sa.rows, sb.rows, err_msg=name)
    for qa, qb in zip(a.quantiles, b.quantiles, strict=True):
        np.testing.assert_array_equal(qa.ids, qb.ids)
    np.testing.assert_array_equal(a.quantile_boundaries, b.quantile_boundaries)
    assert a.n_tokens == b.n_tokens
    for name in ("max", "min", "firing_fraction"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    for name in ("mean", "variance"):  # per-batch sums are float32 on the device: equal to ~1e-7, not bit for bit
        np.testing.assert_allclose(getattr(a, name), getattr(b, name), rtol=1e-6, atol=1e-9, err_msg=name)


@pytest.mark.parametrize("n_shards", [2, 4])
def test_shards_merged_equal_one_pass(n_shards):
    acts, valid = _windows(203)
    ids = torch.arange(1000, 1203)
    one = StreamingSampler(F, CTX, CONFIG)
    _feed(one, acts, valid, ids, batch=16)

    bounds = np.linspace(0, len(ids), n_shards + 1).astype(int)
    states = []
    for shard, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:])):
        sampler = StreamingSampler(F, CTX, CONFIG)
        _feed(sampler, acts[lo:hi], valid[lo:hi], ids[lo:hi], batch=5 + shard)  # other batch sizes per shard
        states.append(pickle.loads(pickle.dumps(sampler.state())))  # as a Ray task or a checkpoint hands it over
    merged = StreamingSampler.from_state(states[-1])
    for state in reversed(states[:-1]):  # any order
        merged.merge(state)
    _assert_same(merged.result(), one.result())


def test_signed_shards_merge_their_bottom_pools_exactly():
    """A signed collection's bottom pool merges like the top pool: shards merged equal one pass."""
    acts, valid = _windows(120)
    acts = acts - torch.relu(torch.randn(acts.shape, generator=torch.Generator().manual_seed(3)) - 0.5)
    config = SamplerConfig(top_k=4, n_random=3, n_quantiles=3, per_quantile=2, seed=7, bottom_k=3)
    ids = torch.arange(120)
    one = StreamingSampler(F, CTX, config)
    _feed(one, acts, valid, ids, batch=16)
    shards = [StreamingSampler(F, CTX, config) for _ in range(2)]
    _feed(shards[0], acts[:50], valid[:50], ids[:50], batch=7)
    _feed(shards[1], acts[50:], valid[50:], ids[50:], batch=9)
    merged = StreamingSampler.from_state(pickle.loads(pickle.dumps(shards[1].state())))
    merged.merge(shards[0].state())
    a, b = merged.result(), one.result()
    assert a.bottom is not None and b.bottom is not None
    np.testing.assert_array_equal(a.bottom.ids, b.bottom.ids)
    np.testing.assert_array_equal(a.bottom.rows, b.bottom.rows)
    _assert_same(a, b)


def test_keys_are_a_function_of_seed_window_and_feature():
    salts = StreamingSampler(F, CTX, CONFIG).random_salts
    ids = torch.tensor([5, 2**40 + 5, 17])
    keys = hashed_keys(ids, salts)
    assert keys.shape == (F, 3) and (keys >= 0).all() and (keys < 2**62).all()
    assert torch.equal(hashed_keys(ids[[2, 0]], salts), keys[:, [2, 0]])  # batching changes nothing
    assert len(set(keys.flatten().tolist())) == keys.numel()  # no ties in practice
    other_seed = StreamingSampler(F, CTX, SamplerConfig(seed=8)).random_salts
    assert not torch.equal(hashed_keys(ids, other_seed), keys)


def test_top_keys_order_by_max_then_earlier_window():
    maxes = torch.tensor([[-3.0, -0.5, 0.0, 0.0, 2.5, 2.5, float("-inf")]])
    ids = torch.tensor([0, 1, 9, 3, 8, 4, 2])
    order = top_keys(maxes, ids).argsort(dim=1, descending=True)[0].tolist()
    assert [ids[i].item() for i in order] == [4, 8, 3, 9, 1, 0, 2]


def test_merging_another_collection_is_refused():
    sampler = StreamingSampler(F, CTX, CONFIG)
    with pytest.raises(ValueError, match="states of one collection only"):
        sampler.merge(StreamingSampler(F + 1, CTX, CONFIG).state())


def test_a_slice_of_the_features_samples_as_the_whole_layer():
    """A sampler over features 16..23 (first_feature=16, as an imported cache shard holds them) picks for each
    exactly what a sampler over the whole layer picks for it, and its state keeps the offset through a merge."""
    acts, valid = _windows(60)
    ids = torch.arange(60, dtype=torch.long)
    whole = StreamingSampler(F, CTX, CONFIG)
    _feed(whole, acts, valid, ids, 16)
    part = StreamingSampler(8, CTX, CONFIG, first_feature=16)
    _feed(part, acts[..., 16:], valid, ids, 16)
    full, sliced = whole.result(), StreamingSampler.from_state(pickle.loads(pickle.dumps(part.state()))).result()
    for name in ("top", "random"):
        np.testing.assert_array_equal(getattr(full, name).ids[16:], getattr(sliced, name).ids, err_msg=name)
    for qa, qb in zip(full.quantiles, sliced.quantiles, strict=True):
        np.testing.assert_array_equal(qa.ids[16:], qb.ids)
    with pytest.raises(ValueError, match="cannot merge"):
        StreamingSampler(8, CTX, CONFIG).merge(part.state())
