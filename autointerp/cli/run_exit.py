"""How a batch command ends: the run's summary, interrupted or not, then the exit code its end implies
(autointerp.runtime.exit_codes; docs/running.md), so a scheduler can tell done from failed from killed."""

from __future__ import annotations

import sys
from collections.abc import Callable

from autointerp.cli.run_summary import print_run_summary
from autointerp.runtime.exit_codes import ERROR
from autointerp.runtime.interrupts import RunInterrupted
from storage.core.db import Database
from storage.results.runs import get_run


def run_and_report(db: Database, run: Callable[[], int]) -> None:
    """`run()` (it returns the run id), the summary of that run, and the exit with the run's exit code."""
    try:
        run_id = run()
    except RunInterrupted as stop:
        run_id = stop.run_id
    print_run_summary(db, run_id)
    with db.session() as session:
        row = get_run(session, run_id)
    code = (row or {}).get("stats", {}).get("exit_code", ERROR)
    if code:
        sys.exit(code)
