"""The exit status of a batch command (explain, rescore), from how its run ended: what a scheduler reads.
docs/running.md lists them with real output."""

from __future__ import annotations

# Every selected feature done, skipped as finished before, or failed with nothing to explain (a dead feature: that
# fails on every run); also a --budget-usd stop without other failures.
ALL_DONE = 0
ERROR = 1  # a user error (bad option, missing database, no API key, ...) or a bug; the message says which
# 2 is click's: the command line itself is wrong (unknown option, missing --layer)
SOME_FAILED = 3  # the run went through, and some features failed on the endpoint or the answer (the summary says why)
RUN_FAILED = 4  # the run stopped early: its first features all failed the same way (--fail-fast), or it crashed
# 128 + the signal when interrupted: 130 after Ctrl-C (SIGINT), 143 after SIGTERM


MEANINGS = {ALL_DONE: "all done", ERROR: "error", SOME_FAILED: "some features failed",
            RUN_FAILED: "run failed, stopped early"}


def exit_meaning(code: int) -> str:
    """A few words on what an exit code says, for the summary and `runs`."""
    return MEANINGS.get(code) or (f"interrupted by signal {code - 128}" if code > 128 else "unknown")


def interrupted(signum: int) -> int:
    """The exit status of a run interrupted by signal `signum`: 128 + it, as a shell reports a killed command."""
    return 128 + signum
