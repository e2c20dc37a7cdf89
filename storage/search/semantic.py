"""Semantic search over explanations: sentence embeddings stored per explanation, ranked by cosine similarity.

Two ways to rank, one answer:
- exact: the candidates the filters allow come from SQL with their stored vectors, scored in numpy (streamed).
  Used when the filters leave at most `EXACT_LIMIT` explanations, and when there is no index.
- approximate: the ANN index of `storage.search.embedding_index` (pass `index_root`). Feature and explainer filters are
  evaluated on the index's catalog, score and keyword filters in SQL, and the allowed set goes to the index as a
  filter; the hits are then checked against the database with every filter and re-ranked by their stored
  vectors, so a deleted explanation or one that no longer matches is never returned. The search fetches more hits
  until it has enough features.

Embedding: vectors missing among the candidates are computed inline when there are at most `LAZY_EMBED_LIMIT`
of them (storage.search.embedding_store; the caller supplies the embedding function, so storage stays free of
model loading). More than that is a job for `autointerp embed` (storage.search.embedding_jobs): the search covers what
is embedded and says how many it left out (`SemanticResult.not_embedded`), so the first search on a big
database is not an embedding job.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import Select, and_, null, select
from sqlalchemy.orm import Session

from activations.vocab import OutcomeStatus
from storage.core.repository import current_explanations
from storage.core.schema import Explanation, ExplanationEmbedding, Feature, Score, SubjectModel
from storage.reads.queries import (
    FeatureFilter,
    FeatureQuery,
    ShownScore,
    all_feature_conds,
    best_scores,
    describe_features,
    feature_filter,
    filtered_score_conds,
    matching_explanation_ids,
    per_explanation_score_conds,
)
from storage.search import embedding_index as ann
from storage.search import embedding_index_update as ann_update
from storage.search.embedding_catalog import FETCH_CHUNK, CatalogFilter, as_matrix, fetch_vectors, id_array
from storage.search.embedding_store import EmbedFn, embed_and_store, embed_texts, ensure_embeddings

log = logging.getLogger(__name__)

EXACT_LIMIT = 4096  # at most this many candidate explanations: exact search, no index needed
LAZY_EMBED_LIMIT = 300  # missing vectors a search computes inline; beyond, `autointerp embed` does
MAX_ANN_K = 200_000  # the most hits one approximate search asks for before settling for what it has

Ranked = tuple[int, float | None, int, float]  # (feature id, score, explanation id, similarity)


@dataclass
class SemanticResult:
    items: list[dict[str, Any]]  # `query_features` dicts plus `similarity`, most similar first
    not_embedded: int = 0  # explanations the filters allow that were left out: no vector (in the index) yet
    mode: str = "exact"  # exact | ann
    searched: int = 0  # explanations whose vectors took part
    notes: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------------------------
# Candidates and stored vectors


def _explanation_conds(session: Session, q: FeatureQuery) -> list[Any]:
    """Conditions on an explanation row, other than its feature's: searchable, explainer, keyword search, and the
    score filters (an explanation passes when it has an own score of at least min_score; with a simulator, one
    from that simulator)."""
    conds: list[Any] = [Explanation.status == OutcomeStatus.OK, Explanation.text.is_not(None)]
    if q.explainer is not None:
        conds.append(Explanation.explainer == q.explainer)
    if q.search is not None:
        conds.append(Explanation.id.in_(matching_explanation_ids(session, q.search)))
    if q.min_score is not None or q.simulator is not None:
        score = [Score.explanation_id == Explanation.id, Score.feature_id == Explanation.feature_id,
                 *per_explanation_score_conds(q)]
        if q.min_score is not None:
            score.append(Score.value >= q.min_score)
        conds.append(select(Score.id).where(*score).exists())
    return conds


def _candidates(session: Session, q: FeatureQuery) -> Select | None:
    """(explanation id, feature id) of the explanations the query allows, found from their features; None if
    none can match."""
    ff = feature_filter(session, q)
    if ff is None:
        return None
    return (select(Explanation.id, Explanation.feature_id).join(Feature, Feature.id == Explanation.feature_id)
            .where(*all_feature_conds(ff), *_explanation_conds(session, q)))


def _allowed_among(session: Session, q: FeatureQuery, explanation_ids: Sequence[int]) -> Select | None:
    """The same as `_candidates`, for a given list of explanations: looked up by id, features checked per row."""
    ff = feature_filter(session, q)
    if ff is None:
        return None
    feature_ok = select(Feature.id).where(Feature.id == Explanation.feature_id, *all_feature_conds(ff)).exists()
    return select(Explanation.id, Explanation.feature_id).where(
        Explanation.id.in_(list(explanation_ids)), feature_ok, *_explanation_conds(session, q))


def _rank_rows(rows: Sequence[Any], query_vector: np.ndarray, embedder: str,
               best: dict[int, Ranked]) -> None:
    """Fold (feature id, score, explanation id, vector bytes) rows into each feature's best match."""
    if not rows:
        return
    matrix = as_matrix([r[3] for r in rows], embedder, None)
    if matrix.shape[1] != query_vector.shape[0]:
        raise ValueError(
            f"stored {embedder!r} vectors have {matrix.shape[1]} dimensions but the query has {query_vector.shape[0]}"
        )
    sims = matrix @ query_vector
    for (feature_id, score, explanation_id, _), sim in zip(rows, sims.tolist()):
        if feature_id not in best or sim > best[feature_id][3]:
            best[feature_id] = (feature_id, score, explanation_id, sim)


