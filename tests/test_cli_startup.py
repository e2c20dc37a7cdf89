"""The CLI starts without the heavy libraries: which modules a command imports, not how long it takes (the
timing is benchmarks/cli_startup.py's job)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import text

from autointerp.cli import COMMANDS, main, summary
from storage.core.db import _MIGRATIONS, Database, head_revision, make_engine, upgrade

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "transformers", "ray", "faiss", "sentence_transformers", "scipy", "fastapi", "pyarrow")
# Runs the CLI in this process, then prints which of the given modules it imported as the last line of stdout.
PROBE = """
import json, sys
from autointerp.cli import main
try:
    main(sys.argv[2:], prog_name="autointerp")
except SystemExit:
    pass
print(json.dumps(sorted(m for m in json.loads(sys.argv[1]) if m in sys.modules)))
"""


def _imported(modules: tuple[str, ...], *args: str) -> list[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", PROBE, json.dumps(modules), *args], capture_output=True,
                          text=True, env=env, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("args", [["--help"], ["query", "--help"], ["explain", "--help"], ["query"], ["runs"]])
def test_common_commands_import_no_heavy_library(args, tmp_path):
    db = ["--db", str(tmp_path / "t.db")] if "--help" not in args else []
    assert _imported(HEAVY, *args, *db) == []


def test_help_lists_the_commands_without_importing_them():
    command_modules = tuple(f"autointerp.cli.{module}" for module, _ in COMMANDS.values())
    assert _imported(HEAVY + ("sqlalchemy", "numpy") + command_modules, "--help") == []


def test_every_command_is_listed_with_its_own_line():
    ctx = click.Context(main)
    for name in main.list_commands(ctx):
        command = main.get_command(ctx, name)
        assert command is not None and command.name == name and command.short_help == summary(name)


def test_head_revision_is_alembics_head():
    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    assert head_revision() == ScriptDirectory.from_config(cfg).get_current_head()


def test_a_database_at_head_opens_without_alembic(db_url):
    Database(db_url).dispose()  # creates the schema
    code = f"import sys; from storage.core.db import Database; Database({db_url!r}); print('alembic' in sys.modules)"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT,
                          timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "False", done.stderr


def test_a_database_behind_head_is_still_upgraded(db_url):
    engine = make_engine(db_url)
    upgrade(engine, "0004_windows")
    engine.dispose()
    db = Database(db_url)
    with db.engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one() == head_revision()
    db.dispose()
