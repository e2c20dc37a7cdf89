"""The index's catalog: every searchable explanation (status ok, with text) with the columns semantic-search
filters need (model, layer, kind, SAE, feature index, explainer) as numpy arrays, the filter evaluated on them,
and the bulk reads (ids, catalog rows, stored vectors) that build and refresh an index over millions of rows
through the driver's cursor."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from activations.vocab import OutcomeStatus
from storage.core.schema import Explanation, ExplanationEmbedding, Feature

FETCH_CHUNK = 5000  # vectors per database round trip


class Vocab:
    """Strings <-> small integer codes (kinds, SAE keys, explainers), so catalog columns are numpy arrays."""

    def __init__(self, words: Iterable[str] = ()) -> None:
        self.words: list[str] = []
        self.codes: dict[str, int] = {}
        for w in words:
            self.code(w)

    def code(self, word: str) -> int:
        c = self.codes.get(word)
        if c is None:
            c = self.codes[word] = len(self.words)
            self.words.append(word)
        return c

    def lookup(self, word: str) -> int:
        """The code of `word`, or -1 (matches nothing) when no catalog row has it."""
        return self.codes.get(word, -1)


CATALOG_COLUMNS = ("ids", "feature", "model", "layer", "kind", "sae", "findex", "explainer", "pos")
DTYPES = {"ids": np.int64, "feature": np.int64, "model": np.int32, "layer": np.int32, "kind": np.int32,
           "sae": np.int32, "findex": np.int32, "explainer": np.int32, "pos": np.int64}
VOCABS = ("kind", "sae", "explainer")


@dataclass
class Catalog:
    """One row per searchable explanation, by ascending explanation id."""

    ids: np.ndarray
    feature: np.ndarray
    model: np.ndarray
    layer: np.ndarray
    kind: np.ndarray
    sae: np.ndarray
    findex: np.ndarray
    explainer: np.ndarray
    pos: np.ndarray  # vector position in the index, -1 when the explanation has no vector there
    vocab: dict[str, Vocab] = field(default_factory=lambda: {name: Vocab() for name in VOCABS})

    @classmethod
    def empty(cls, vocab: dict[str, Vocab] | None = None) -> Catalog:
        arrays = {c: np.zeros(0, dtype=DTYPES[c]) for c in CATALOG_COLUMNS}
        return cls(**arrays, vocab=vocab or {name: Vocab() for name in VOCABS})

    def __len__(self) -> int:
        return len(self.ids)

    def arrays(self) -> dict[str, Any]:
        return {c: getattr(self, c) for c in CATALOG_COLUMNS}

    def extend(self, other: Catalog) -> None:
        """Append rows of `other` (higher ids, codes from this catalog's vocab)."""
        for c in CATALOG_COLUMNS:
            setattr(self, c, np.concatenate([getattr(self, c), getattr(other, c)]))

    def rows_of(self, explanation_ids: np.ndarray) -> np.ndarray:
        """Catalog row of each id, -1 where the id is not in the catalog."""
        if not len(self.ids):
            return np.full(len(explanation_ids), -1, dtype=np.int64)
        idx = np.minimum(np.searchsorted(self.ids, explanation_ids), len(self.ids) - 1)
        return np.where(self.ids[idx] == explanation_ids, idx, -1)


@dataclass
class CatalogFilter:
    """The filters a catalog can answer exactly (database ids and strings as stored)."""

    model_id: int | None = None
    layer: int | None = None
    kind: str | None = None
    sae: str | None = None  # sae_key ("" for MLP neurons)
    feature_indices: Sequence[int] | None = None
    explainer: str | None = None

    def mask(self, cat: Catalog) -> np.ndarray:
        mask = np.ones(len(cat), dtype=bool)
        if self.model_id is not None:
            mask &= cat.model == self.model_id
        if self.layer is not None:
            mask &= cat.layer == self.layer
        if self.kind is not None:
            mask &= cat.kind == cat.vocab["kind"].lookup(self.kind)
        if self.sae is not None:
            mask &= cat.sae == cat.vocab["sae"].lookup(self.sae)
        if self.explainer is not None:
            mask &= cat.explainer == cat.vocab["explainer"].lookup(self.explainer)
        if self.feature_indices is not None:
            mask &= np.isin(cat.findex, np.asarray(list(self.feature_indices), dtype=np.int32))
        return mask


def searchable_conds() -> list[Any]:
    return [Explanation.status == OutcomeStatus.OK.value, Explanation.text.is_not(None)]


def catalog_from_db(session: Session, *, after: int, upto: int, vocab: dict[str, Vocab],
                    with_vectors: str | None = None) -> tuple[Catalog, dict[int, bytes]]:
    """Searchable explanations with after < id <= upto. With `with_vectors=<embedder>`, also their stored vectors
    (explanation id -> bytes) for that embedder."""
    columns: list[Any] = [Explanation.id, Explanation.feature_id, Feature.model_id, Feature.layer, Feature.kind,
                          Feature.sae_key, Feature.index, Explanation.explainer]
    stmt = select(*columns).join(Feature, Feature.id == Explanation.feature_id)
    if with_vectors is not None:
        stmt = stmt.add_columns(ExplanationEmbedding.vector).outerjoin(
            ExplanationEmbedding,
            (ExplanationEmbedding.explanation_id == Explanation.id) & (ExplanationEmbedding.embedder == with_vectors),
        )
    stmt = stmt.where(Explanation.id > after, Explanation.id <= upto, *searchable_conds()).order_by(Explanation.id)
    parts: dict[str, list[np.ndarray]] = {c: [] for c in CATALOG_COLUMNS if c != "pos"}
    vectors: dict[int, bytes] = {}
    for rows in raw_rows(session, stmt, 100_000):
        cols = list(zip(*rows))
        for name, i in (("ids", 0), ("feature", 1), ("model", 2), ("layer", 3), ("findex", 6)):
            parts[name].append(np.asarray(cols[i], dtype=DTYPES[name]))
        for name, i in (("kind", 4), ("sae", 5), ("explainer", 7)):
            parts[name].append(_encode(vocab[name], cols[i]))
        if with_vectors is not None:
            vectors.update((eid, vec) for eid, vec in zip(cols[0], cols[8]) if vec is not None)
    arrays = {c: np.concatenate(v) if v else np.zeros(0, dtype=DTYPES[c]) for c, v in parts.items()}
    arrays["pos"] = np.full(len(arrays["ids"]), -1, dtype=np.int64)
    return Catalog(**arrays, vocab=vocab), vectors


def _encode(vocab: Vocab, values: Sequence[str | None]) -> np.ndarray:
    for word in set(values):
        vocab.code(word or "")
    codes = vocab.codes
    return np.fromiter((codes[v or ""] for v in values), dtype=np.int32, count=len(values))


def searchable_ids(session: Session, upto: int) -> np.ndarray:
    """Sorted ids of the searchable explanations up to `upto`."""
    stmt = select(Explanation.id).where(Explanation.id <= upto, *searchable_conds()).order_by(Explanation.id)
    return id_array(session, stmt)


def embedded_ids(session: Session, embedder: str, upto: int) -> np.ndarray:
    """Sorted explanation ids that have a stored vector for `embedder`."""
    stmt = select(ExplanationEmbedding.explanation_id).where(
        ExplanationEmbedding.embedder == embedder, ExplanationEmbedding.explanation_id <= upto
    )
    ids = id_array(session, stmt)
    ids.sort()
    return ids


def id_array(session: Session, stmt: Any) -> np.ndarray:
    """The first column of `stmt`'s rows as int64 (through the driver's cursor: fast for millions)."""
    parts = [np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
             for rows in raw_rows(session, stmt, 200_000)]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


def raw_rows(session: Session, stmt: Any, size: int) -> Iterator[Sequence[Any]]:
    """Chunks of plain tuples from the driver's cursor, in the session's transaction. For the million-row scans
    here: SQLAlchemy's row objects cost more than the database's own work. The statement's bound values must be
    plain ints and strings (no type processing happens)."""
    conn = session.connection()
    compiled = stmt.compile(dialect=conn.dialect, compile_kwargs={"render_postcompile": True})
    params: Any = compiled.params
    if compiled.positiontup is not None:
        params = tuple(params[name] for name in compiled.positiontup)
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(str(compiled), params)
        while rows := cursor.fetchmany(size):
            yield rows
    finally:
        cursor.close()


def as_matrix(blobs: Sequence[bytes], embedder: str, dim: int | None) -> np.ndarray:
    if not blobs:
        return np.zeros((0, dim or 0), dtype=np.float32)
    sizes = {len(b) for b in blobs}
    if len(sizes) != 1:
        raise ValueError(f"stored {embedder!r} vectors have different dimensions ({sorted(s // 4 for s in sizes)})")
    n_dim = sizes.pop() // 4
    if dim is not None and n_dim != dim:
        raise ValueError(f"stored {embedder!r} vectors have {n_dim} dimensions but the index has {dim}")
    return np.frombuffer(b"".join(blobs), dtype=np.float32).reshape(len(blobs), n_dim)


def fetch_vectors(session: Session, embedder: str, ids: np.ndarray, dim: int | None = None,
                  chunk: int = FETCH_CHUNK) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(ids, float32 matrix) chunks of the stored vectors of `ids` (sorted); ids without a vector are skipped.
    Dense runs of ids are read as one range of the primary key, sparse ones by an IN list."""
    for start in range(0, len(ids), chunk):
        part = ids[start:start + chunk]
        stmt = select(ExplanationEmbedding.explanation_id, ExplanationEmbedding.vector).where(
            ExplanationEmbedding.embedder == embedder)
        lo, hi = int(part[0]), int(part[-1])
        if hi - lo + 1 <= 2 * len(part):
            stmt = stmt.where(ExplanationEmbedding.explanation_id.between(lo, hi))
        else:
            stmt = stmt.where(ExplanationEmbedding.explanation_id.in_([int(i) for i in part]))
        rows = [r for chunk in raw_rows(session, stmt.order_by(ExplanationEmbedding.explanation_id), chunk)
                for r in chunk]
        got = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        keep = np.isin(got, part, assume_unique=True)
        matrix = as_matrix([r[1] for r, k in zip(rows, keep) if k], embedder, dim)
        dim = dim or (matrix.shape[1] if len(matrix) else None)
        yield got[keep], matrix
