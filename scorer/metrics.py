"""Pooled scores of simulated vs real activations, exactly as docs/architecture.md (and OpenAI's method) define them.

All three headline scores pool every token of every scored record into one vector before computing, so a
record with many tokens weighs more than a short one, and the result differs from the mean of per-record
scores. An undefined score (constant input, no tokens) is a `ScoreValue` with `value=None` and a reason —
never 0 — because 0 is a real, meaningful score.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import chain

import numpy as np

from activations.vocab import ScoreMethod, ScoreRole

Records = Sequence[Sequence[float]]


@dataclass(frozen=True)
class ScoreValue:
    """One score: its value, or None with the reason it is undefined, plus what it was computed over."""

    method: str  # a ScoreMethod, or a classification scorer's method (e.g. detection_auroc)
    value: float | None
    undefined_reason: str | None = None
    subset: str = "all"  # a ScoringSubset once score_records has pooled it; "all" for a bare metric call
    role: ScoreRole = ScoreRole.OWN  # shuffled: the shuffled baseline (another feature's explanation)
    n_records: int = 0
    n_tokens: int = 0
    ci_low: float | None = None
    ci_high: float | None = None
    details: dict = field(default_factory=dict)


@dataclass(frozen=True)
class PooledRecords:
    """Every token of every record in two aligned vectors, and where each record starts: the methods, the
    per-record correlations and the bootstrap all read one of these, built once per scored subset."""

    real: np.ndarray
    predicted: np.ndarray
    starts: np.ndarray  # index of each record's first token

    @property
    def n_records(self) -> int:
        return len(self.starts)

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.starts, append=self.real.size)

    def record_sums(self, *columns: np.ndarray) -> np.ndarray:
        """Per-record sums of each token-level column: [n_records, len(columns)]."""
        stacked = np.stack(columns)
        if (self.lengths > 0).all():
            return np.add.reduceat(stacked, self.starts, axis=1).T
        # reduceat reads an empty segment as its next token: sum record by record
        ends = np.append(self.starts[1:], self.real.size)
        return np.array([stacked[:, b:e].sum(axis=1) for b, e in zip(self.starts, ends)]).reshape(-1, len(columns))


def pool(real: Records, predicted: Records) -> PooledRecords:
    """Flatten both lists of records into two aligned float vectors, checking that they match."""
    if len(real) != len(predicted):
        raise ValueError(f"{len(real)} real records but {len(predicted)} predicted records; "
                         "pass one prediction per record")
    for i, (r, p) in enumerate(zip(real, predicted)):
        if len(r) != len(p):
            raise ValueError(f"record {i}: {len(r)} real activations but {len(p)} predicted; "
                             "they must align token by token")
    a = np.fromiter(chain.from_iterable(real), dtype=np.float64)
    s = np.fromiter(chain.from_iterable(predicted), dtype=np.float64)
    for name, v in (("real", a), ("predicted", s)):
        if v.size and not np.all(np.isfinite(v)):
            first_bad = int(np.argmin(np.isfinite(v)))
            raise ValueError(f"{name} activations contain NaN or infinity at flat index {first_bad}")
    starts = np.cumsum([0] + [len(r) for r in real[:-1]], dtype=np.intp) if len(real) else np.zeros(0, np.intp)
    return PooledRecords(a, s, starts)


def _score(method: str, p: PooledRecords,
           fn: Callable[[np.ndarray, np.ndarray], tuple[float | None, str | None]]) -> ScoreValue:
    a, s = p.real, p.predicted
    if a.size == 0:
        return ScoreValue(method, None, "no tokens to score", n_records=p.n_records)
    value, reason = fn(a, s)
    return ScoreValue(method, value, reason, n_records=p.n_records, n_tokens=int(a.size))


def _pearson(a: np.ndarray, s: np.ndarray) -> tuple[float | None, str | None]:
    if np.ptp(a) == 0:
        return None, f"real activations are constant ({a[0]:g} on all {a.size} tokens): correlation is undefined"
    if np.ptp(s) == 0:
        return None, f"predicted activations are constant ({s[0]:g} on all {s.size} tokens): correlation is undefined"
    return float(np.corrcoef(a, s)[0, 1]), None


def _rsquared(a: np.ndarray, s: np.ndarray) -> tuple[float | None, str | None]:
    denom = float(np.mean(a**2))
    if denom == 0:
        return None, "real activations are all zero: r² (1 - mean((a-s)²)/mean(a²)) is undefined"
    return 1.0 - float(np.mean((a - s) ** 2)) / denom, None


def _abs_dev(a: np.ndarray, s: np.ndarray) -> tuple[float | None, str | None]:
    denom = float(np.mean(np.abs(a)))
    if denom == 0:
        return None, "real activations are all zero: absolute deviation explained is undefined"
    return 1.0 - float(np.mean(np.abs(a - s))) / denom, None


def _spearman(a: np.ndarray, s: np.ndarray) -> tuple[float | None, str | None]:
    value, reason = _pearson(a, s)  # same constant-input cases are undefined
    if reason is not None:
        return None, reason
    # spearmanr's own computation (Pearson of average ranks) without its per-call argument handling
    return float(np.corrcoef(_average_ranks(a), _average_ranks(s))[0, 1]), None


def _average_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks, ties sharing their average rank (scipy.stats.rankdata's default, exactly: every rank is
    a whole or half number), in a few numpy calls."""
    order = np.argsort(x, kind="stable")
    ordered = x[order]
    first = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])  # where each run of equal values starts
    counts = np.diff(first, append=x.size)
    ranks = np.empty(x.size, dtype=np.float64)
    ranks[order] = np.repeat(first + (counts + 1) / 2, counts)
    return ranks


