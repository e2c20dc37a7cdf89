"""`autointerp runs`: past runs with their status (a run whose process died silently shows as stale),
counts, LLM requests, tokens and cost."""

from __future__ import annotations

import click

from activations.vocab import RunKind
from autointerp.cli import summary
from autointerp.cli.errors import Command
from autointerp.cli.formatting import FORMATS, emit
from autointerp.cli.options import db_option
from autointerp.runtime.exit_codes import exit_meaning
from storage.core.db import Database
from storage.results.runs import list_runs

TABLE_COLUMNS = ("id", "kind", "status", "exit", "started", "duration", "done", "failed", "skipped", "requests",
                 "tokens", "cost_usd", "reason")
REASON_CHARS = 80  # the whole reason is in --format json


def _table_row(run: dict) -> dict:
    duration, reason, code = run["duration_s"], run["reason"] or "", run["exit_code"]
    return {**run, "started": (run["started_at"] or "")[:19].replace("T", " "),
            "kind": f"{run['kind']} (dry run)" if run["dry_run"] else run["kind"],
            "exit": None if code is None else f"{code} {exit_meaning(code)}",
            "duration": None if duration is None else f"{duration:.1f}s",
            "reason": reason if len(reason) <= REASON_CHARS else reason[:REASON_CHARS - 1] + "…"}


@click.command("runs", cls=Command, short_help=summary("runs"))
@click.option("--kind", type=click.Choice([k.value for k in RunKind]), default=None, help="Only runs of this kind.")
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True,
              help="Most recent runs to show.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True, help="Output format.")
@db_option
def runs(kind: str | None, limit: int, fmt: str, db_url: str) -> None:
    """List past runs, newest first: id, kind (dry runs say so), status, exit code, start, duration, features
    done/failed/skipped, LLM requests, tokens, cost, and why a run stopped early or failed.

    A run still marked running whose process stopped sending heartbeats (killed, machine lost) is shown as
    stale.

    \b
    Examples:
      autointerp runs
      autointerp runs --kind explain --format json
    """
    with Database(db_url).session() as session:
        rows = list_runs(session, kinds=[kind] if kind else None, limit=limit)
    if fmt == "table":
        rows = [_table_row(r) for r in rows]
    emit(rows, fmt, TABLE_COLUMNS, title="runs")


COMMANDS = [runs]
