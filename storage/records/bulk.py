"""Bulk writes: many rows per statement, no ORM objects. The fast path for large imports and synthetic fills.

`insert_rows` takes rows as tuples. Every value passes through its column's type (JSON lists and dicts,
datetimes, booleans, binary), exactly as an ORM or Core insert would store it, but columns that hold the same
value in every row are converted once. Rows go straight to the driver (pysqlite, psycopg) as multi-row INSERTs
of up to 1,000 rows, an executemany of those, skipping SQLAlchemy's per-row parameter handling, which cost more
than SQLite's own work; any other driver gets a Core executemany per chunk.
Ids of inserted explanations are read back by their unique key, in one query per chunk.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import chain, repeat
from typing import Any, cast

from sqlalchemy import Connection, Table, insert, select
from sqlalchemy.orm import Session

from activations.vocab import OutcomeStatus, Polarity, ScoreRole
from storage.core.in_lists import chunks
from storage.core.repository import config_hash
from storage.core.schema import Explanation, Feature, Score, utcnow
from storage.reads.score_source import CURRENT_SCORER_HASH

# Positional placeholders of the drivers that take multi-row INSERTs straight (psycopg takes %s as well as the
# %(name)s SQLAlchemy writes); any other driver gets SQLAlchemy's executemany.
_PLACEHOLDERS = {"pysqlite": "?", "psycopg": "%s", "psycopg2": "%s"}
SQLITE_BULK_CACHE_KIB = 256 * 1024  # page cache while a bulk insert runs: index pages stay in memory

EXPLANATIONS = cast(Table, Explanation.__table__)
SCORES = cast(Table, Score.__table__)
FEATURES = cast(Table, Feature.__table__)


def insert_rows(
    session: Session, table: Table, columns: Sequence[str], rows: Iterable[Sequence[Any]], *,
    constants: Mapping[str, Any] | None = None,
) -> int:
    """INSERT one row per tuple of `rows` (values in `columns` order); `constants` are columns with the same
    value in every row. Values are what the ORM takes (lists and dicts for JSON, datetimes, bools, bytes).
    Runs in the session's transaction; returns the number of rows."""
    conn = session.connection()
    if conn.dialect.driver in _PLACEHOLDERS:
        return _insert_multirow(conn, table, columns, rows, dict(constants or {}))
    names = [*columns, *(constants or {})]  # another backend: SQLAlchemy's executemany
    fixed = tuple((constants or {}).values())
    count = 0
    for chunk in chunks(tuple(row) + fixed for row in rows):
        conn.execute(insert(table), [dict(zip(names, row)) for row in chunk])
        count += len(chunk)
    return count


def _insert_multirow(
    conn: Connection, table: Table, columns: Sequence[str], rows: Iterable[Sequence[Any]], constants: dict[str, Any]
) -> int:
    names = [*columns, *constants]
    per_statement = _rows_per_statement(conn, len(names))
    full_sql = _multirow_insert(conn, table, names, per_statement)
    processors = [_processor(conn, table, name) for name in columns]
    fixed = []
    for name, value in constants.items():  # converted once
        process = _processor(conn, table, name)
        fixed.append(process(value) if process is not None else value)
    step = per_statement * len(names)
    count = 0
    with _sqlite_bulk(conn):
        for chunk in chunks(rows, 50 * per_statement):
            # Column-wise, in C (zip, map): converting row by row in Python cost as much as SQLite's inserts.
            values: list[Iterable[Any]] = list(zip(*chunk, strict=True))
            if len(values) != len(columns):
                raise ValueError(f"insert into {table.name}: rows have {len(values)} values for {len(columns)} columns")
            for i, process in enumerate(processors):
                if process is not None:
                    values[i] = map(process, values[i])
            n = len(chunk)
            flat = list(chain.from_iterable(zip(*values, *(repeat(v, n) for v in fixed))))
            whole = n // per_statement * step
            if whole:
                conn.exec_driver_sql(full_sql, [tuple(flat[i:i + step]) for i in range(0, whole, step)])
            if whole < len(flat):
                conn.exec_driver_sql(_multirow_insert(conn, table, names, n % per_statement), tuple(flat[whole:]))
            count += n
    return count


def _processor(conn: Connection, table: Table, name: str) -> Callable[[Any], Any] | None:
    """The column type's conversion of a Python value into the driver's (None where there is none)."""
    dialect = conn.dialect
    return table.c[name].type.dialect_impl(dialect).bind_processor(dialect)


