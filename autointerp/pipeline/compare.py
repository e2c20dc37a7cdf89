"""Compare two explainers on the features both explained: per feature and summarised (mean, median,
wins, paired difference with a bootstrap confidence interval)."""

from __future__ import annotations

import statistics
from dataclasses import dataclass

import numpy as np
from scipy import stats

from storage.comparisons import best_scores_by_feature
from storage.db import Database


@dataclass
class Comparison:
    rows: list[dict]
    summary: dict


def _ci(diffs: list[float], seed: int = 0) -> tuple[float | None, float | None]:
    if len(diffs) < 2 or np.ptp(diffs) == 0:
        return None, None
    res = stats.bootstrap((np.asarray(diffs),), np.mean, n_resamples=2000, method="percentile",
                          rng=np.random.default_rng(seed))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def compare_explainers(db: Database, *, layer: int, a: str, b: str, model: str | None = None,
                       method: str = "ev_correlation", subset: str = "top_and_random") -> Comparison:
    with db.session() as session:
        sa = best_scores_by_feature(session, explainer=a, layer=layer, model=model, method=method, subset=subset)
        sb = best_scores_by_feature(session, explainer=b, layer=layer, model=model, method=method, subset=subset)
    rows = []
    for index in sorted(set(sa) | set(sb)):
        va, vb = sa.get(index, (None, None)), sb.get(index, (None, None))
        rows.append({"index": index, "score_a": va[0], "score_b": vb[0],
                     "diff": (vb[0] - va[0]) if va[0] is not None and vb[0] is not None else None,
                     "explanation_a": va[1], "explanation_b": vb[1]})
    paired = [r for r in rows if r["diff"] is not None]
    diffs = [r["diff"] for r in paired]

    def describe(values: list[float]) -> dict:
        return {"n": len(values), "mean": statistics.fmean(values) if values else None,
                "median": statistics.median(values) if values else None}

    low, high = _ci(diffs)
    summary = {
        "layer": layer, "method": method, "subset": subset, "a": a, "b": b,
        "score_a": describe([v for v, _ in sa.values()]), "score_b": describe([v for v, _ in sb.values()]),
        "paired": len(paired), "wins_a": sum(d < 0 for d in diffs), "wins_b": sum(d > 0 for d in diffs),
        "ties": sum(d == 0 for d in diffs), "mean_diff_b_minus_a": statistics.fmean(diffs) if diffs else None,
        "diff_ci95": [low, high],
    }
    return Comparison(rows, summary)
