"""Open a database: resolve the URL, configure SQLite (WAL, foreign keys), bring the schema up to date.

The same code serves SQLite (a file path or `sqlite:///...`) and PostgreSQL (`postgresql+psycopg://...`).
Schema changes go through Alembic migrations in `storage/migrations`; opening a database upgrades it.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from storage.core.db_errors import cannot_connect, unknown_url

_MIGRATIONS = Path(__file__).parent.parent / "migrations"
PAGE_SIZE = 16_384  # bytes per page of a new SQLite file (see _configure_sqlite)
_upgraded: set[str] = set()
_upgrade_lock = threading.Lock()


def resolve_url(url: str) -> str:
    """A bare file path means SQLite; `postgresql://` means the psycopg 3 driver."""
    if "://" not in url:
        url = f"sqlite:///{url}"
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    return url


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        # Takes effect only on a new, empty file (before WAL writes its header); an existing one keeps its size.
        # Records are ~300 bytes: a 4 KiB page left 18 bytes per record unused, a 16 KiB page leaves 2.
        cur.execute(f"PRAGMA page_size={PAGE_SIZE}")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()


def make_engine(url: str) -> Engine:
    """An engine for the URL; DatabaseUnavailable (a user error) when no installed dialect reads it."""
    url = resolve_url(url)
    try:
        if url.startswith("sqlite"):
            engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
            _configure_sqlite(engine)
        else:
            engine = create_engine(url, pool_pre_ping=True)
    except ArgumentError as exc:
        raise unknown_url(url, exc) from None
    return engine


def check_connects(engine: Engine) -> None:
    """Connect once, so a missing folder, database or server is one clear DatabaseUnavailable here rather than a
    driver traceback from wherever the first query happens to run."""
    try:
        with engine.connect():
            pass
    except DBAPIError as exc:
        raise cannot_connect(str(engine.url), exc) from None


def head_revision() -> str | None:
    """The newest migration's revision id, read from the files in migrations/versions without importing Alembic
    (which, with its templates and the migration modules, costs every command half a second to start); None
    unless the history is one straight line, when only Alembic can tell."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in (_MIGRATIONS / "versions").glob("*.py"):
        source = path.read_text(encoding="utf-8")
        revision = re.search(r"^revision\s*=\s*['\"]([^'\"]+)['\"]\s*$", source, re.MULTILINE)
        parent = re.search(r"^down_revision\s*=\s*(?:None|['\"]([^'\"]+)['\"])\s*$", source, re.MULTILINE)
        if revision is None or parent is None:
            return None
        revisions.add(revision.group(1))
        if parent.group(1):
            parents.add(parent.group(1))
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 else None


def _at_head(engine: Engine) -> bool:
    head = head_revision()
    if head is None:
        return False
    try:
        with engine.connect() as conn:
            stamped = conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
    except DBAPIError:  # no version table yet: a new database
        return False
    return stamped == [head]


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Run Alembic migrations up to `revision` on this engine's database, all in one transaction."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    if engine.dialect.name != "sqlite":
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)
        return
    with engine.connect() as conn:
        # SQLite rebuilds a table to change its columns; with foreign keys on, dropping the old copy would
        # cascade into the rows that point at it. The pragma only takes effect outside a transaction.
        conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
        conn.commit()
        # pysqlite commits DDL as it goes unless a transaction is open: open one, so a failed migration
        # leaves the database as it was.
        try:
            conn.exec_driver_sql("BEGIN")
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)
            broken = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
            if broken:
                raise RuntimeError(f"the migration left {len(broken)} rows pointing at missing rows (e.g. "
                                   f"{broken[0]}); nothing was changed")
            conn.commit()
        except BaseException:
            conn.rollback()
            raise
        finally:
            conn.exec_driver_sql("PRAGMA foreign_keys=ON")  # the connection goes back to the pool
            conn.commit()


class Database:
    """An engine plus a session factory, migrated to the current schema. The caller says which database
    (the CLI and the API default to `autointerp.settings`)."""

    def __init__(self, url: str, *, migrate: bool = True) -> None:
        self.url = resolve_url(url)
        self.engine = make_engine(self.url)
        check_connects(self.engine)
        if migrate:
            with _upgrade_lock:
                if self.url not in _upgraded:
                    if not _at_head(self.engine):
                        upgrade(self.engine)
                    _upgraded.add(self.url)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)

    def session(self) -> Session:
        return self.sessions()

    def dispose(self) -> None:
        self.engine.dispose()