def _rows_per_statement(conn: Connection, n_columns: int) -> int:
    """Rows per multi-row INSERT: as many as the bound-parameter limit allows, up to 1,000. On SQLite one
    statement per row costs several times more: SQLite opens a statement savepoint per statement, and the
    full-text index (filled by a trigger on explanations) flushes its pending terms at every savepoint."""
    if conn.dialect.name == "sqlite":
        getlimit = getattr(conn.connection.driver_connection, "getlimit", None)
        limit = getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) if getlimit is not None else 999  # the old default
    else:
        limit = 65_535  # PostgreSQL's wire protocol
    return max(1, min(1_000, limit // n_columns))


def _multirow_insert(conn: Connection, table: Table, names: Sequence[str], n_rows: int) -> str:
    """INSERT INTO table (names) VALUES (...), (...), ... with positional placeholders."""
    quote = conn.dialect.identifier_preparer
    mark = _PLACEHOLDERS[conn.dialect.driver]
    row = f"({', '.join(mark for _ in names)})"
    return (f"INSERT INTO {quote.format_table(table)} ({', '.join(quote.format_column(table.c[n]) for n in names)}) "
            f"VALUES {', '.join(row for _ in range(n_rows))}")


@contextmanager
def _sqlite_bulk(conn: Connection) -> Iterator[None]:
    """On SQLite, a larger page cache on this connection while the insert runs (only memory: durability is
    unchanged), restored afterwards."""
    if conn.dialect.name != "sqlite":
        yield
        return
    before = conn.exec_driver_sql("PRAGMA cache_size").scalar()
    conn.exec_driver_sql(f"PRAGMA cache_size=-{SQLITE_BULK_CACHE_KIB}")
    try:
        yield
    finally:
        conn.exec_driver_sql(f"PRAGMA cache_size={int(before or -2000)}")


def explanation_ids(
    session: Session, feature_ids: Collection[int], config_hashes: Collection[str],
    polarity: str = Polarity.POSITIVE,
) -> dict[tuple[int, str, int], int]:
    """(feature id, config hash, candidate) -> explanation id, for these features' explanations of these
    configurations (and polarity): the unique key of an explanation."""
    out: dict[tuple[int, str, int], int] = {}
    hashes = list(set(config_hashes))
    for chunk in chunks(sorted(set(feature_ids))):
        stmt = select(Explanation.feature_id, Explanation.config_hash, Explanation.candidate, Explanation.id).where(
            Explanation.feature_id.in_(chunk), Explanation.config_hash.in_(hashes), Explanation.polarity == polarity)
        out.update({(fid, chash, candidate): eid for fid, chash, candidate, eid in session.execute(stmt)})
    return out


@dataclass
class ScoredExplanationRow:
    feature_id: int
    model_id: int
    layer: int
    text: str
    explainer: str
    candidate: int
    scores: dict[tuple[str, str], float | None]  # (method, subset) -> value
    simulator: str | None = None


def bulk_add_scored_explanations(session: Session, rows: list[ScoredExplanationRow], *, config: dict) -> int:
    """Insert explanations (all of one configuration; each (feature, candidate) new) and their simulation scores
    (of the current scoring version); returns the number of rows written (both tables)."""
    if not rows:
        return 0
    chash = config_hash(config)
    now = utcnow()
    n_explanations = insert_rows(
        session, EXPLANATIONS, ("feature_id", "text", "explainer", "candidate"),
        [(r.feature_id, r.text, r.explainer, r.candidate) for r in rows],
        constants={"config_hash": chash, "status": OutcomeStatus.OK, "polarity": Polarity.POSITIVE, "selected": True,
                   "params": {}, "created_at": now},
    )
    ids = explanation_ids(session, {r.feature_id for r in rows}, (chash,))
    scores = [
        (ids[(r.feature_id, chash, r.candidate)], r.feature_id, r.model_id, r.layer, method, subset, value,
         r.simulator, None if value is not None else "constant input")
        for r in rows
        for (method, subset), value in r.scores.items()
    ]
    n_scores = insert_rows(
        session, SCORES,
        ("explanation_id", "feature_id", "model_id", "layer", "method", "subset", "value", "simulator",
         "undefined_reason"),
        scores, constants={"role": ScoreRole.OWN, "scorer_hash": CURRENT_SCORER_HASH, "details": {},
                           "created_at": now},
    )
    return n_explanations + n_scores


def bulk_add_features(
    session: Session, model_id: int, layer: int, indices: range, *, kind: str = "mlp_neuron"
) -> list[int]:
    """Insert bare features of one layer; returns their ids in index order."""
    insert_rows(session, FEATURES, ("index",), [(i,) for i in indices],
                constants={"model_id": model_id, "layer": layer, "kind": kind, "sae_key": "", "dead": False,
                           "extra": {}})
    return list(session.scalars(
        select(Feature.id).where(Feature.model_id == model_id, Feature.layer == layer, Feature.kind == kind)
        .order_by(Feature.index)
    ))
