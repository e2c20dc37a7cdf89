"""Where a run's LLM response cache lives: beside a SQLite database, or in the user cache dir for a server
database (shared by the machines of a distributed run only where that dir is; docs/scaling-out.md)."""

from __future__ import annotations

import os

from llm_client.local_models import cache_dir
from storage.core.db import Database


def llm_cache_path(db: Database) -> str:
    """The response cache sits next to a SQLite database, or in the user cache dir for a server database."""
    if db.url.startswith("sqlite:///") and db.url != "sqlite:///:memory:":
        return db.url[len("sqlite:///"):] + ".llmcache"
    path = cache_dir() / "llmcache.sqlite"
    os.makedirs(path.parent, exist_ok=True)
    return str(path)
