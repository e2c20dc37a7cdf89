"""What the CLI says when something goes wrong: bad input from the user (a UserError, a database that cannot be
opened) is one line and exit code 1; a bug keeps its traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from sqlalchemy.engine import make_url

from autointerp.cli import main
from autointerp.cli.errors import Command
from storage.core.db import Database
from tests.conftest import POSTGRES_URL
from tests.pipeline_data import fill_layer

ROOT = Path(__file__).resolve().parents[1]
MISSING_FOLDER_DB = "/nonexistent/dir/x.db"


def _cli(*args: str):
    return CliRunner().invoke(main, list(args))


def _one_error_line(result) -> str:
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    return lines[0]


@pytest.mark.parametrize("args", [
    ["query"],
    ["runs"],
    ["explain", "--layer", "6", "--explainer", "openai:gpt-4o-mini"],
    ["import", "IMPORT_FILE"],
    ["export", "--out", "OUT_FILE"],
    ["compare", "--layer", "6", "--explainer", "a", "--explainer", "b"],
    ["embed"],
])
def test_database_in_a_missing_folder_is_one_line(args, tmp_path):
    (tmp_path / "in.json").write_text("[]")
    args = [str(tmp_path / "in.json") if a == "IMPORT_FILE" else str(tmp_path / "out.jsonl") if a == "OUT_FILE"
            else a for a in args]
    line = _one_error_line(_cli(*args, "--db", MISSING_FOLDER_DB))
    assert line == (f"Error: cannot open database sqlite:///{MISSING_FOLDER_DB}: folder /nonexistent/dir does not "
                    "exist; create it, or point --db or $AUTOINTERP_DB at a file in an existing folder")


def test_database_that_is_a_folder_is_one_line(tmp_path):
    line = _one_error_line(_cli("query", "--db", str(tmp_path)))
    assert f"{tmp_path} is a folder" in line and f"{tmp_path / 'autointerp.db'}" in line


def test_refused_server_is_one_line_with_the_password_masked():
    line = _one_error_line(_cli("query", "--db", "postgresql://someone:s3cret@127.0.0.1:1/results"))
    assert "s3cret" not in line
    assert line.startswith("Error: cannot open database postgresql+psycopg://someone:***@127.0.0.1:1/results: ")
    assert "refused" in line and "start the server, or correct the host and port" in line


def test_unknown_url_scheme_is_one_line():
    line = _one_error_line(_cli("runs", "--db", "mysqlx://u:pw@host/db"))
    assert "database URL mysqlx://u:***@host/db is not one autointerp can open" in line and "pw@" not in line


@pytest.mark.skipif(POSTGRES_URL is None, reason="needs AUTOINTERP_TEST_POSTGRES_URL")
def test_missing_postgres_database_is_one_line():
    assert POSTGRES_URL is not None
    url = make_url(POSTGRES_URL).set(database="autointerp_no_such_db", password="s3cret")
    line = _one_error_line(_cli("query", "--db", url.render_as_string(hide_password=False)))
    assert "s3cret" not in line and ":***@" in line
    assert 'database "autointerp_no_such_db" does not exist; create it (createdb autointerp_no_such_db)' in line


@pytest.mark.parametrize("args, message", [
    (["rescore", "--layer", "6", "--scorer", "simulation,telepathy"], "--scorer: unknown scorer 'telepathy'"),
    (["explain", "--model", "tiny-model", "--layer", "6", "--features", "9-2"],
     "--features: range '9-2' runs backwards; write 2-9"),
    (["compare", "--layer", "6", "--methods", "ev_correlation"], "--methods needs at least two methods"),
    (["query", "--search", "x" * 300], "limit is 200"),
])
def test_user_error_is_one_line_and_exit_1(args, message, sqlite_url):
    fill_layer(Database(sqlite_url), 2)
    assert message in _one_error_line(_cli(*args, "--db", sqlite_url))


def test_lower_layer_user_error_is_one_line(tmp_path):
    records = tmp_path / "records.json"
    records.write_text('[{"tokens": ["a"]}]')
    result = _cli("simulate", "--simulator", "telepathy:gpt", "--explanation", "x", "--records", str(records))
    assert "unknown simulator spec 'telepathy:gpt'" in _one_error_line(result)


def test_every_command_reports_user_errors_the_same_way():
    ctx = click.Context(main)
    for name in main.list_commands(ctx):
        assert isinstance(main.get_command(ctx, name), Command), name


def _run_with_bug(db: str, exc: str) -> subprocess.CompletedProcess:
    """`autointerp compare` in a fresh process whose comparison raises `exc` like a bug would."""
    code = ("import autointerp.cli.comparisons as c\n"
            "def broken(*args, **kwargs):\n"
            f"    raise {exc}('injected bug')\n"
            "c.compare_explainers = broken\n"
            "from autointerp.cli import main\n"
            f"main(['compare', '--layer', '6', '--explainer', 'a', '--explainer', 'b', '--db', {db!r}])\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)


@pytest.mark.parametrize("exc", ["ValueError", "RuntimeError"])
def test_a_bug_keeps_its_traceback(exc, tmp_path):
    done = _run_with_bug(str(tmp_path / "t.db"), exc)
    assert done.returncode == 1
    assert "Traceback (most recent call last)" in done.stderr and f"{exc}: injected bug" in done.stderr, done.stderr
    assert not any(line.startswith("Error: ") for line in done.stderr.splitlines())
