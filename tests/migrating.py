"""Downgrading a migrated test database, as `storage.core.db.upgrade` upgrades one: on SQLite with foreign keys
off (the pragma works outside a transaction only), so a table rebuild never cascades into the rows pointing at it."""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Engine

from storage.core.db import _MIGRATIONS


def downgrade(engine: Engine, revision: str) -> None:
    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
            conn.commit()
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, revision)
        conn.commit()
