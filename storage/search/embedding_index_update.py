"""Bringing the persisted ANN index of `storage.search.embedding_index` up to date with the database: vectors stored
since it was written join a delta beside the unchanged base, vectors of explanations that are gone are dropped,
and the index is rebuilt from scratch when it is missing, corrupt, too stale or asked for. Each run writes a
whole new generation under the directory's file lock and then makes it live, so readers never see a
half-written index.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np
from filelock import FileLock
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from storage.core.schema import Explanation
from storage.search.embedding_catalog import (
    CATALOG_COLUMNS,
    VOCABS,
    Catalog,
    Vocab,
    catalog_from_db,
    embedded_ids,
    fetch_vectors,
    searchable_ids,
)
from storage.search.embedding_index import (
    FORMAT_VERSION,
    EmbeddingIndex,
    IndexCorrupt,
    ProgressFn,
    embedder_dir,
    forget,
    new_ivf,
    nlist_for,
)

log = logging.getLogger(__name__)

REBUILD_DEAD_FRACTION = 0.25  # rebuild when this share of stored vectors belongs to no searchable explanation
RETRAIN_GROWTH = 4.0  # retrain the coarse quantiser once the index has grown this much since training
DELTA_MERGE = (50_000, 0.05)  # the persisted delta merges into the base past max(count, fraction of the base)




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
        delta = np.zeros((0, 0), dtype=np.float32)
        if old is not None:
            delta, removed, reason = _carry_over(old, catalog, has_vector, n_embedded)
        if reason:
            catalog.pos[:] = -1
        to_add = np.flatnonzero(has_vector & (catalog.pos < 0))
        unchanged = (not reason and not len(to_add) and not removed and old is not None
                     and old.high_water == high_water and len(old.catalog) == len(catalog))
        if not unchanged:
            _write_update(session, directory, embedder, old, catalog, to_add, delta, high_water, reason, progress)
        return UpdateReport(directory, int((catalog.pos >= 0).sum()), 0 if unchanged else len(to_add), removed,
                            len(catalog) - n_embedded, bool(reason),
                            reason or ("up to date" if unchanged else "incremental"), time.perf_counter() - started)


def _carry_over(old: EmbeddingIndex, catalog: Catalog, has_vector: np.ndarray,
                n_embedded: int) -> tuple[np.ndarray, int, str]:
    """Point the catalog's rows at the vectors the old index already holds: the base's where they are, the
    delta's rewritten compact. Returns the new delta, the number of vectors dropped, and why the index must be
    rebuilt instead ("" when it need not be)."""
    delta = np.zeros((0, old.dim), dtype=np.float32)
    if old.base is None and not len(old.delta):
        return delta, 0, "first vectors" if n_embedded else ""
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
    reason = ""
    if old.base is None:
        reason = "first vectors"
    elif dead > REBUILD_DEAD_FRACTION * old.nb:
        reason = f"{dead} of {old.nb} stored vectors are stale"
    elif growth > RETRAIN_GROWTH:
        reason = f"grew {growth:.1f}x since the index was trained"
    return delta, removed, reason


def _write_update(session: Session, directory: Path, embedder: str, old: EmbeddingIndex | None, catalog: Catalog,
                  to_add: np.ndarray, delta: np.ndarray, high_water: int, reason: str,
                  progress: ProgressFn | None) -> None:
    """Write the next generation: rebuilt from scratch when there is a `reason`, else the old base with the
    catalog rows `to_add` appended to its delta (merged into a copy of the base once the delta is large)."""
    # An index that holds no vector yet (no base) gets only explanations without vectors here: none to append.
    if reason or old is None or old.base is None:
        base, dim, trained_on = _build(session, embedder, catalog, to_add, progress)
        base_file, delta = None, np.zeros((0, dim), dtype=np.float32)
    else:
        dim, trained_on = old.dim, int(old.state.get("trained_on") or old.nb)
        base, base_file = old.base, directory / str(old.generation) / "index.faiss"
        delta = _append_vectors(session, embedder, dim, catalog, to_add, delta, old.nb, progress)
        if len(delta) > max(DELTA_MERGE[0], DELTA_MERGE[1] * old.nb):
            base, base_file = faiss.read_index(str(base_file)), None  # a writable copy
            base.add(delta)  # positions nb, nb+1, ... as they were in the delta
            delta = np.zeros((0, dim), dtype=np.float32)
    _write_generation(directory, embedder, base, dim, catalog, high_water, trained_on, delta, base_file=base_file)
    forget(directory)


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
    nlist = nlist_for(len(rows))
    sample_rows = np.sort(rng.choice(rows, size=min(len(rows), 64 * nlist), replace=False))
    if progress:
        progress(0, len(rows), "train")
    sample = np.concatenate([m for _, m in fetch_vectors(session, embedder, catalog.ids[sample_rows])])
    dim = sample.shape[1]
    base = new_ivf(dim, len(rows))
    base.train(np.ascontiguousarray(sample))
    _add_all(session, embedder, base, dim, catalog, rows, progress)
    return base, dim, len(rows)


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
