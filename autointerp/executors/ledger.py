"""The job's ledger, one Ray actor for the whole job: every worker reports its cumulative counts (features
done and failed, LLM tokens, cost, per-endpoint stats, its first outcomes) and gets back whether to stop: the
budget and --fail-fast are the job's, not each worker's. The driver reads the totals for its one progress bar
and the run record.

Reports are cumulative per worker, so a lost or repeated report changes nothing, and a worker that died
keeps the spend it last reported. The ledger itself restarts when its process dies (Ray runs its constructor
again): it starts from the counts the driver last stored in the run's row, and each worker's next report
brings back that worker's totals, so the budget holds across the restart."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from activations.vocab import FailureKind
from autointerp.runtime.fail_fast import FailFast
from autointerp.runtime.run_stats import llm_counters, merge_llm_stats
from llm_client.endpoints import merge_endpoint_stats
from storage.core.db import Database
from storage.results.runs import get_run

Outcome = tuple[str | None, FailureKind | None]  # a finished feature's failure reason and kind (None: it succeeded)


@dataclass
class WorkerReport:
    worker: str
    done: int = 0
    failed: int = 0
    lost: int = 0  # results dropped because the lease had passed to another worker
    skipped: int = 0  # the finishing pass's: explanations that already had every asked score
    failures: dict[str, str] = field(default_factory=dict)
    llm: dict[str, Any] = field(default_factory=dict)  # the worker's clients' merged counters
    endpoints: list[dict[str, Any]] = field(default_factory=list)
    outcomes: list[Outcome] = field(default_factory=list)  # its first outcomes that --fail-fast counts, in order

    def add_outcome(self, outcome: Outcome, fail_fast: int) -> None:
        """Keep the outcome for the ledger's --fail-fast watch: only a worker's first `fail_fast` can be among
        the job's first, and input failures (dead features) do not count."""
        if outcome[1] != FailureKind.INPUT and len(self.outcomes) < fail_fast:
            self.outcomes.append(outcome)


@dataclass
class JobTotals:
    done: int
    failed: int
    lost: int
    failures: dict[str, str]
    llm: dict[str, Any]
    endpoints: list[dict[str, Any]]
    stopped_reason: str | None
    workers: int
    run_failed: bool = False  # stopped by --fail-fast: the run ends `failed`


def stored_counts(db_url: str, run_id: int) -> WorkerReport:
    """What the driver last saved in the run's row, as one report: a restarted ledger's floor."""
    db = Database(db_url, migrate=False)
    try:
        with db.session() as session:
            stats = (get_run(session, run_id) or {}).get("stats") or {}
    finally:
        db.dispose()
    return WorkerReport("stored", done=int(stats.get("done", 0)), failed=int(stats.get("failed", 0)),
                        llm=llm_counters(stats))


def _at_least(summed: dict[str, Any], floor: dict[str, Any]) -> dict[str, Any]:
    """Counters no lower than the floor's (a restarted ledger that has not heard from every worker yet)."""
    out = dict(summed)
    for key, value in floor.items():
        if value is not None and (out.get(key) is None or out[key] < value):
            out[key] = value
    return out


class JobLedger:
    def __init__(self, budget_usd: float | None, fail_fast: int = 0, db_url: str | None = None,
                 run_id: int | None = None) -> None:
        self.budget_usd = budget_usd
        self.reports: dict[str, WorkerReport] = {}
        self.stopped_reason: str | None = None
        self.run_failed = False
        self.floor = stored_counts(db_url, run_id) if db_url and run_id is not None else WorkerReport("none")
        # A restarted ledger no longer knows the order of the job's first outcomes; once a feature succeeded, the
        # watch was over.
        self.fail_fast = FailFast(0 if self.floor.done else fail_fast)
        self.observed: dict[str, int] = {}  # worker -> how many of its outcomes the watch has seen

    def report(self, report: WorkerReport) -> bool:
        """Keep the worker's latest counts; True when the job must stop (budget spent, --fail-fast)."""
        self.reports[report.worker] = report
        self._watch(report)
        if self.budget_usd is not None and self.stopped_reason is None:
            cost = self.totals().llm.get("cost_usd") or 0.0
            if cost >= self.budget_usd:
                self.stopped_reason = f"budget of ${self.budget_usd} reached"
        return self.stopped_reason is not None

    def _watch(self, report: WorkerReport) -> None:
        seen = self.observed.get(report.worker, 0)
        self.observed[report.worker] = max(seen, len(report.outcomes))
        for failure, kind in report.outcomes[seen:]:
            reason = self.fail_fast.observe(failure, kind)
            if reason is not None and self.stopped_reason is None:
                self.stopped_reason, self.run_failed = reason, True

    def totals(self) -> JobTotals:
        reports = list(self.reports.values())
        failures: dict[str, str] = {}
        for r in reports:
            for index, reason in r.failures.items():
                if len(failures) < 200:
                    failures[index] = reason
        llm = merge_llm_stats([r.llm for r in reports]) if reports else {}
        return JobTotals(
            done=max(self.floor.done, sum(r.done for r in reports)),
            failed=max(self.floor.failed, sum(r.failed for r in reports)),
            lost=sum(r.lost for r in reports), failures=failures, llm=_at_least(llm, self.floor.llm),
            endpoints=merge_endpoint_stats([r.endpoints for r in reports]), stopped_reason=self.stopped_reason,
            workers=len(reports), run_failed=self.run_failed,
        )
