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

The catalog and its bulk reads live in storage.embedding_catalog. This module takes the index directory as a
parameter (`index_root` derives the usual one) and never embeds text.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np
from filelock import FileLock
from sqlalchemy import func, select
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from storage.embedding_catalog import (
    CATALOG_COLUMNS,
    DTYPES,
    VOCABS,
    Catalog,
    Vocab,
    as_matrix,
    catalog_from_db,
    embedded_ids,
    fetch_vectors,
    searchable_conds,
    searchable_ids,
)
from storage.schema import Explanation

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
NPROBE_BASE = 48  # inverted lists probed for an unfiltered query
MIN_SCAN = 20_000  # vectors a query scans at least: small indexes are searched (nearly) exhaustively
REBUILD_DEAD_FRACTION = 0.25  # rebuild when this share of stored vectors belongs to no searchable explanation
RETRAIN_GROWTH = 4.0  # retrain the coarse quantiser once the index has grown this much since training
DELTA_MERGE = (50_000, 0.05)  # the persisted delta merges into the base past max(count, fraction of the base)
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


def _nlist_for(n: int) -> int:
    # About sqrt(n) lists of ~sqrt(n) vectors; faiss wants >= 39 training points per list.
    return max(1, min(4096, int(np.sqrt(n)), n // 39))


def _new_ivf(dim: int, n: int) -> Any:
    index = faiss.index_factory(dim, f"IVF{_nlist_for(n)},SQfp16", faiss.METRIC_INNER_PRODUCT)
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


def _write_generation(directory: Path, embedder: str, base: Any, dim: int, catalog: Catalog, high_water: int,
                      trained_on: int, delta: np.ndarray, *, base_file: Path | None = None) -> str:
    """Write a complete generation and make it live; returns its name. `base_file` reuses an unchanged index file
    (hard-linked) instead of writing `base` again; `delta` holds the vectors at positions after the base's.
    Caller holds the directory lock."""
    existing = sorted(p.name for p in directory.glob("g[0-9]*") if p.is_dir() and p.name[1:].isdigit())
    number = max((int(n[1:]) for n in existing), default=0) + 1
    name = f"g{number:06d}"
    tmp = directory / f".{name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    np.savez(tmp / "catalog.npz", **catalog.arrays())
    if len(delta):
        np.save(tmp / "delta.npy", np.ascontiguousarray(delta, dtype=np.float32))
    if base is not None:
        if base_file is None:
            faiss.write_index(base, str(tmp / "index.faiss"))
        else:
            try:
                os.link(base_file, tmp / "index.faiss")
            except OSError:
                shutil.copyfile(base_file, tmp / "index.faiss")
    state = {
        "format": FORMAT_VERSION, "embedder": embedder, "dim": dim, "ntotal": int(base.ntotal) if base else 0,
        "nlist": int(base.nlist) if base is not None else 0, "delta": len(delta), "trained_on": trained_on,
        "high_water": high_water,
        "catalog_rows": len(catalog), "vocab": {v: catalog.vocab[v].words for v in VOCABS},
        "files": {p.name: p.stat().st_size for p in tmp.iterdir()}, "faiss": faiss.__version__,
        "written_at": time.time(),
    }
    (tmp / "state.json").write_text(json.dumps(state))
    os.replace(tmp, directory / name)
    current_tmp = directory / ".CURRENT.tmp"
    current_tmp.write_text(name + "\n")
    os.replace(current_tmp, directory / "CURRENT")
    # Keep the previous generation for readers that opened it a moment ago; older ones go.
    for old in existing[:-1]:
        shutil.rmtree(directory / old, ignore_errors=True)
    return name


# ---------------------------------------------------------------------------------------------------------------
# Bringing an index up to date with the database


@dataclass
class UpdateReport:
    path: Path
    vectors: int  # searchable explanations with a vector in the index
    added: int
    removed: int  # vectors dropped: their explanation is gone or no longer has a vector
    not_embedded: int  # searchable explanations without a stored vector
    rebuilt: bool
    reason: str  # why rebuilt, or "incremental" / "up to date"
    seconds: float


def _try_load(directory: Path, embedder: str) -> tuple[EmbeddingIndex | None, str]:
    """The persisted index and, when it cannot be used as it is, why it must be built afresh."""
    try:
        index = EmbeddingIndex.load(directory, embedder)
    except IndexCorrupt as exc:
        log.warning("semantic index %s is corrupt, rebuilding it: %s", directory, exc)
        return None, f"corrupt ({exc})"
    return index, "" if index is not None else "missing"


def update_index(session: Session, root: Path, embedder: str, *, progress: ProgressFn | None = None,
                 rebuild: bool = False) -> UpdateReport:
    """Make the persisted index for `embedder` match the database: add vectors stored since it was written,
    drop those whose explanation is gone, and rebuild it from scratch when it is missing, corrupt, too stale
    or `rebuild` is set. Reads vectors from the database only for what changed (unless rebuilding). New vectors
    go to a small delta beside the unchanged base file, which they join once the delta grows past DELTA_MERGE."""
    started = time.perf_counter()
    directory = embedder_dir(root, embedder)
    directory.mkdir(parents=True, exist_ok=True)
    with FileLock(str(directory / ".lock")):
        old, reason = (None, "rebuild requested") if rebuild else _try_load(directory, embedder)
        high_water = session.scalar(select(func.max(Explanation.id))) or 0
        if progress:
            progress(0, 0, "catalog")
        catalog = _current_catalog(session, old, high_water)
        has_vector = np.isin(catalog.ids, embedded_ids(session, embedder, high_water), assume_unique=True)
        n_embedded = int(has_vector.sum())
        removed = 0
        delta = np.zeros((0, old.dim if old is not None else 0), dtype=np.float32)
        if old is not None and (old.base is not None or len(old.delta)):
            old_rows = old.catalog.rows_of(catalog.ids)
            old_pos = np.where(old_rows >= 0, old.catalog.pos[np.maximum(old_rows, 0)], -1)
            in_base = has_vector & (old_pos >= 0) & (old_pos < old.nb)
            in_delta = np.flatnonzero(has_vector & (old_pos >= old.nb))
            catalog.pos[in_base] = old_pos[in_base]
            # The delta is rewritten compact: its surviving vectors first, in their old order.
            in_delta = in_delta[np.argsort(old_pos[in_delta], kind="stable")]
            delta = old.delta[old_pos[in_delta] - old.nb]
            catalog.pos[in_delta] = old.nb + np.arange(len(in_delta))
            dead = old.nb - int(in_base.sum())
            removed = dead + len(old.delta) - len(in_delta)
            growth = (old.nb + n_embedded - int(in_base.sum())) / max(int(old.state.get("trained_on") or 1), 1)
            if old.base is None:
                reason = "first vectors"
            elif dead > REBUILD_DEAD_FRACTION * old.nb:
                reason = f"{dead} of {old.nb} stored vectors are stale"
            elif growth > RETRAIN_GROWTH:
                reason = f"grew {growth:.1f}x since the index was trained"
        elif old is not None and n_embedded:
            reason = "first vectors"
        if reason:
            catalog.pos[:] = -1
        to_add = np.flatnonzero(has_vector & (catalog.pos < 0))
        unchanged = (not reason and not len(to_add) and not removed and old is not None
                     and old.high_water == high_water and len(old.catalog) == len(catalog))
        if not unchanged:
            if reason:
                base, dim, trained_on = _build(session, embedder, catalog, to_add, progress)
                base_file, delta = None, np.zeros((0, dim), dtype=np.float32)
            else:
                assert old is not None and old.base is not None
                dim, trained_on = old.dim, int(old.state.get("trained_on") or old.nb)
                base, base_file = old.base, directory / str(old.generation) / "index.faiss"
                delta = _append_vectors(session, embedder, dim, catalog, to_add, delta, old.nb, progress)
                if len(delta) > max(DELTA_MERGE[0], DELTA_MERGE[1] * old.nb):
                    base, base_file = faiss.read_index(str(base_file)), None  # a writable copy
                    base.add(delta)  # positions nb, nb+1, ... as they were in the delta
                    delta = np.zeros((0, dim), dtype=np.float32)
            _write_generation(directory, embedder, base, dim, catalog, high_water, trained_on, delta,
                              base_file=base_file)
            _forget(directory)
        return UpdateReport(directory, int((catalog.pos >= 0).sum()), 0 if unchanged else len(to_add), removed,
                            len(catalog) - n_embedded, bool(reason),
                            reason or ("up to date" if unchanged else "incremental"), time.perf_counter() - started)


def _append_vectors(session: Session, embedder: str, dim: int, catalog: Catalog, rows: np.ndarray,
                    delta: np.ndarray, nb: int, progress: ProgressFn | None) -> np.ndarray:
    """`delta` with the stored vectors of catalog `rows` appended, their positions set to follow."""
    parts = [delta]
    size = nb + len(delta)
    done = 0
    for ids, matrix in fetch_vectors(session, embedder, catalog.ids[rows], dim):
        catalog.pos[catalog.rows_of(ids)] = np.arange(size, size + len(ids))
        parts.append(matrix)
        size += len(ids)
        done += len(ids)
        if progress:
            progress(done, len(rows), "index")
    return np.concatenate(parts) if len(parts) > 1 else delta


def _current_catalog(session: Session, old: EmbeddingIndex | None, high_water: int) -> Catalog:
    """The catalog as the database stands: the old one's rows that are still searchable plus newer explanations
    (an explanation's feature and explainer never change, so old rows need no re-reading), else read whole."""
    if old is None:
        return catalog_from_db(session, after=0, upto=high_water, vocab={name: Vocab() for name in VOCABS})[0]
    alive = np.isin(old.catalog.ids, searchable_ids(session, min(old.high_water, high_water)), assume_unique=True)
    kept = {c: getattr(old.catalog, c)[alive] for c in CATALOG_COLUMNS}
    kept["pos"] = np.full(int(alive.sum()), -1, dtype=np.int64)
    catalog = Catalog(**kept, vocab=old.catalog.vocab)
    newer, _ = catalog_from_db(session, after=old.high_water, upto=high_water, vocab=old.catalog.vocab)
    catalog.extend(newer)
    return catalog


def _add_all(session: Session, embedder: str, base: Any, dim: int, catalog: Catalog, rows: np.ndarray,
             progress: ProgressFn | None) -> None:
    done = 0
    for ids, matrix in fetch_vectors(session, embedder, catalog.ids[rows], dim):
        start = int(base.ntotal)
        base.add(np.ascontiguousarray(matrix))
        catalog.pos[catalog.rows_of(ids)] = np.arange(start, start + len(ids))
        done += len(ids)
        if progress:
            progress(done, len(rows), "index")


def _build(session: Session, embedder: str, catalog: Catalog, rows: np.ndarray,
           progress: ProgressFn | None) -> tuple[Any, int, int]:
    """A fresh IVF trained on a sample of the vectors, holding all of them. (None, dim 0) when there are none."""
    if not len(rows):
        return None, 0, 0
    rng = np.random.default_rng(0)
    nlist = _nlist_for(len(rows))
    sample_rows = np.sort(rng.choice(rows, size=min(len(rows), 64 * nlist), replace=False))
    if progress:
        progress(0, len(rows), "train")
    sample = np.concatenate([m for _, m in fetch_vectors(session, embedder, catalog.ids[sample_rows])])
    dim = sample.shape[1]
    base = _new_ivf(dim, len(rows))
    base.train(np.ascontiguousarray(sample))
    _add_all(session, embedder, base, dim, catalog, rows, progress)
    return base, dim, len(rows)


# ---------------------------------------------------------------------------------------------------------------
# Loaded indexes, one per (directory, embedder) per process, reloaded when a writer swaps the generation

_loaded: dict[Path, EmbeddingIndex] = {}
_loaded_lock = threading.Lock()


def _forget(directory: Path) -> None:
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
