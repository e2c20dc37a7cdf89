"""The progress every command shows on stderr: on a terminal a rich bar (items done of total, rate, a free text
field for tokens, cost and failures); elsewhere (a log file, a pipe, a scheduler) a plain line every
`every_items` items or `every_s` seconds, so a long run is never silent until its end. Display only: the run's
database record lives in `run_record`."""

from __future__ import annotations

import sys
import time
from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from autointerp.runtime.run_stats import RunStats

LINE_EVERY_S = 30.0
LINES_PER_RUN = 20  # without a terminal: a line at least every 1/20 of the items


class ProgressDisplay:
    """Progress of `total` items named `label`; `show=False` (API jobs) reports nothing."""

    def __init__(self, total: int, *, label: str = "features", unit: str = "feat", show: bool = True,
                 every_items: int | None = None, every_s: float = LINE_EVERY_S) -> None:
        self.unit = unit
        self._started = time.monotonic()
        console = Console(stderr=True)
        self._lines = _ProgressLines(total, label, every_items or max(1, total // LINES_PER_RUN), every_s) \
            if show and not console.is_terminal else None
        self._progress = Progress(
            TextColumn(f"[bold]{label}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rate]}"),
            TextColumn("{task.fields[extra]}"), TimeElapsedColumn(), TimeRemainingColumn(),
            console=console, disable=not show or self._lines is not None, transient=False,
        )
        self._task = self._progress.add_task(label, total=total, rate="", extra="")

    def __enter__(self) -> ProgressDisplay:
        self._progress.start()
        return self

    def __exit__(
        self, _type: type[BaseException] | None, _exc: BaseException | None, _tb: TracebackType | None
    ) -> None:
        self._progress.stop()
        if self._lines is not None:
            self._lines.finish()

    def update(self, completed: int, *, counted: int | None = None, extra: str = "") -> None:
        """`completed` moves the bar; the rate counts `counted` (default: completed) per second."""
        elapsed = max(time.monotonic() - self._started, 1e-9)
        rate = (completed if counted is None else counted) / elapsed
        self._progress.update(self._task, completed=completed, rate=f"{rate:,.2f} {self.unit}/s", extra=extra)
        if self._lines is not None:
            self._lines.update(completed, extra)

    def advance(self, n: int) -> None:
        self.update(int(self._progress.tasks[0].completed) + n)

    def show_stats(self, stats: RunStats) -> None:
        """A batch run's line: features finished, their rate, tokens, cost and failures so far."""
        cost = f"${stats.cost_usd:.4f}" if stats.cost_known else "cost n/a"
        self.update(stats.done + stats.failed + stats.skipped, counted=stats.done + stats.failed,
                    extra=f"{stats.done} done, {stats.failed} failed, {stats.skipped} skipped, "
                          f"{stats.prompt_tokens + stats.completion_tokens:,} tok, {cost}")


class _ProgressLines:
    """`label: 40/200, <extra>, 12.3 s` on stderr, every `every_items` items or `every_s` seconds, and once
    more at the end unless the last line already said it."""

    def __init__(self, total: int, label: str, every_items: int, every_s: float) -> None:
        self.total, self.label, self.every_items, self.every_s = total, label, every_items, every_s
        self._started = self._printed_at = time.monotonic()
        self._completed, self._extra = 0, ""
        self._printed: int | None = None

    def update(self, completed: int, extra: str) -> None:
        self._completed, self._extra = completed, extra
        now = time.monotonic()
        due = completed - (self._printed or 0) >= self.every_items or completed >= self.total
        if (due and completed != self._printed) or now - self._printed_at >= self.every_s:
            self._print(now)

    def finish(self) -> None:
        if self._completed != (self._printed or 0):
            self._print(time.monotonic())

    def _print(self, now: float) -> None:
        extra = f", {self._extra}" if self._extra else ""
        print(f"{self.label}: {self._completed:,}/{self.total:,}{extra}, {now - self._started:.1f} s",
              file=sys.stderr, flush=True)
        self._printed, self._printed_at = self._completed, now