def _record_correlations(p: PooledRecords) -> list[float | None]:
    """Pearson r of each record on its own (as np.corrcoef computes it, clipped to [-1, 1]), all records at
    once; None where a record is empty or constant."""
    if not p.n_records:
        return []
    a, s, lengths = p.real, p.predicted, p.lengths
    present = lengths > 0
    if not present.all():  # an empty record has no correlation; the rest are computed on their own
        keep = np.flatnonzero(present)
        ends = p.starts + lengths
        sub = PooledRecords(np.concatenate([a[p.starts[i]:ends[i]] for i in keep]),
                            np.concatenate([s[p.starts[i]:ends[i]] for i in keep]),
                            np.cumsum(np.append(0, lengths[keep][:-1]), dtype=np.intp))
        values = iter(_record_correlations(sub))
        return [next(values) if ok else None for ok in present]
    starts = p.starts
    am = a - np.repeat(np.add.reduceat(a, starts) / lengths, lengths)
    sm = s - np.repeat(np.add.reduceat(s, starts) / lengths, lengths)
    cov, va, vs = p.record_sums(am * sm, am * am, sm * sm).T
    constant = ((np.maximum.reduceat(a, starts) == np.minimum.reduceat(a, starts))
                | (np.maximum.reduceat(s, starts) == np.minimum.reduceat(s, starts)))
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.clip(cov / np.sqrt(va) / np.sqrt(vs), -1.0, 1.0)
    return [None if c else float(v) for c, v in zip(constant, r)]


def _mean_record_correlation(p: PooledRecords) -> ScoreValue:
    values = [v for v in _record_correlations(p) if v is not None]
    if not values:
        return ScoreValue(ScoreMethod.MEAN_RECORD_CORRELATION, None,
                          "no record has a defined correlation (all constant)", n_records=p.n_records,
                          n_tokens=int(p.real.size))
    return ScoreValue(ScoreMethod.MEAN_RECORD_CORRELATION, float(math.fsum(values) / len(values)),
                      n_records=p.n_records, n_tokens=int(p.real.size), details={"n_defined": len(values)})


# Each method on pooled records (score_records pools a subset once and runs every method on it).
POOLED_METHODS: dict[ScoreMethod, Callable[[PooledRecords], ScoreValue]] = {
    ScoreMethod.EV_CORRELATION: lambda p: _score(ScoreMethod.EV_CORRELATION, p, _pearson),
    ScoreMethod.RSQUARED: lambda p: _score(ScoreMethod.RSQUARED, p, _rsquared),
    ScoreMethod.ABSOLUTE_DEV_EXPLAINED: lambda p: _score(ScoreMethod.ABSOLUTE_DEV_EXPLAINED, p, _abs_dev),
    ScoreMethod.SPEARMAN: lambda p: _score(ScoreMethod.SPEARMAN, p, _spearman),
    ScoreMethod.MEAN_RECORD_CORRELATION: _mean_record_correlation,
}


def score_ev_correlation(real: Records, predicted: Records) -> ScoreValue:
    """Pearson r over all tokens of all records pooled (OpenAI's ev_correlation_score)."""
    return POOLED_METHODS[ScoreMethod.EV_CORRELATION](pool(real, predicted))


def score_rsquared(real: Records, predicted: Records) -> ScoreValue:
    """OpenAI's r²: 1 - mean((a-s)²) / mean(a²), pooled."""
    return POOLED_METHODS[ScoreMethod.RSQUARED](pool(real, predicted))


def score_absolute_dev_explained(real: Records, predicted: Records) -> ScoreValue:
    """1 - mean(|a-s|) / mean(|a|), pooled."""
    return POOLED_METHODS[ScoreMethod.ABSOLUTE_DEV_EXPLAINED](pool(real, predicted))


def score_spearman(real: Records, predicted: Records) -> ScoreValue:
    """Spearman rank correlation over all tokens pooled (robust to the simulator's monotone miscalibration)."""
    return POOLED_METHODS[ScoreMethod.SPEARMAN](pool(real, predicted))


def ev_correlation(real: Records, predicted: Records) -> float | None:
    return score_ev_correlation(real, predicted).value


def rsquared(real: Records, predicted: Records) -> float | None:
    return score_rsquared(real, predicted).value


def absolute_dev_explained(real: Records, predicted: Records) -> float | None:
    return score_absolute_dev_explained(real, predicted).value


def per_record_correlations(real: Records, predicted: Records) -> list[float | None]:
    """Pearson r of each record on its own; None for a record where it is undefined (constant input)."""
    return _record_correlations(pool(real, predicted))


def score_mean_record_correlation(real: Records, predicted: Records) -> ScoreValue:
    """Mean of the defined per-record correlations (for comparison with the pooled score, not instead of it)."""
    return _mean_record_correlation(pool(real, predicted))
