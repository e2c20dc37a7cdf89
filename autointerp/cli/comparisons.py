"""Compare two explainers on the features both explained: per feature and summarised (mean, median,
wins, paired difference with a bootstrap confidence interval). Compare score methods: the Spearman agreement
of every pair over the features that have both (do the scorers measure one thing?)."""

from __future__ import annotations

import statistics
from dataclasses import dataclass

import numpy as np
from scipy import stats

from activations.vocab import ScoreMethod, ScoringSubset
from storage.core.db import Database
from storage.reads.comparisons import best_by_index, explanation_texts
from storage.reads.queries import FeatureQuery, QueryError, check_method_subset, default_subset


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
                       method: str = ScoreMethod.EV_CORRELATION,
                       subset: str = ScoringSubset.TOP_AND_RANDOM) -> Comparison:
    with db.session() as session:
        best = {name: best_by_index(session, FeatureQuery(model=model, layer=layer, explainer=name, method=method,
                                                          subset=subset)) for name in (a, b)}
        texts = explanation_texts(session, [row[2] for rows in best.values() for row in rows.values()])
    # feature index -> (best score, the explanation text behind it), of each explainer
    sa, sb = ({index: (row[1], texts.get(row[2])) for index, row in best[name].items()} for name in (a, b))
    rows = []
    diffs: list[float] = []  # score b - score a, of the features both explained
    for index in sorted(set(sa) | set(sb)):
        score_a, explanation_a = sa.get(index, (None, None))
        score_b, explanation_b = sb.get(index, (None, None))
        diff = score_b - score_a if score_a is not None and score_b is not None else None
        if diff is not None:
            diffs.append(diff)
        rows.append({"index": index, "score_a": score_a, "score_b": score_b, "diff": diff,
                     "explanation_a": explanation_a, "explanation_b": explanation_b})

    def describe(values: list[float]) -> dict:
        return {"n": len(values), "mean": statistics.fmean(values) if values else None,
                "median": statistics.median(values) if values else None}

    low, high = _ci(diffs)
    summary = {
        "layer": layer, "method": method, "subset": subset, "a": a, "b": b,
        "score_a": describe([v for v, _ in sa.values()]), "score_b": describe([v for v, _ in sb.values()]),
        "paired": len(diffs), "wins_a": sum(d < 0 for d in diffs), "wins_b": sum(d > 0 for d in diffs),
        "ties": sum(d == 0 for d in diffs), "mean_diff_b_minus_a": statistics.fmean(diffs) if diffs else None,
        "diff_ci95": [low, high],
    }
    return Comparison(rows, summary)


def parse_method_list(spec: str) -> list[tuple[str, str]]:
    """`ev_correlation,detection_auroc:neighbours` -> (method, subset) pairs, each subset defaulting to the
    method's first."""
    out = []
    for part in (p.strip() for p in spec.split(",") if p.strip()):
        method, _, subset = part.partition(":")
        subset = subset or default_subset(method)
        check_method_subset(method, subset)
        out.append((method, subset))
    if len(out) < 2:
        raise QueryError(f"--methods needs at least two methods, comma-separated (got {spec!r}); e.g. "
                         "ev_correlation,detection_balanced_accuracy")
    return out


def compare_methods(db: Database, *, layer: int, methods: list[tuple[str, str]], model: str | None = None,
                    explainer: str | None = None) -> list[dict]:
    """One row per pair of methods: how many features have both, and the Spearman rank correlation of their
    per-feature best scores (None with fewer than 3 such features or a constant side)."""
    with db.session() as session:
        best = {m: {index: row[1] for index, row in best_by_index(session, FeatureQuery(
            model=model, layer=layer, explainer=explainer, method=m[0], subset=m[1])).items()} for m in methods}
    rows = []
    for i, a in enumerate(methods):
        for b in methods[i + 1:]:
            both = sorted(set(best[a]) & set(best[b]))
            xs, ys = [best[a][k] for k in both], [best[b][k] for k in both]
            rho = None
            if len(both) >= 3 and np.ptp(xs) > 0 and np.ptp(ys) > 0:
                rho = float(stats.spearmanr(xs, ys).statistic)
            rows.append({"method_a": f"{a[0]}:{a[1]}", "method_b": f"{b[0]}:{b[1]}", "n_features": len(both),
                         "spearman": rho})
    return rows
