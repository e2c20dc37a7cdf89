"""Semantic search over explanations: sentence embeddings stored per explanation, ranked by cosine similarity.

Embeddings are computed lazily — the first search embeds the candidate explanations that lack a vector for
the embedder and stores them, later searches only read. The caller supplies the embedding function, so this
module stays free of model loading (the service wires in a sentence-transformers model).
Candidates honour the same feature and score filters as `storage.queries.query_features`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from sqlalchemy import Select, and_, exists, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from activations.vocab import OutcomeStatus
from storage.queries import (
    FeatureQuery,
    all_feature_conds,
    describe_features,
    feature_filter,
    matching_explanation_ids,
    ranking_score_conds,
)
from storage.repository import current_explanations
from storage.schema import Explanation, ExplanationEmbedding, Feature, Score, SubjectModel

# texts -> (n, dim) float32 array of unit-length rows
EmbedFn = Callable[[Sequence[str]], np.ndarray]

EMBED_BATCH = 256


def _best_score(q: FeatureQuery) -> Any:
    """The explanation's best own score under the query's method/subset (and simulator), as a correlated subquery."""
    conds = [
        Score.explanation_id == Explanation.id, Score.feature_id == Explanation.feature_id, *ranking_score_conds(q),
    ]
    if q.simulator is not None:
        conds.append(Score.simulator == q.simulator)
    return select(func.max(Score.value)).where(*conds).scalar_subquery()


def _candidates(session: Session, q: FeatureQuery) -> Select | None:
    """(explanation id, feature id, best score) of the explanations the query allows; None if none can match."""
    ff = feature_filter(session, q)
    if ff is None:
        return None
    best = _best_score(q).label("best")
    conds = [Explanation.status == OutcomeStatus.OK, Explanation.text.is_not(None), *all_feature_conds(ff)]
    if q.explainer is not None:
        conds.append(Explanation.explainer == q.explainer)
    if q.search is not None:
        conds.append(Explanation.id.in_(matching_explanation_ids(session, q.search)))
    stmt = select(Explanation.id, Explanation.feature_id, best).join(Feature, Feature.id == Explanation.feature_id)
    stmt = stmt.where(and_(*conds))
    if q.min_score is not None or q.simulator is not None:
        # A score filter keeps only explanations that have such a score.
        stmt = stmt.where(best.is_not(None))
        if q.min_score is not None:
            stmt = stmt.where(best >= q.min_score)
    return stmt


def _insert_ignoring_duplicates(session: Session, rows: list[dict[str, Any]]) -> None:
    # Another request may embed the same explanation at the same time; the first write wins.
    dialect = session.get_bind().dialect.name
    insert = sqlite.insert if dialect == "sqlite" else postgresql.insert
    session.execute(insert(ExplanationEmbedding).on_conflict_do_nothing(), rows)


def ensure_embeddings(session: Session, candidates: Select, embedder: str, embed: EmbedFn) -> int:
    """Embed and store the candidate explanations that have no vector for `embedder`; returns how many."""
    ids = candidates.with_only_columns(Explanation.id).subquery()
    has_vector = exists().where(
        ExplanationEmbedding.explanation_id == Explanation.id, ExplanationEmbedding.embedder == embedder
    )
    rows = session.execute(
        select(Explanation.id, Explanation.text).where(Explanation.id.in_(select(ids.c.id)), ~has_vector)
    )
    missing = [(eid, text) for eid, text in rows if text is not None]  # a failed explanation has no text
    for start in range(0, len(missing), EMBED_BATCH):
        batch = missing[start:start + EMBED_BATCH]
        vectors = np.asarray(embed([text for _, text in batch]), dtype=np.float32)
        if vectors.shape[0] != len(batch):
            raise ValueError(f"embedder {embedder!r} returned {vectors.shape[0]} vectors for {len(batch)} texts")
        _insert_ignoring_duplicates(
            session,
            [
                {"explanation_id": eid, "embedder": embedder, "dim": int(vec.shape[0]), "vector": vec.tobytes()}
                for (eid, _), vec in zip(batch, vectors)
            ],
        )
    return len(missing)


def _ranked(
    session: Session, candidates: Select, embedder: str, query_vector: np.ndarray
) -> list[tuple[int, float | None, int, float]]:
    """(feature id, score, explanation id, similarity), one per feature (its most similar explanation), best first."""
    cand = candidates.subquery()
    rows = session.execute(
        select(cand.c.feature_id, cand.c.best, cand.c.id, ExplanationEmbedding.vector).join(
            ExplanationEmbedding,
            and_(ExplanationEmbedding.explanation_id == cand.c.id, ExplanationEmbedding.embedder == embedder),
        )
    ).all()
    if not rows:
        return []
    matrix = np.frombuffer(b"".join(r[3] for r in rows), dtype=np.float32).reshape(len(rows), -1)
    if matrix.shape[1] != query_vector.shape[0]:
        raise ValueError(
            f"stored {embedder!r} vectors have {matrix.shape[1]} dimensions but the query has {query_vector.shape[0]}"
        )
    sims = matrix @ query_vector
    best: dict[int, tuple[int, float | None, int, float]] = {}
    for (feature_id, score, explanation_id, _), sim in zip(rows, sims.tolist()):
        if feature_id not in best or sim > best[feature_id][3]:
            best[feature_id] = (feature_id, score, explanation_id, sim)
    return sorted(best.values(), key=lambda r: (-r[3], r[0]))


def semantic_search(
    session: Session, q: FeatureQuery, text: str, *, embedder: str, embed: EmbedFn,
    exclude_features: Sequence[int] = (),
) -> list[dict[str, Any]]:
    """Features whose explanations mean something close to `text`, most similar first, honouring every filter
    of `q` (its limit/offset page the result). Each result is a `query_features` dict plus `similarity`."""
    q.validate()
    if not text.strip():
        raise ValueError("semantic query text is empty")
    candidates = _candidates(session, q)
    if candidates is None:
        return []
    ensure_embeddings(session, candidates, embedder, embed)
    query_vector = np.asarray(embed([text]), dtype=np.float32)[0]
    excluded = set(exclude_features)
    ranked = [r for r in _ranked(session, candidates, embedder, query_vector) if r[0] not in excluded]
    page = ranked[q.offset:q.offset + q.limit]
    items = describe_features(session, [r[:3] for r in page], method=q.method, subset=q.subset)
    for item, row in zip(items, page):
        item["similarity"] = row[3]
        # The explanation shown is the one that matched, so its own score goes with it.
        item["score"] = row[1]
    return items


def similar_features(
    session: Session, feature_id: int, *, embedder: str, embed: EmbedFn, limit: int = 10,
) -> list[dict[str, Any]]:
    """Features of the same model whose explanations are closest to this feature's current explanation."""
    current = current_explanations(session, [feature_id]).get(feature_id)
    if current is None or current.text is None:
        return []
    model_name = session.scalar(
        select(SubjectModel.name).join(Feature, Feature.model_id == SubjectModel.id).where(Feature.id == feature_id)
    )
    q = FeatureQuery(model=model_name, limit=limit)
    return semantic_search(session, q, current.text, embedder=embedder, embed=embed, exclude_features=[feature_id])