def _ranked(session: Session, candidates: Select, embedder: str, query_vector: np.ndarray) -> tuple[list[Ranked], int]:
    """One row per feature (its most similar explanation), best first, and how many vectors were scored. Streams
    the vectors, so memory stays flat however many candidates there are."""
    cand = candidates.subquery()
    stmt = select(cand.c.feature_id, null(), cand.c.id, ExplanationEmbedding.vector).join(
        ExplanationEmbedding,
        and_(ExplanationEmbedding.explanation_id == cand.c.id, ExplanationEmbedding.embedder == embedder),
    )
    best: dict[int, Ranked] = {}
    n = 0
    for chunk in session.execute(stmt.execution_options(yield_per=20_000)).partitions():
        _rank_rows(chunk, query_vector, embedder, best)
        n += len(chunk)
    return sorted(best.values(), key=lambda r: (-r[3], r[0])), n


# ---------------------------------------------------------------------------------------------------------------
# Search


def _page(session: Session, q: FeatureQuery, ranked: list[Ranked], excluded: set[int]) -> list[dict[str, Any]]:
    page = [r for r in ranked if r[0] not in excluded][q.offset:q.offset + q.limit]
    # The explanation shown is the one that matched, so its own score goes with it.
    scores = {row[0]: row for row in best_scores(session, q, explanation_ids=[r[2] for r in page])}
    shown: list[ShownScore] = [scores.get(feature_id, (feature_id, None, explanation_id, False))
                               for feature_id, _, explanation_id, _ in page]
    items = describe_features(session, shown, method=q.method, subset=q.subset)
    for item, row in zip(items, page):
        item["similarity"] = row[3]
    return items


def semantic_search(
    session: Session, q: FeatureQuery, text: str, *, embedder: str, embed: EmbedFn,
    exclude_features: Sequence[int] = (), index_root: Path | None = None,
    exact_limit: int | None = None, lazy_limit: int | None = None,
) -> SemanticResult:
    """Features whose explanations mean something close to `text`, most similar first, honouring every filter
    of `q` (its limit/offset page the result). Each item is a `query_features` dict plus `similarity`.
    With `index_root`, candidate sets larger than `exact_limit` (default EXACT_LIMIT) are searched through the
    persisted ANN index there; at most `lazy_limit` (default LAZY_EMBED_LIMIT) missing vectors are computed."""
    exact_limit = EXACT_LIMIT if exact_limit is None else exact_limit
    lazy_limit = LAZY_EMBED_LIMIT if lazy_limit is None else lazy_limit
    q.validate()
    if not text.strip():
        raise ValueError("semantic query text is empty")
    ff = feature_filter(session, q)
    if ff is None:
        return SemanticResult([])
    query_vector = embed_texts(embed, [text], embedder)[0]
    excluded = set(exclude_features)
    index = _open(session, index_root, embedder)
    if index is not None:
        mask = _allowed_rows(session, q, ff, index)
        if int(mask.sum()) > exact_limit:
            return _ann_search(session, q, index, mask, query_vector, embed=embed, lazy_limit=lazy_limit,
                               excluded=excluded)
    candidates = _candidates(session, q)
    if candidates is None:
        return SemanticResult([])
    embedded, missing = ensure_embeddings(session, candidates, embedder, embed, limit=lazy_limit)
    ranked, searched = _ranked(session, candidates, embedder, query_vector)
    result = SemanticResult(_page(session, q, ranked, excluded), not_embedded=missing, mode="exact",
                            searched=searched)
    if missing:
        result.notes.append(_not_embedded_note(missing))
    if index is None and index_root is not None and searched + missing > exact_limit:
        _build_in_background(session, index_root, embedder)
        result.notes.append("the semantic index is being built; until then large searches are exact and slow")
    return result


