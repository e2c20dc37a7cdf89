"""Shared fixtures. `db_url` runs a test on SQLite, and on PostgreSQL too when AUTOINTERP_TEST_POSTGRES_URL
is set (CI sets it); each PostgreSQL test gets a fresh schema so tests never see each other's rows."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

pytest_plugins = ["tests.fake_openai"]  # the `fake_openai` fixture, for every test module

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

FIXTURES = Path(__file__).resolve().parent / "fixtures"  # in the repository, so every clone has them

POSTGRES_URL = os.environ.get("AUTOINTERP_TEST_POSTGRES_URL")
BACKENDS = ["sqlite"] + (["postgresql"] if POSTGRES_URL else [])


def _postgres_schema_url() -> str:
    from sqlalchemy import create_engine, text

    from storage.core.db import resolve_url

    assert POSTGRES_URL is not None  # only asked for when the PostgreSQL backend is configured
    base = resolve_url(POSTGRES_URL)
    schema = "t_" + uuid.uuid4().hex[:12]
    engine = create_engine(base)
    with engine.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    engine.dispose()
    sep = "&" if "?" in base else "?"
    return f"{base}{sep}options=-csearch_path%3D{schema}"


@pytest.fixture(params=BACKENDS)
def db_url(request, tmp_path) -> str:
    """A URL to an empty database (not yet migrated)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'test.db'}"
    return _postgres_schema_url()


@pytest.fixture
def db(db_url):
    """An open, migrated storage.core.db.Database."""
    from storage.core.db import Database

    database = Database(db_url)
    yield database
    database.dispose()


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'test.db'}"
