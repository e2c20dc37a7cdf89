"""The score set of one simulation: each method on the top-and-random and random-only subsets of the scored
records, ev_correlation on each quantile bin pooled with the random records (subset `quantile:<i>`), with a
seeded bootstrap confidence interval over records; the same set scores the shuffled baseline (a simulation of
another feature's explanation) with role="shuffled"."""

from __future__ import annotations

import zlib
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Generic, TypeVar

import numpy as np

from activations.vocab import SampleKind, ScoreMethod, ScoreRole, ScoringSubset
from scorer.metrics import (
    POOLED_METHODS,
    PooledRecords,
    ScoreValue,
    pool,
    score_absolute_dev_explained,
    score_ev_correlation,
    score_mean_record_correlation,
    score_rsquared,
    score_spearman,
)

# Which sample kinds each stored subset pools (OpenAI scored "top and random" and "random only"). The "top" of
# top_and_random is the explained side's: a negative explanation's scored set holds bottom records instead of top
# ones (scorer.scored_set.scored_samples), so one subset name serves both sides.
SUBSETS: dict[ScoringSubset, tuple[SampleKind, ...]] = {
    ScoringSubset.TOP_AND_RANDOM: (SampleKind.TOP, SampleKind.BOTTOM, SampleKind.RANDOM),
    ScoringSubset.RANDOM_ONLY: (SampleKind.RANDOM,),
}
METHODS: dict[ScoreMethod, Callable[..., ScoreValue]] = {
    ScoreMethod.EV_CORRELATION: score_ev_correlation,
    ScoreMethod.RSQUARED: score_rsquared,
    ScoreMethod.ABSOLUTE_DEV_EXPLAINED: score_absolute_dev_explained,
    ScoreMethod.SPEARMAN: score_spearman,
    ScoreMethod.MEAN_RECORD_CORRELATION: score_mean_record_correlation,
}
# With a linear calibration fitted on the valid split (simulator.calibration), the methods that compare magnitudes
# are stored again under their own names; correlation and rank scores are unchanged by it, so not duplicated.
CALIBRATED_METHODS: dict[ScoreMethod, ScoreMethod] = {
    ScoreMethod.RSQUARED_CALIBRATED: ScoreMethod.RSQUARED,
    ScoreMethod.ABSOLUTE_DEV_EXPLAINED_CALIBRATED: ScoreMethod.ABSOLUTE_DEV_EXPLAINED,
}
# Methods also stored per quantile bin (subset `quantile:<i>`: that bin's records pooled with the random ones).
QUANTILE_METHODS: tuple[ScoreMethod, ...] = (ScoreMethod.EV_CORRELATION,)
# Methods with a bootstrap confidence interval (their pooled sums are additive over records).
_BOOTSTRAPPED = (ScoreMethod.EV_CORRELATION, ScoreMethod.RSQUARED, ScoreMethod.ABSOLUTE_DEV_EXPLAINED)


@dataclass(frozen=True)
class ScoredRecord:
    """One record's real activations next to its simulated ones, tagged with how it was sampled."""

    sample: str  # top | random | quantile:<i> (SampleKind)
    real: Sequence[float]
    predicted: Sequence[float]


def _sums(p: PooledRecords) -> np.ndarray:
    """Per-record sufficient statistics, so a bootstrap resample is a sum of rows, not a re-pooling."""
    a, s = p.real, p.predicted
    diff = a - s
    return p.record_sums(np.ones_like(a), a, s, a * a, s * s, a * s, diff * diff, np.abs(diff), np.abs(a))