def _not_embedded_note(n: int) -> str:
    note = (f"{n} matching explanations have no embedding (in the semantic index) yet and were not searched; "
            "run `autointerp embed`")
    log.warning("semantic search: %s", note)
    return note


def _open(session: Session, root: Path | None, embedder: str) -> ann.EmbeddingIndex | None:
    if root is None:
        return None
    try:
        index = ann.open_index(root, embedder)
    except ann.IndexCorrupt as exc:
        log.warning("semantic index for %r is unusable (%s); rebuilding it in the background", embedder, exc)
        _build_in_background(session, root, embedder)
        return None
    if index is not None:
        ann.refresh(session, index)
    return index


def catalog_filter(q: FeatureQuery, ff: FeatureFilter) -> CatalogFilter:
    return CatalogFilter(model_id=ff.model_id, layer=q.layer, kind=q.kind, sae=q.sae,
                             feature_indices=q.feature_indices, explainer=q.explainer)


def _score_filtered_ids(session: Session, q: FeatureQuery, ff: FeatureFilter) -> Select:
    """Explanations with an own score under the query's method/subset (and simulator) of at least min_score: the
    score filters of `_candidates`, as one walk of the score index."""
    return select(Score.explanation_id).where(*filtered_score_conds(q, ff.model_id))


def _allowed_rows(session: Session, q: FeatureQuery, ff: FeatureFilter, index: ann.EmbeddingIndex) -> np.ndarray:
    """Catalog rows the query allows: feature and explainer filters on the catalog, score and keyword filters
    from SQL. Exact but for explanations deleted since: the hits are checked against the database anyway."""
    dynamic: list[Select] = []
    if q.min_score is not None or q.simulator is not None:
        dynamic.append(_score_filtered_ids(session, q, ff))
    if q.search is not None:
        dynamic.append(matching_explanation_ids(session, q.search))
    id_sets = [np.unique(id_array(session, stmt)) for stmt in dynamic]
    with index.lock:  # the catalog grows under this lock
        mask = catalog_filter(q, ff).mask(index.catalog)
        for ids in id_sets:
            mask &= np.isin(index.catalog.ids, ids, assume_unique=True)
    return mask


def _index_rows(session: Session, index: ann.EmbeddingIndex, rows: np.ndarray, embed: EmbedFn) -> None:
    """Give these catalog rows vectors in the index: stored ones from the database, the rest embedded now."""
    ids = index.catalog.ids[rows]
    found = [(i, m) for i, m in fetch_vectors(session, index.embedder, ids) if len(i)]
    have = np.concatenate([i for i, _ in found]) if found else np.zeros(0, dtype=np.int64)
    for got_ids, matrix in found:
        index.add_rows(index.catalog.rows_of(got_ids), matrix)
    todo = [int(i) for i in np.setdiff1d(ids, have)]
    if todo:
        texts = session.execute(select(Explanation.id, Explanation.text).where(Explanation.id.in_(todo))).all()
        new_ids, vectors = embed_and_store(session, [(i, t) for i, t in texts if t is not None], index.embedder,
                                            embed)
        index.add_rows(index.catalog.rows_of(new_ids), vectors)


