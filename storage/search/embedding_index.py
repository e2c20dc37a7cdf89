"""The approximate-nearest-neighbour index behind semantic search at scale: faiss IVF over explanation
embeddings (vectors stored as float16), one per embedder, persisted next to the database.

The index keeps a *catalog*: every searchable explanation (status ok, with text) up to a high-water explanation
id, with the columns the filters need (model, layer, kind, SAE, feature index, explainer) and the position of its
vector in the index (-1 while it has none). A query's feature filters are evaluated on the catalog in numpy and
passed to faiss as a bitmap of allowed positions (`IDSelectorBitmap`), so the search returns the best matches
among the allowed vectors only; the number of inverted lists probed grows as the filter gets more selective.
The catalog is bookkeeping, not the truth: callers verify every hit against the database.

On disk, `<root>/<embedder slug>/` holds `CURRENT` (the name of the live generation) and generation directories
`g<N>/` with `index.faiss` (the IVF base), `delta.npy` (vectors added since the base was built, searched exactly;
merged into the base once past DELTA_MERGE), `catalog.npz` and `state.json`. A writer builds a whole new
generation under a file lock (hard-linking an unchanged base) and then swaps `CURRENT`, so readers never see a
half-written index; a generation that fails its checks (sizes, array shapes, counts) is reported as corrupt and
rebuilt. Readers memory-map the base read-only (instant to open, shared between processes); vectors they add
themselves (lazy embeddings, explanations newer than the catalog) join the delta in memory only.

Known limit: an explanation's feature and explainer are taken as fixed. SQLite may give a new explanation the id
of a deleted one (the highest); until the next rebuild its catalog row keeps the old feature's columns. Hits are
re-checked in SQL, so such a row can be missed by a filter but never returned wrongly.

The catalog and its bulk reads live in storage.search.embedding_catalog, and writing a generation from the database in
storage.search.embedding_index_update. This module takes the index directory as a parameter (`index_root` derives the
usual one) and never embeds text.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np
from sqlalchemy import func, select
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from storage.core.schema import Explanation
from storage.search.embedding_catalog import (
    CATALOG_COLUMNS,
    DTYPES,
    VOCABS,
    Catalog,
    Vocab,
    as_matrix,
    catalog_from_db,
    searchable_conds,
)

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
NPROBE_BASE = 48  # inverted lists probed for an unfiltered query
MIN_SCAN = 20_000  # vectors a query scans at least: small indexes are searched (nearly) exhaustively
REFRESH_VECTOR_LIMIT = 20_000  # newer explanations whose vectors a search folds in; beyond, `update_index` does

ProgressFn = Callable[[int, int, str], None]  # (done, total, phase)


class IndexCorrupt(RuntimeError):
    """A persisted index failed its checks; the message says which."""


def index_root(url: str, cache_dir: Path) -> Path | None:
    """Where a database's indexes live: `x.db.ann/` beside a SQLite file, else `<cache_dir>/ann/<hash of the URL
    without its password>/`. None for an in-memory SQLite database (nothing to persist next to)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if not parsed.database or parsed.database == ":memory:":
            return None
        return Path(parsed.database + ".ann")
    key = parsed._replace(password=None).render_as_string(hide_password=False)
    return cache_dir / "ann" / hashlib.sha256(key.encode()).hexdigest()[:16]


def embedder_dir(root: Path, embedder: str) -> Path:
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", embedder)[:60]
    return root / f"{slug}-{hashlib.sha256(embedder.encode()).hexdigest()[:8]}"


# ---------------------------------------------------------------------------------------------------------------
# The index


def nlist_for(n: int) -> int:
    # About sqrt(n) lists of ~sqrt(n) vectors; faiss wants >= 39 training points per list.
    return max(1, min(4096, int(np.sqrt(n)), n // 39))


def new_ivf(dim: int, n: int) -> Any:
    index = faiss.index_factory(dim, f"IVF{nlist_for(n)},SQfp16", faiss.METRIC_INNER_PRODUCT)
    faiss.extract_index_ivf(index).cp.min_points_per_centroid = 1  # a tiny index has few points: no warning
    return index


@dataclass
class SearchHits:
    explanation_ids: np.ndarray  # best first
    similarities: np.ndarray  # as the index computes them (float16 vectors): re-rank exactly before showing


class EmbeddingIndex:
    """A loaded index: the faiss base (memory-mapped, read-only), its catalog, and the in-memory delta.
    Thread-safe: one lock guards searches and additions."""

    def __init__(self, embedder: str, dim: int, base: Any, catalog: Catalog, high_water: int,
                 state: dict[str, Any], directory: Path | None = None, generation: str | None = None,
                 delta: np.ndarray | None = None) -> None:
        self.embedder = embedder
        self.dim = dim
        self.base = base  # faiss index or None (no vectors at build time)
        self.nb = int(base.ntotal) if base is not None else 0
        self.catalog = catalog
        self.high_water = high_water
        self.state = state
        self.directory = directory
        self.generation = generation
        # Vectors at positions nb, nb+1, ...: the persisted delta, then what this process added.
        self.delta = delta if delta is not None else np.zeros((0, dim), dtype=np.float32)
        self.lock = threading.RLock()
        self._row_of_pos: np.ndarray | None = None

    # -- bookkeeping

    @property
    def n_vectors(self) -> int:
        return int((self.catalog.pos >= 0).sum())

    def row_of_pos(self) -> np.ndarray:
        if self._row_of_pos is None:
            table = np.full(self.nb + len(self.delta), -1, dtype=np.int64)
            has = np.flatnonzero(self.catalog.pos >= 0)
            table[self.catalog.pos[has]] = has
            self._row_of_pos = table
        return self._row_of_pos

    def add_rows(self, rows: np.ndarray, vectors: np.ndarray) -> None:
        """Give catalog `rows` these vectors (in the delta; a row that had one is re-pointed to the new one)."""
        if not len(rows):
            return
        with self.lock:
            if self.dim == 0 and self.nb == 0 and not len(self.delta):
                self.dim = vectors.shape[1]  # an index written before any vector was stored
                self.delta = np.zeros((0, self.dim), dtype=np.float32)
            if vectors.shape[1] != self.dim:
                raise ValueError(f"{self.embedder!r} vectors have {vectors.shape[1]} dimensions but the index has "
                                 f"{self.dim}")
            start = self.nb + len(self.delta)
            self.delta = np.concatenate([self.delta, np.ascontiguousarray(vectors, dtype=np.float32)])
            self.catalog.pos[rows] = np.arange(start, start + len(rows))
            self._row_of_pos = None

    def append_catalog(self, extra: Catalog, vectors: dict[int, bytes], high_water: int) -> None:
        """Newer explanations (ids above the high-water mark), with whatever vectors they already have."""
        with self.lock:
            first = len(self.catalog)
            self.catalog.extend(extra)
            self.high_water = max(self.high_water, high_water)
            self._row_of_pos = None
            if vectors:
                ids = np.asarray(sorted(vectors), dtype=np.int64)
                matrix = as_matrix([vectors[int(i)] for i in ids], self.embedder, self.dim)
                rows = first + np.searchsorted(extra.ids, ids)
                self.add_rows(rows, matrix)

    # -- search

    def search(self, query: np.ndarray, allowed_rows: np.ndarray, k: int) -> SearchHits:
        """Up to `k` explanations among the catalog rows in `allowed_rows` (a boolean mask) that have vectors,
        most similar to the unit vector `query` first."""
        query = np.ascontiguousarray(query, dtype=np.float32).reshape(1, -1)
        if self.dim == 0:  # no vectors yet
            return SearchHits(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32))
        if query.shape[1] != self.dim:
            raise ValueError(f"the query has {query.shape[1]} dimensions but the {self.embedder!r} index has "
                             f"{self.dim}")
        with self.lock:
            if len(allowed_rows) < len(self.catalog):  # rows appended since the mask was made are not allowed
                allowed_rows = np.concatenate([allowed_rows, np.zeros(len(self.catalog) - len(allowed_rows), bool)])
            pos = self.catalog.pos[allowed_rows]
            pos = pos[pos >= 0]
            base_pos = pos[pos < self.nb]
            delta_pos = pos[pos >= self.nb] - self.nb
            found_pos: list[np.ndarray] = []
            found_sim: list[np.ndarray] = []
            if len(base_pos):
                sims, hits = self._search_base(query, base_pos, k)
                found_pos.append(hits)
                found_sim.append(sims)
            if len(delta_pos):
                sims = self.delta[delta_pos] @ query[0]
                top = np.argsort(-sims, kind="stable")[:k]
                found_pos.append(delta_pos[top] + self.nb)
                found_sim.append(sims[top])
            if not found_pos:
                return SearchHits(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32))
            all_pos = np.concatenate(found_pos)
            all_sim = np.concatenate(found_sim)
            order = np.argsort(-all_sim, kind="stable")[:k]
            rows = self.row_of_pos()[all_pos[order]]
            return SearchHits(self.catalog.ids[rows], all_sim[order])

    def _search_base(self, query: np.ndarray, base_pos: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        k = min(k, len(base_pos))
        selectivity = len(base_pos) / self.nb
        nlist = int(self.base.nlist)
        nprobe = max(NPROBE_BASE / np.sqrt(selectivity), nlist * MIN_SCAN / self.nb)
        params: dict[str, Any] = {"nprobe": int(min(nlist, np.ceil(nprobe)))}
        bitmap = None
        if len(base_pos) < self.nb:
            allowed = np.zeros(self.nb, dtype=bool)
            allowed[base_pos] = True
            bitmap = np.packbits(allowed, bitorder="little")
            params["sel"] = faiss.IDSelectorBitmap(self.nb, faiss.swig_ptr(bitmap))
        sims, hits = self.base.search(query, k, params=faiss.SearchParametersIVF(**params))
        keep = hits[0] >= 0  # -1: fewer than k allowed vectors in the probed lists
        return sims[0][keep], hits[0][keep]

    # -- persistence

    @classmethod
    def load(cls, directory: Path, embedder: str) -> EmbeddingIndex | None:
        """The live generation under `directory`, memory-mapped; None when there is none; IndexCorrupt when it
        fails its checks."""
        current = directory / "CURRENT"
        try:
            generation = current.read_text().strip()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise IndexCorrupt(f"cannot read {current}: {exc}") from None
        gen_dir = directory / generation
        try:
            state = json.loads((gen_dir / "state.json").read_text())
        except (OSError, ValueError) as exc:
            raise IndexCorrupt(f"{gen_dir}/state.json is unreadable: {exc}") from None
        if state.get("format") != FORMAT_VERSION or state.get("embedder") != embedder:
            raise IndexCorrupt(f"{gen_dir} holds format {state.get('format')} of embedder {state.get('embedder')!r}, "
                               f"not format {FORMAT_VERSION} of {embedder!r}")
        for name, size in state.get("files", {}).items():
            try:
                actual = (gen_dir / name).stat().st_size
            except OSError:
                raise IndexCorrupt(f"{gen_dir}/{name} is missing") from None
            if actual != size:
                raise IndexCorrupt(f"{gen_dir}/{name} has {actual} bytes, {size} were written")
        try:
            with np.load(gen_dir / "catalog.npz", allow_pickle=False) as data:
                arrays = {c: np.array(data[c], dtype=DTYPES[c]) for c in CATALOG_COLUMNS}
            vocab = {name: Vocab(state["vocab"][name]) for name in VOCABS}
            catalog = Catalog(**arrays, vocab=vocab)
            dim = int(state["dim"])
            base = None
            if state["ntotal"]:
                base = faiss.read_index(str(gen_dir / "index.faiss"), faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY)
            delta = np.zeros((0, dim), dtype=np.float32)
            if state.get("delta"):
                delta = np.load(gen_dir / "delta.npy", allow_pickle=False)
        except Exception as exc:  # numpy, zipfile and faiss each raise their own kinds on a damaged file
            raise IndexCorrupt(f"{gen_dir} is unreadable: {exc}") from None
        ntotal = int(base.ntotal) if base is not None else 0
        n = len(catalog.ids)
        problems = []
        if any(len(a) != n for a in catalog.arrays().values()):
            problems.append("catalog columns differ in length")
        if ntotal != state["ntotal"] or (base is not None and base.d != dim):
            problems.append(f"index holds {ntotal} vectors of {getattr(base, 'd', dim)} dims, state says "
                            f"{state['ntotal']} of {dim}")
        if delta.shape != (int(state.get("delta", 0)), dim) or delta.dtype != np.float32:
            problems.append(f"delta has shape {delta.shape}, state says ({state.get('delta', 0)}, {dim})")
        if n and (catalog.pos.max() >= ntotal + len(delta) or np.any(np.diff(catalog.ids) <= 0)):
            problems.append("catalog positions or ids out of order")
        if problems:
            raise IndexCorrupt(f"{gen_dir}: " + "; ".join(problems))
        return cls(embedder, dim, base, catalog, int(state["high_water"]), state, directory, generation, delta)


# ---------------------------------------------------------------------------------------------------------------
# Loaded indexes, one per (directory, embedder) per process, reloaded when a writer swaps the generation

_loaded: dict[Path, EmbeddingIndex] = {}
_loaded_lock = threading.Lock()


def forget(directory: Path) -> None:
    with _loaded_lock:
        _loaded.pop(directory, None)


def open_index(root: Path, embedder: str) -> EmbeddingIndex | None:
    """The current index for `embedder` under `root`, loaded once per process and reloaded when `update_index`
    (here or in another process) wrote a newer generation. None when there is none; IndexCorrupt when the
    persisted one fails its checks."""
    directory = embedder_dir(root, embedder)
    try:
        generation = (directory / "CURRENT").read_text().strip()
    except OSError:
        return None
    with _loaded_lock:
        index = _loaded.get(directory)
        if index is not None and index.generation == generation:
            return index
        index = EmbeddingIndex.load(directory, embedder)
        if index is not None:
            _loaded[directory] = index
        return index


def refresh(session: Session, index: EmbeddingIndex) -> None:
    """Fold explanations newer than the index's high-water mark into its catalog (with their stored vectors, up
    to a limit: beyond it they stay unindexed until `update_index`)."""
    latest = session.scalar(select(func.max(Explanation.id))) or 0
    if latest <= index.high_water:
        return
    with index.lock:
        if latest <= index.high_water:
            return
        n_new = session.scalar(select(func.count()).where(Explanation.id > index.high_water,
                                                          Explanation.id <= latest, *searchable_conds())) or 0
        extra, vectors = catalog_from_db(
            session, after=index.high_water, upto=latest, vocab=index.catalog.vocab,
            with_vectors=index.embedder if n_new <= REFRESH_VECTOR_LIMIT else None,
        )
        index.append_catalog(extra, vectors, latest)
