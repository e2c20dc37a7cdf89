"""What a batch run counts as features finish: done, skipped, failed, and the LLM usage behind them."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

from activations.vocab import FailureKind


@dataclass
class RunStats:
    total: int = 0
    done: int = 0  # explained (or scored) and stored by this run
    skipped: int = 0  # finished in an earlier run of the same configuration
    finished_elsewhere: int = 0  # done by this run too, but another run stored its result first: not this run's
    failed: int = 0
    endpoint_failures: int = 0  # of the failed, those that failed on the endpoint (a rerun tries them again)
    input_failures: int = 0  # of the failed, those with nothing fit to send (dead features): no LLM call
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    cost_known: bool = True
    llm_requests: int = 0
    llm_retries: int = 0
    llm_failures: int = 0
    cache_hits: int = 0
    stopped_reason: str | None = None
    run_failed: bool = False  # stopped early as failed (--fail-fast): stopped_reason says why
    exit_code: int | None = None  # what the command exits with (autointerp.runtime.exit_codes), set at the end
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

    def record_failure(self, index: int, reason: str, kind: FailureKind | None = None) -> None:
        self.failed += 1
        self.endpoint_failures += kind == FailureKind.ENDPOINT
        self.input_failures += kind == FailureKind.INPUT
        if len(self.failures) < 200:
            self.failures[str(index)] = reason[:500]

    def record_outcome(self, index: int, written: bool, failure: str | None, kind: FailureKind | None) -> None:
        """Count one feature this run worked on: `written` False when another run stored its result first."""
        if not written:
            self.finished_elsewhere += 1
        elif failure is not None:
            self.record_failure(index, failure, kind)
        else:
            self.done += 1

    def fail_run(self, reason: str) -> None:
        """Stop the run as failed (it ends `failed`, exit code RUN_FAILED) for `reason`."""
        self.stopped_reason, self.run_failed = reason, True


def llm_counters(stats: dict) -> dict:
    """A run's stored (or RunStats.as_dict) LLM usage as client counters, the shape merge_llm_stats sums."""
    if not stats.get("llm_requests") and not stats.get("prompt_tokens"):
        return {}
    return {"prompt_tokens": stats.get("prompt_tokens", 0), "completion_tokens": stats.get("completion_tokens", 0),
            "cost_usd": stats.get("cost_usd") if stats.get("cost_known", True) else None,
            "requests": stats.get("llm_requests", 0), "retries": stats.get("llm_retries", 0),
            "failures": stats.get("llm_failures", 0), "cache_hits": stats.get("cache_hits", 0)}


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
