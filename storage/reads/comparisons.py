"""Per-feature best scores by feature index, for side-by-side comparisons of explainers and of score methods: the
rows of `queries.best_scores`, named as compare shows them."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from storage.core.in_lists import chunks
from storage.core.schema import Explanation, Feature
from storage.reads.queries import BestScore, FeatureQuery, best_scores


def best_by_index(session: Session, q: FeatureQuery) -> dict[int, BestScore]:
    """feature index -> its best score row under `q` (every feature `best_scores` ranks). Indices name features
    within one layer; with no model (kind, SAE) named, an index holds the best of every feature that has it."""
    rows = best_scores(session, q)
    index_of: dict[int, int] = {}
    for chunk in chunks(sorted({r[0] for r in rows})):
        index_of.update({feature_id: index for feature_id, index in session.execute(
            select(Feature.id, Feature.index).where(Feature.id.in_(chunk)))})
    out: dict[int, BestScore] = {}
    for row in rows:  # best first: an index keeps its first row
        out.setdefault(index_of[row[0]], row)
    return out


def explanation_texts(session: Session, explanation_ids: Sequence[int]) -> dict[int, str | None]:
    """explanation id -> its text."""
    return {i: text for chunk in chunks(sorted(set(explanation_ids)))
            for i, text in session.execute(select(Explanation.id, Explanation.text).where(Explanation.id.in_(chunk)))}