def _verified(session: Session, q: FeatureQuery, explanation_ids: np.ndarray, embedder: str,
              query_vector: np.ndarray) -> list[Ranked]:
    """The hits that still satisfy every filter, one per feature, re-ranked by their stored vectors."""
    best: dict[int, Ranked] = {}
    ids = [int(i) for i in explanation_ids]
    for start in range(0, len(ids), FETCH_CHUNK):
        allowed = _allowed_among(session, q, ids[start:start + FETCH_CHUNK])
        if allowed is None:
            return []
        chunk = allowed.subquery()
        rows = session.execute(
            select(chunk.c.feature_id, null(), chunk.c.id, ExplanationEmbedding.vector).join(
                ExplanationEmbedding,
                and_(ExplanationEmbedding.explanation_id == chunk.c.id, ExplanationEmbedding.embedder == embedder),
            )
        ).all()
        _rank_rows(rows, query_vector, embedder, best)
    return sorted(best.values(), key=lambda r: (-r[3], r[0]))


def _ann_search(session: Session, q: FeatureQuery, index: ann.EmbeddingIndex, mask: np.ndarray,
                query_vector: np.ndarray, *, embed: EmbedFn, lazy_limit: int, excluded: set[int]) -> SemanticResult:
    with index.lock:
        unindexed = np.flatnonzero(mask & (index.catalog.pos[:len(mask)] < 0))
    not_embedded = 0
    if 0 < len(unindexed) <= lazy_limit:
        _index_rows(session, index, unindexed, embed)
    else:
        not_embedded = len(unindexed)
    with index.lock:
        n_searchable = int((mask & (index.catalog.pos[:len(mask)] >= 0)).sum())
    need = q.offset + q.limit
    k = min(n_searchable, max(64, 4 * (need + len(excluded))))
    ranked: list[Ranked] = []
    while k > 0:
        hits = index.search(query_vector, mask, k)
        ranked = [r for r in _verified(session, q, hits.explanation_ids, index.embedder, query_vector)
                  if r[0] not in excluded]
        if len(ranked) >= need or k >= min(n_searchable, MAX_ANN_K):
            break
        k = min(n_searchable, MAX_ANN_K, 4 * k)  # features with several explanations, hits gone since: fetch more
    result = SemanticResult(_page(session, q, ranked, set()), not_embedded=not_embedded, mode="ann",
                            searched=n_searchable)
    if not_embedded:
        result.notes.append(_not_embedded_note(not_embedded))
    return result


_building: set[tuple[Path, str]] = set()
_building_lock = threading.Lock()
build_threads: list[threading.Thread] = []  # for tests and orderly shutdown


def _build_in_background(session: Session, root: Path, embedder: str) -> None:
    """Build (or rebuild) the index in a daemon thread, once per process at a time; another process already
    building holds the file lock, and this build then finds the index up to date."""
    key = (root, embedder)
    with _building_lock:
        if key in _building:
            return
        _building.add(key)
    bind = session.get_bind()

    def build() -> None:
        try:
            with Session(bind) as own:
                report = ann_update.update_index(own, root, embedder)
            log.info("semantic index for %r built: %d vectors in %.1f s (%s)", embedder, report.vectors,
                     report.seconds, report.path)
        except Exception:
            log.exception("building the semantic index for %r failed", embedder)
        finally:
            with _building_lock:
                _building.discard(key)

    thread = threading.Thread(target=build, name=f"semantic-index-{embedder}", daemon=True)
    build_threads[:] = [t for t in build_threads if t.is_alive()] + [thread]
    thread.start()


def similar_features(
    session: Session, feature_id: int, *, embedder: str, embed: EmbedFn, limit: int = 10,
    index_root: Path | None = None,
) -> SemanticResult:
    """Features of the same model whose explanations are closest to this feature's current explanation."""
    current = current_explanations(session, [feature_id]).get(feature_id)
    if current is None or current.text is None:
        return SemanticResult([])
    model_name = session.scalar(
        select(SubjectModel.name).join(Feature, Feature.model_id == SubjectModel.id).where(Feature.id == feature_id)
    )
    q = FeatureQuery(model=model_name, limit=limit)
    return semantic_search(session, q, current.text, embedder=embedder, embed=embed, exclude_features=[feature_id],
                           index_root=index_root)
