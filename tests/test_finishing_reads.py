"""The finishing pass reads each feature's records once for both of its passes (the shuffled baselines and the
example scorers), a chunk of explanations per statement, and reads none for an explanation that lacks nothing.
Counted as the SQL statements that read activation_records, by an event listener on every engine, while real
runs go through the CLI on a real SQLite database against the fake OpenAI server."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import event, func, select
from sqlalchemy.engine import Engine

from autointerp.cli import main
from autointerp.workflows.finishing_reads import CHUNK
from storage.core.db import Database
from storage.core.schema import Feature, Score
from tests.pipeline_data import fill_layer

EXPLAIN = ["explain", "--model", "tiny-model", "--layer", "6", "--explainer", "openai:fake", "--simulator", "embedding"]
BOTH = ["--scorer", "simulation,embedding"]  # the shuffled baseline is on by default


@contextmanager
def record_reads() -> Iterator[list[list[int]]]:
    """The statements that read activation_records while inside, each as the ids it bound (the features whose
    records it read: the records query binds nothing else)."""
    statements: list[list[int]] = []

    def seen(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "FROM activation_records" in statement:
            statements.append([p for p in parameters if isinstance(p, int)])

    event.listen(Engine, "before_cursor_execute", seen)
    try:
        yield statements
    finally:
        event.remove(Engine, "before_cursor_execute", seen)


def per_feature(statements: list[list[int]]) -> Counter[int]:
    return Counter(feature_id for ids in statements for feature_id in ids)


def cli(*args: str) -> None:
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == 0, result.output


def feature_ids(db: Database) -> list[int]:
    with db.session() as s:
        return list(s.scalars(select(Feature.id).order_by(Feature.index)))


def score_rows(db: Database, method: str, role: str) -> int:
    with db.session() as s:
        return s.scalar(select(func.count()).where(Score.method == method, Score.role == role)) or 0


@pytest.fixture
def layer(sqlite_url: str, fake_openai, tmp_path, monkeypatch) -> Database:
    monkeypatch.setenv("AUTOINTERP_CACHE", str(tmp_path / "cache"))
    db = Database(sqlite_url)
    fill_layer(db, 4)
    return db


def test_both_passes_share_one_read_and_a_rerun_reads_nothing(layer, sqlite_url):
    ids = feature_ids(layer)
    with record_reads() as statements:
        cli(*EXPLAIN, *BOTH, "--concurrency", "2", "--db", sqlite_url)
    # One read to explain each feature, one for its whole finishing pass (baseline and embedding scorer):
    # two statements in all, each over the layer's 4 features (one chunk).
    assert per_feature(statements) == {feature_id: 2 for feature_id in ids}
    assert len(statements) == 2
    # Both passes ran on that one read: every feature has its baseline and its own and shuffled example scores.
    assert score_rows(layer, "ev_correlation", "shuffled") == 4 * 2  # top_and_random and random_only
    assert score_rows(layer, "embedding_auroc", "own") > 0 and score_rows(layer, "embedding_auroc", "shuffled") > 0

    before = {role: score_rows(layer, "embedding_auroc", role) for role in ("own", "shuffled")}
    with record_reads() as statements:
        cli(*EXPLAIN, *BOTH, "--db", sqlite_url)
    assert statements == []  # nothing lacks anything: "already done?" is asked before any record is read
    assert {role: score_rows(layer, "embedding_auroc", role) for role in ("own", "shuffled")} == before


def test_a_pass_added_later_reads_each_feature_once(layer, sqlite_url):
    cli(*EXPLAIN, "--db", sqlite_url)  # simulation and its baselines only
    with record_reads() as statements:
        cli(*EXPLAIN, *BOTH, "--db", sqlite_url)  # nothing to explain again: only the embedding scorer is missing
    assert per_feature(statements) == {feature_id: 1 for feature_id in feature_ids(layer)}
    assert score_rows(layer, "embedding_auroc", "shuffled") > 0


def test_reads_go_a_chunk_of_explanations_at_a_time(sqlite_url, fake_openai, tmp_path, monkeypatch):
    """More explanations than one chunk: never every feature's records in one statement."""
    monkeypatch.setenv("AUTOINTERP_CACHE", str(tmp_path / "cache"))
    db = Database(sqlite_url)
    fill_layer(db, CHUNK + 3)
    cli(*EXPLAIN, "--no-shuffled-baseline", "--db", sqlite_url)
    with record_reads() as statements:
        cli(*EXPLAIN, *BOTH, "--concurrency", "3", "--db", sqlite_url)
    assert sorted(len(ids) for ids in statements) == [3, CHUNK]
    assert per_feature(statements) == {feature_id: 1 for feature_id in feature_ids(db)}
