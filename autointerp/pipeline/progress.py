"""The progress bar every command shows on stderr (rich): items done of total, rate, and a free text
field (tokens, cost, failures). Display only: the run's database record lives in `run_record`."""

from __future__ import annotations

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

from autointerp.pipeline.run_stats import RunStats


class ProgressDisplay:
    """A bar for `total` items named `label`; `show=False` (not a terminal, API jobs) draws nothing."""

    def __init__(self, total: int, *, label: str = "features", unit: str = "feat", show: bool = True) -> None:
        self.unit = unit
        self._started = time.monotonic()
        self._progress = Progress(
            TextColumn(f"[bold]{label}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rate]}"),
            TextColumn("{task.fields[extra]}"), TimeElapsedColumn(), TimeRemainingColumn(),
            console=Console(stderr=True), disable=not show, transient=False,
        )
        self._task = self._progress.add_task(label, total=total, rate="", extra="")

    def __enter__(self) -> ProgressDisplay:
        self._progress.start()
        return self

    def __exit__(
        self, _type: type[BaseException] | None, _exc: BaseException | None, _tb: TracebackType | None
    ) -> None:
        self._progress.stop()

    def update(self, completed: int, *, counted: int | None = None, extra: str = "") -> None:
        """`completed` moves the bar; the rate counts `counted` (default: completed) per second."""
        elapsed = max(time.monotonic() - self._started, 1e-9)
        rate = (completed if counted is None else counted) / elapsed
        self._progress.update(self._task, completed=completed, rate=f"{rate:,.2f} {self.unit}/s", extra=extra)

    def advance(self, n: int) -> None:
        self.update(int(self._progress.tasks[0].completed) + n)

    def show_stats(self, stats: RunStats) -> None:
        """A batch run's line: features finished, their rate, tokens, cost and failures so far."""
        cost = f"${stats.cost_usd:.4f}" if stats.cost_known else "cost n/a"
        self.update(stats.done + stats.failed + stats.skipped, counted=stats.done + stats.failed,
                    extra=f"{stats.prompt_tokens + stats.completion_tokens:,} tok {cost} failed {stats.failed}")
