"""Explanation embeddings in the database: computing them with an embedder (checked, unit length), storing them
in bulk (the first vector written for an explanation wins), and filling in those a set of candidates lacks."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, cast

import numpy as np
from sqlalchemy import Select, Table, exists, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from storage.core.schema import Explanation, ExplanationEmbedding

# texts -> (n, dim) float32 array of unit-length rows
EmbedFn = Callable[[Sequence[str]], np.ndarray]

EMBED_BATCH = 256
EMBEDDINGS = cast(Table, ExplanationEmbedding.__table__)


def has_vector(embedder: str) -> Any:
    return exists().where(ExplanationEmbedding.explanation_id == Explanation.id,
                          ExplanationEmbedding.embedder == embedder)


def _insert_ignoring_duplicates(session: Session, rows: list[dict[str, Any]]) -> None:
    # Another request may embed the same explanation at the same time; the first write wins.
    conn = session.connection()
    insert = sqlite.insert if conn.dialect.name == "sqlite" else postgresql.insert
    conn.execute(insert(EMBEDDINGS).on_conflict_do_nothing(), rows)  # Core: no ORM bookkeeping per row


def store_embeddings(session: Session, embedder: str, explanation_ids: Sequence[int], vectors: np.ndarray) -> None:
    """Store one vector per explanation (the bulk path: one multi-row INSERT per batch); an explanation that
    already has a vector for `embedder` keeps it."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or vectors.shape[0] != len(explanation_ids):
        raise ValueError(f"{len(explanation_ids)} explanations but vectors of shape {vectors.shape}")
    dim = int(vectors.shape[1])
    for start in range(0, len(explanation_ids), 5000):
        _insert_ignoring_duplicates(session, [
            {"explanation_id": int(eid), "embedder": embedder, "dim": dim, "vector": vec.tobytes()}
            for eid, vec in zip(explanation_ids[start:start + 5000], vectors[start:start + 5000])
        ])


def embed_texts(embed: EmbedFn, texts: Sequence[str], embedder: str) -> np.ndarray:
    """The embedder's vectors for `texts`, checked and scaled to unit length (cosine = dot product)."""
    vectors = np.asarray(embed(list(texts)), dtype=np.float32)
    if vectors.ndim != 2 or vectors.shape[0] != len(texts):
        raise ValueError(f"embedder {embedder!r} returned shape {vectors.shape} for {len(texts)} texts")
    if not np.isfinite(vectors).all():
        raise ValueError(f"embedder {embedder!r} returned non-finite values")
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms > 0, norms, 1.0)


def embed_and_store(session: Session, pairs: Sequence[tuple[int, str]], embedder: str,
                    embed: EmbedFn) -> tuple[np.ndarray, np.ndarray]:
    """Embed (explanation id, text) pairs in batches and store them; returns the ids and their vectors."""
    ids: list[int] = []
    vectors: list[np.ndarray] = []
    for start in range(0, len(pairs), EMBED_BATCH):
        batch = pairs[start:start + EMBED_BATCH]
        matrix = embed_texts(embed, [text for _, text in batch], embedder)
        store_embeddings(session, embedder, [eid for eid, _ in batch], matrix)
        ids.extend(eid for eid, _ in batch)
        vectors.append(matrix)
    if not vectors:
        return np.zeros(0, dtype=np.int64), np.zeros((0, 0), dtype=np.float32)
    return np.asarray(ids, dtype=np.int64), np.concatenate(vectors)


def ensure_embeddings(session: Session, candidates: Select, embedder: str, embed: EmbedFn, *,
                      limit: int | None = None) -> tuple[int, int]:
    """Embed and store the candidate explanations that have no vector for `embedder` when there are at most
    `limit` of them (None: any number). Returns (embedded now, still missing)."""
    ids = candidates.with_only_columns(Explanation.id).subquery()
    missing_stmt = select(Explanation.id, Explanation.text).where(Explanation.id.in_(select(ids.c.id)),
                                                                   ~has_vector(embedder))
    rows = session.execute(missing_stmt if limit is None else missing_stmt.limit(limit + 1)).all()
    if limit is not None and len(rows) > limit:
        count = select(func.count()).select_from(missing_stmt.subquery())
        return 0, session.scalar(count) or 0
    missing = [(eid, text) for eid, text in rows if text is not None]  # a failed explanation has no text
    embed_and_store(session, missing, embedder, embed)
    return len(missing), 0
