"""Pooled scores of simulated vs real activations, exactly as DESIGN.md (and OpenAI's method) define them.

All three headline scores pool every token of every scored record into one vector before computing, so a
record with many tokens weighs more than a short one, and the result differs from the mean of per-record
scores. An undefined score (constant input, no tokens) is a `ScoreValue` with `value=None` and a reason —
never 0 — because 0 is a real, meaningful score.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import stats

from activations.vocab import ScoreMethod, ScoreRole

Records = Sequence[Sequence[float]]


@dataclass(frozen=True)
class ScoreValue:
    """One score: its value, or None with the reason it is undefined, plus what it was computed over."""

    method: str  # a ScoreMethod, or a classification scorer's method (e.g. detection_auroc)
    value: float | None
    undefined_reason: str | None = None
    subset: str = "all"  # a ScoringSubset once score_records has pooled it; "all" for a bare metric call
    role: ScoreRole = ScoreRole.OWN  # shuffled: the sanity baseline (another feature's explanation)
    n_records: int = 0
    n_tokens: int = 0
    ci_low: float | None = None
    ci_high: float | None = None
    details: dict = field(default_factory=dict)


def pooled(real: Records, predicted: Records) -> tuple[np.ndarray, np.ndarray]:
    """Flatten both lists of records into two aligned float vectors, checking that they match."""
    if len(real) != len(predicted):
        raise ValueError(f"{len(real)} real records but {len(predicted)} predicted records; "
                         "pass one prediction per record")
    for i, (r, p) in enumerate(zip(real, predicted)):
        if len(r) != len(p):
            raise ValueError(f"record {i}: {len(r)} real activations but {len(p)} predicted; "
                             "they must align token by token")
    a = np.asarray([x for r in real for x in r], dtype=np.float64)
    s = np.asarray([x for p in predicted for x in p], dtype=np.float64)
    for name, v in (("real", a), ("predicted", s)):
        if v.size and not np.all(np.isfinite(v)):
            first_bad = int(np.argmin(np.isfinite(v)))
            raise ValueError(f"{name} activations contain NaN or infinity at flat index {first_bad}")
    return a, s


def _score(method: str, real: Records, predicted: Records,
           fn: Callable[[np.ndarray, np.ndarray], tuple[float | None, str | None]]) -> ScoreValue:
    a, s = pooled(real, predicted)
    if a.size == 0:
        return ScoreValue(method, None, "no tokens to score", n_records=len(real))
    value, reason = fn(a, s)
    return ScoreValue(method, value, reason, n_records=len(real), n_tokens=int(a.size))


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
    return float(stats.spearmanr(a, s).statistic), None


def score_ev_correlation(real: Records, predicted: Records) -> ScoreValue:
    """Pearson r over all tokens of all records pooled (OpenAI's ev_correlation_score)."""
    return _score(ScoreMethod.EV_CORRELATION, real, predicted, _pearson)


def score_rsquared(real: Records, predicted: Records) -> ScoreValue:
    """OpenAI's r²: 1 - mean((a-s)²) / mean(a²), pooled."""
    return _score(ScoreMethod.RSQUARED, real, predicted, _rsquared)


def score_absolute_dev_explained(real: Records, predicted: Records) -> ScoreValue:
    """1 - mean(|a-s|) / mean(|a|), pooled."""
    return _score(ScoreMethod.ABSOLUTE_DEV_EXPLAINED, real, predicted, _abs_dev)


def score_spearman(real: Records, predicted: Records) -> ScoreValue:
    """Spearman rank correlation over all tokens pooled (robust to the simulator's monotone miscalibration)."""
    return _score(ScoreMethod.SPEARMAN, real, predicted, _spearman)


def ev_correlation(real: Records, predicted: Records) -> float | None:
    return score_ev_correlation(real, predicted).value


def rsquared(real: Records, predicted: Records) -> float | None:
    return score_rsquared(real, predicted).value


def absolute_dev_explained(real: Records, predicted: Records) -> float | None:
    return score_absolute_dev_explained(real, predicted).value


def per_record_correlations(real: Records, predicted: Records) -> list[float | None]:
    """Pearson r of each record on its own; None for a record where it is undefined (constant input)."""
    pooled(real, predicted)  # validates shapes
    out: list[float | None] = []
    for r, p in zip(real, predicted):
        value = _pearson(np.asarray(r, dtype=np.float64), np.asarray(p, dtype=np.float64))[0] if len(r) else None
        out.append(value)
    return out


def score_mean_record_correlation(real: Records, predicted: Records) -> ScoreValue:
    """Mean of the defined per-record correlations (for comparison with the pooled score, not instead of it)."""
    values = [v for v in per_record_correlations(real, predicted) if v is not None]
    n_tokens = sum(len(r) for r in real)
    if not values:
        return ScoreValue(ScoreMethod.MEAN_RECORD_CORRELATION, None,
                          "no record has a defined correlation (all constant)", n_records=len(real), n_tokens=n_tokens)
    return ScoreValue(ScoreMethod.MEAN_RECORD_CORRELATION, float(math.fsum(values) / len(values)), n_records=len(real),
                      n_tokens=n_tokens, details={"n_defined": len(values)})
