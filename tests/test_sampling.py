"""The streaming sampler on synthetic tensors, checked exactly against numpy."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from activations.sampling import SamplerConfig, SamplerResult, StreamingSampler

CTX, F = 6, 40


def _data(seed: int = 0, n_batches: int = 5, batch: int = 7):
    """Batches of activations with ragged padding, a dead feature (0) and a sparse one (1)."""
    rng = np.random.default_rng(seed)
    batches = []
    next_id = 0
    for b in range(n_batches):
        size = batch - (b % 3)  # batches of different sizes exercise Chan's merge
        acts = rng.normal(size=(size, CTX, F)).astype(np.float32)
        acts[:, :, 0] = -np.abs(acts[:, :, 0])  # never fires
        acts[:, :, 1] = np.where(rng.random((size, CTX)) < 0.05, np.abs(acts[:, :, 1]) + 1, 0.0)
        lengths = rng.integers(2, CTX + 1, size=size)
        valid = np.arange(CTX)[None, :] < lengths[:, None]
        ids = np.arange(next_id, next_id + size)
        next_id += size
        batches.append((acts, valid, ids))
    return batches


def _run(batches, config: SamplerConfig) -> tuple[StreamingSampler, SamplerResult]:
    sampler = StreamingSampler(F, CTX, config)
    for acts, valid, ids in batches:
        sampler.update(torch.from_numpy(acts), torch.from_numpy(valid), torch.from_numpy(ids))
    return sampler, sampler.result()


def _flat(batches):
    acts = np.concatenate([a for a, _, _ in batches])
    valid = np.concatenate([v for _, v, _ in batches])
    return acts, valid


def test_statistics_match_numpy():
    batches = _data()
    _, res = _run(batches, SamplerConfig())
    acts, valid = _flat(batches)
    tokens = acts[valid]  # [n_tokens, F]
    assert res.n_tokens == valid.sum()
    np.testing.assert_allclose(res.max, tokens.max(0), rtol=1e-6)
    np.testing.assert_allclose(res.min, tokens.min(0), rtol=1e-6)
    np.testing.assert_allclose(res.mean, tokens.astype(np.float64).mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(res.variance, tokens.astype(np.float64).var(0), rtol=1e-5)
    np.testing.assert_allclose(res.firing_fraction, (tokens > 0).mean(0))
    assert res.firing_fraction[0] == 0.0


def test_top_k_is_exact():
    batches = _data()
    _, res = _run(batches, SamplerConfig(top_k=4))
    acts, valid = _flat(batches)
    window_max = np.where(valid[..., None], acts, -np.inf).max(1)  # [W, F]
    for f in range(F):
        # Ties (the sparse feature's zero windows) may resolve either way; the maxima may not.
        np.testing.assert_allclose(res.top.maxes[f], np.sort(window_max[:, f])[::-1][:4])
        ids = res.top.ids[f]
        assert len(set(ids)) == 4
        np.testing.assert_allclose(window_max[ids, f], res.top.maxes[f])
        np.testing.assert_array_equal(res.top.rows[f][valid[ids]], acts[ids, :, f][valid[ids]])


def test_bottom_k_is_exact_and_only_in_signed_collections():
    """bottom_k keeps each feature's windows with the lowest minimum, most negative first, rows as recorded; an
    unsigned sampler (the default) keeps no bottom pool at all."""
    batches = _data()
    _, unsigned = _run(batches, SamplerConfig(top_k=4))
    assert unsigned.bottom is None
    _, res = _run(batches, SamplerConfig(top_k=4, bottom_k=3))
    assert res.bottom is not None
    acts, valid = _flat(batches)
    window_min = np.where(valid[..., None], acts, np.inf).min(1)  # [W, F]
    for f in range(F):
        np.testing.assert_allclose(res.bottom.maxes[f], np.sort(window_min[:, f])[:3])
        ids = res.bottom.ids[f]
        assert len(set(ids)) == 3
        np.testing.assert_allclose(window_min[ids, f], res.bottom.maxes[f])
        np.testing.assert_array_equal(res.bottom.rows[f][valid[ids]], acts[ids, :, f][valid[ids]])
    np.testing.assert_array_equal(res.top.ids, unsigned.top.ids)  # the other samples are untouched


def test_random_sample_is_uniform_seeded_and_rows_match():
    batches = _data(n_batches=4)
    acts, valid = _flat(batches)
    n_windows = len(acts)
    _, res = _run(batches, SamplerConfig(n_random=5, seed=3))
    _, again = _run(batches, SamplerConfig(n_random=5, seed=3))
    _, other = _run(batches, SamplerConfig(n_random=5, seed=4))
    np.testing.assert_array_equal(res.random.ids, again.random.ids)
    assert not np.array_equal(res.random.ids, other.random.ids)
    for f in range(F):
        ids = res.random.ids[f]
        assert len(set(ids)) == 5 and ids.min() >= 0 and ids.max() < n_windows
        np.testing.assert_array_equal(res.random.rows[f][valid[ids]], acts[ids, :, f][valid[ids]])
    # Each window is in a feature's sample with probability 5 / n_windows; pooled over many seeds.
    counts = np.zeros(n_windows)
    for seed in range(25):
        _, r = _run(batches, SamplerConfig(n_random=5, seed=seed))
        counts += np.bincount(r.random.ids.ravel(), minlength=n_windows)
    freq = counts / (25 * F)
    np.testing.assert_allclose(freq, 5 / n_windows, atol=0.03)


def test_quantile_bins_exact_when_pool_holds_every_firing_window():
    batches = _data(n_batches=3)
    config = SamplerConfig(n_quantiles=4, per_quantile=3, quantile_pool_factor=10)  # pool 120 > windows
    _, res = _run(batches, config)
    acts, valid = _flat(batches)
    window_max = np.where(valid[..., None], acts, -np.inf).max(1)
    for f in range(F):
        firing = window_max[:, f][window_max[:, f] > 0]
        if len(firing) == 0:
            assert np.isnan(res.quantile_boundaries[f]).all()
            assert all((q.ids[f] == -1).all() for q in res.quantiles)
            continue
        bounds = np.quantile(firing, [0.25, 0.5, 0.75])
        np.testing.assert_allclose(res.quantile_boundaries[f], bounds, rtol=1e-5)
        edges = np.concatenate([[0.0], bounds, [np.inf]])
        for b, q in enumerate(res.quantiles):
            ids = q.ids[f][q.ids[f] >= 0]
            in_bin = ((firing > edges[b]) & (firing <= edges[b + 1])).sum()
            assert len(ids) == min(3, in_bin), f"feature {f} bin {b}"
            maxes = window_max[ids, f]
            assert ((maxes > edges[b] - 1e-6) & (maxes <= edges[b + 1] + 1e-6)).all()
            np.testing.assert_allclose(q.maxes[f][: len(ids)], maxes)


def test_width_mismatch_is_a_clear_error():
    sampler = StreamingSampler(3, CTX)
    with pytest.raises(ValueError, match="tracks 3 features"):
        sampler.update(torch.zeros(2, CTX, 4), torch.ones(2, CTX, dtype=torch.bool), torch.arange(2))


def _state_bytes(sampler: StreamingSampler) -> int:
    tensors = [v for v in vars(sampler).values() if isinstance(v, torch.Tensor)]
    tensors += [t for pool in (sampler.top, sampler.random, sampler.quantile_pool) for t in vars(pool).values()]
    return sum(t.nbytes for t in tensors)


def test_state_does_not_grow_with_tokens():
    sampler = StreamingSampler(F, CTX, SamplerConfig(top_k=3, n_random=2))
    batches = _data(n_batches=40)
    sizes = []
    for acts, valid, ids in batches:
        sampler.update(torch.from_numpy(acts), torch.from_numpy(valid), torch.from_numpy(ids))
        sizes.append(_state_bytes(sampler))
    assert sizes[0] > 0 and set(sizes) == {sizes[0]}