def _from_sums(method: str, t: np.ndarray) -> np.ndarray:
    n, sa, ss, saa, sss, sas, sqerr, abserr, absa = np.moveaxis(t, -1, 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        if method == ScoreMethod.EV_CORRELATION:
            cov, va, vs = sas - sa * ss / n, saa - sa * sa / n, sss - ss * ss / n
            out = cov / np.sqrt(va * vs)
            return np.where((va > 1e-12 * np.maximum(saa, 1)) & (vs > 1e-12 * np.maximum(sss, 1)), out, np.nan)
        if method == ScoreMethod.RSQUARED:
            return np.where(saa > 0, 1 - sqerr / saa, np.nan)
        if method == ScoreMethod.ABSOLUTE_DEV_EXPLAINED:
            return np.where(absa > 0, 1 - abserr / absa, np.nan)
    raise ValueError(f"no bootstrap for method {method!r}")


def bootstrap_cis(real: Sequence[Sequence[float]], predicted: Sequence[Sequence[float]], methods: Sequence[str], *,
                  n_resamples: int = 1000, confidence: float = 0.95,
                  seed: int = 0) -> dict[str, tuple[float | None, float | None]]:
    """Percentile bootstrap CIs of pooled scores, resampling whole records (tokens within a record are not
    independent); every method reads the same resamples, each a sum of per-record rows. (None, None) for a
    method when there are fewer than 2 records or any resample leaves it undefined."""
    return _bootstrap_pooled(pool(real, predicted), methods, n_resamples=n_resamples, confidence=confidence,
                             seed=seed)


@lru_cache(maxsize=64)
def _resample_counts(n_records: int, n_resamples: int, seed: int) -> np.ndarray:
    """How often each seeded resample draws each record: [n_resamples, n_records]. The same for every score
    set of that many records, so drawn once."""
    picks = np.random.default_rng(seed).integers(0, n_records, size=(n_resamples, n_records))
    counts = np.bincount((picks + n_records * np.arange(n_resamples)[:, None]).ravel(),
                         minlength=n_resamples * n_records)
    counts = counts.reshape(n_resamples, n_records).astype(np.float64)
    counts.flags.writeable = False
    return counts


def _bootstrap_pooled(p: PooledRecords, methods: Sequence[str], *, n_resamples: int, confidence: float,
                      seed: int) -> dict[str, tuple[float | None, float | None]]:
    if p.n_records < 2:
        return {m: (None, None) for m in methods}
    resampled = _resample_counts(p.n_records, n_resamples, seed) @ _sums(p)  # [n_resamples, statistics]
    tail = 50 * (1 - confidence)
    out: dict[str, tuple[float | None, float | None]] = {m: (None, None) for m in methods}
    values: dict[str, np.ndarray] = {}
    for method in methods:
        per_resample = _from_sums(method, resampled)
        if np.isfinite(per_resample).all():  # a resample leaving the method undefined: no interval
            values[method] = per_resample
    if values:
        bounds = np.percentile(np.stack(list(values.values())), [tail, 100 - tail], axis=1)
        out.update({m: (float(low), float(high)) for m, low, high in zip(values, bounds[0], bounds[1])})
    return out


def bootstrap_ci(real: Sequence[Sequence[float]], predicted: Sequence[Sequence[float]],
                 method: str = ScoreMethod.EV_CORRELATION, *,
                 n_resamples: int = 1000, confidence: float = 0.95, seed: int = 0) -> tuple[float | None, float | None]:
    """The percentile bootstrap CI of one pooled score (see bootstrap_cis)."""
    return bootstrap_cis(real, predicted, [method], n_resamples=n_resamples, confidence=confidence, seed=seed)[method]


def score_records(records: Sequence[ScoredRecord], *, role: ScoreRole | str = ScoreRole.OWN,
                  methods: Sequence[str] = tuple(METHODS), n_resamples: int = 1000, seed: int = 0) -> list[ScoreValue]:
    """Every method on every subset (SUBSETS), and the QUANTILE_METHODS asked for on every quantile bin the
    records hold, each with its bootstrap CI where one is defined."""
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown scoring method(s) {unknown}; known: {sorted(m.value for m in METHODS)}")
    role = ScoreRole(role)
    chosen_methods = [ScoreMethod(m) for m in methods]
    out: list[ScoreValue] = []
    for subset, samples in SUBSETS.items():
        chosen = [r for r in records if r.sample in samples]
        if not chosen:
            out.extend(ScoreValue(m, None, f"no records sampled as {' or '.join(samples)} to score",
                                  subset=subset, role=role) for m in chosen_methods)
            continue
        out += _score_subset(chosen, subset, chosen_methods, role, n_resamples=n_resamples, seed=seed)
    per_quantile = [m for m in chosen_methods if m in QUANTILE_METHODS]
    randoms = [r for r in records if r.sample == SampleKind.RANDOM]
    for bin_name in quantile_bins(records) if per_quantile else []:
        chosen = [r for r in records if r.sample == bin_name] + randoms
        out += _score_subset(chosen, bin_name, per_quantile, role, n_resamples=n_resamples, seed=seed)
    return out


def quantile_bins(records: Sequence[ScoredRecord]) -> list[str]:
    """The `quantile:<i>` sample kinds among `records`, lowest bin first."""
    bins = {r.sample: b for r in records if (b := SampleKind.quantile_bin(r.sample)) is not None}
    return sorted(bins, key=bins.__getitem__)


def _score_subset(chosen: Sequence[ScoredRecord], subset: str, methods: Sequence[ScoreMethod], role: ScoreRole, *,
                  n_resamples: int, seed: int) -> list[ScoreValue]:
    """`methods` on the pooled `chosen` records, stored under `subset`."""
    pooled = pool([r.real for r in chosen], [r.predicted for r in chosen])
    defined = [m for m in methods if m in _BOOTSTRAPPED]
    cis = _bootstrap_pooled(pooled, defined, n_resamples=n_resamples, confidence=0.95, seed=seed) \
        if defined else {}
    out = []
    for method in methods:
        score = replace(POOLED_METHODS[method](pooled), subset=subset, role=role)
        if score.value is not None and method in cis:
            score = replace(score, ci_low=cis[method][0], ci_high=cis[method][1])
        out.append(score)
    return out


K = TypeVar("K", bound=Hashable)


class ShuffledPicker(Generic[K]):
    """Another feature's explanation for the shuffled baseline, chosen reproducibly (same seed and set → same
    choice). A layer's baselines pick from one set once per feature, so the set is ordered once here: ordering
    it per pick would make a whole layer's pass quadratic in its width."""

    def __init__(self, explanations: Mapping[K, str], seed: int = 0) -> None:
        self._keys = sorted(explanations, key=repr)
        self._position = {k: i for i, k in enumerate(self._keys)}
        self._explanations = explanations
        self._seed = seed

    def pick(self, own: K) -> tuple[K, str] | None:
        """A key other than `own` and its explanation; None when no other feature has one."""
        own_at = self._position.get(own)
        n_others = len(self._keys) - (own_at is not None)
        if not n_others:
            return None
        rng = np.random.default_rng([self._seed, zlib.crc32(repr(own).encode())])
        at = int(rng.integers(n_others))
        if own_at is not None and at >= own_at:  # the others in order are the keys without `own`
            at += 1
        key = self._keys[at]
        return key, self._explanations[key]


def score_calibrated(records: Sequence[ScoredRecord], *, role: ScoreRole | str = ScoreRole.OWN, details: dict,
                     n_resamples: int = 1000, seed: int = 0) -> list[ScoreValue]:
    """The calibrated methods on every subset, from records whose `predicted` values are already calibrated;
    `details` (the fitted line) is kept on each score."""
    raw = score_records(records, role=role, methods=tuple(CALIBRATED_METHODS.values()), n_resamples=n_resamples,
                        seed=seed)
    name_of = {raw_method: name for name, raw_method in CALIBRATED_METHODS.items()}
    return [replace(s, method=name_of[ScoreMethod(s.method)], details={**s.details, **details}) for s in raw]


def calibration_failed(reason: str, *, role: ScoreRole | str = ScoreRole.OWN) -> list[ScoreValue]:
    """Every calibrated method on every subset, undefined with the reason the calibration could not be fitted."""
    return [ScoreValue(method, None, reason, subset=subset, role=ScoreRole(role))
            for subset in SUBSETS for method in CALIBRATED_METHODS]
