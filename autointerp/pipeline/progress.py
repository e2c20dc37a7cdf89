"""Run bookkeeping: counts a batch updates as features finish, mirrored into the run row (so the API can
follow a job) and a progress bar on stderr (features/s, tokens and cost so far)."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Callable

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from storage.db import Database
from storage.repository import finish_run
from storage.schema import Run


@dataclass
class RunStats:
    total: int = 0
    done: int = 0
    skipped: int = 0  # finished in an earlier run of the same configuration
    failed: int = 0
    in_flight: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    cost_known: bool = True
    llm_requests: int = 0
    llm_retries: int = 0
    llm_failures: int = 0
    cache_hits: int = 0
    stopped_reason: str | None = None
    failures: dict[str, str] = field(default_factory=dict)  # feature index -> reason (first 200 kept)
    started: float = field(default_factory=time.monotonic)

    def as_dict(self) -> dict:
        out = asdict(self)
        out.pop("started")
        out["elapsed_s"] = round(time.monotonic() - self.started, 2)
        return out

    def absorb_llm(self, stats: dict) -> None:
        """Copy the client's cumulative counters (they already sum the whole run)."""
        self.prompt_tokens = int(stats.get("prompt_tokens", 0))
        self.completion_tokens = int(stats.get("completion_tokens", 0))
        cost = stats.get("cost_usd")
        self.cost_known = cost is not None
        self.cost_usd = float(cost or 0.0)
        self.llm_requests = int(stats.get("requests", 0))
        self.llm_retries = int(stats.get("retries", 0))
        self.llm_failures = int(stats.get("failures", 0))
        self.cache_hits = int(stats.get("cache_hits", 0))


def merge_llm_stats(stats: list[dict]) -> dict:
    """Sum several clients' counters; the cost is unknown (None) only when no client knows its price."""
    out: dict = {}
    for one in stats:
        for key, value in one.items():
            if key != "cost_usd":
                out[key] = out.get(key, 0) + (value or 0)
    costs = [one.get("cost_usd") for one in stats if one.get("cost_usd") is not None]
    out["cost_usd"] = sum(costs) if costs else None
    return out


class RunTracker:
    """Owns a run's stats: shows them as a progress bar, mirrors them into the run row while the run
    goes, and on exit closes the row as done, stopped (budget), interrupted (Ctrl-C) or failed (with
    the error)."""

    def __init__(self, db: Database, run_id: int, total: int, *, show: bool = True, label: str = "features") -> None:
        self.db = db
        self.run_id = run_id
        self.stats = RunStats(total=total)
        self._last_save = 0.0
        self._progress = Progress(
            TextColumn(f"[bold]{label}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rate]}"),
            TextColumn("{task.fields[extra]}"), TimeElapsedColumn(), TimeRemainingColumn(),
            console=Console(stderr=True), disable=not show, transient=False,
        )
        self._task = self._progress.add_task(label, total=total, rate="", extra="")

    def __enter__(self) -> "RunTracker":
        self._progress.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, _tb: object) -> None:
        self.refresh()
        self._progress.stop()
        if exc_type is None:
            status = "stopped" if self.stats.stopped_reason else "done"
        elif issubclass(exc_type, KeyboardInterrupt):
            status = "interrupted"
        else:
            status = "failed"
            self.stats.stopped_reason = f"{exc_type.__name__}: {exc}"[:1000]
        with self.db.session() as session, session.begin():
            finish_run(session, session.get(Run, self.run_id), status, self.stats.as_dict())

    def refresh(self, *, force: bool = False, llm_stats: Callable[[], dict] | None = None) -> None:
        if llm_stats is not None:
            self.stats.absorb_llm(llm_stats())
        s = self.stats
        completed = s.done + s.failed + s.skipped
        elapsed = max(time.monotonic() - s.started, 1e-9)
        cost = f"${s.cost_usd:.4f}" if s.cost_known else "cost n/a"
        self._progress.update(
            self._task, completed=completed, rate=f"{(s.done + s.failed) / elapsed:.2f} feat/s",
            extra=f"{s.prompt_tokens + s.completion_tokens:,} tok {cost} failed {s.failed}",
        )
        now = time.monotonic()
        if force or now - self._last_save > 1.0:
            self._last_save = now
            with self.db.session() as session, session.begin():
                run = session.get(Run, self.run_id)
                if run is not None:
                    run.stats = s.as_dict()

    def record_failure(self, index: int, reason: str) -> None:
        self.stats.failed += 1
        if len(self.stats.failures) < 200:
            self.stats.failures[str(index)] = reason[:500]
