"""The job's ledger, one Ray actor for the whole job: every worker reports its cumulative counts (features
done and failed, LLM tokens, cost, per-endpoint stats) and gets back whether to stop (the budget is the
job's, not each worker's). The driver reads the totals for its one progress bar and the run record.

Reports are cumulative per worker, so a lost or repeated report changes nothing, and a worker that died
keeps the spend it last reported."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from autointerp.pipeline.run_stats import merge_llm_stats
from llm_client.endpoints import merge_endpoint_stats


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


class JobLedger:
    def __init__(self, budget_usd: float | None) -> None:
        self.budget_usd = budget_usd
        self.reports: dict[str, WorkerReport] = {}
        self.stopped_reason: str | None = None

    def report(self, report: WorkerReport) -> bool:
        """Keep the worker's latest counts; True when the job must stop (budget spent)."""
        self.reports[report.worker] = report
        if self.budget_usd is not None and self.stopped_reason is None:
            cost = self.totals().llm.get("cost_usd") or 0.0
            if cost >= self.budget_usd:
                self.stopped_reason = f"budget of ${self.budget_usd} reached"
        return self.stopped_reason is not None

    def totals(self) -> JobTotals:
        reports = list(self.reports.values())
        failures: dict[str, str] = {}
        for r in reports:
            for index, reason in r.failures.items():
                if len(failures) < 200:
                    failures[index] = reason
        return JobTotals(
            done=sum(r.done for r in reports), failed=sum(r.failed for r in reports),
            lost=sum(r.lost for r in reports), failures=failures,
            llm=merge_llm_stats([r.llm for r in reports]) if reports else {},
            endpoints=merge_endpoint_stats([r.endpoints for r in reports]), stopped_reason=self.stopped_reason,
            workers=len(reports),
        )
