"""The end-of-run summary: what a run did (counts, failures, retries, tokens, cost) and its best features
next to their shuffled-explanation baselines."""

from __future__ import annotations

import statistics

from rich.console import Console
from rich.table import Table

from activations.vocab import ScoreMethod, ScoringSubset
from autointerp.runtime.exit_codes import exit_meaning
from storage.core.db import Database
from storage.reads.run_scores import run_scores
from storage.results.runs import get_run


def print_run_summary(db: Database, run_id: int, *, top: int = 15, console: Console | None = None,
                      show_exit: bool = True) -> None:
    """The run's counts, failures and best features; `show_exit` adds the exit code the command ends with (a
    command that does not end with it, such as the demo, leaves it out)."""
    console = console or Console()
    with db.session() as session:
        run = get_run(session, run_id)
        if run is None:
            raise LookupError(f"no run with id {run_id}")
        scores = run_scores(session, run_id, method=ScoreMethod.EV_CORRELATION, subset=ScoringSubset.TOP_AND_RANDOM)
    stats, status, kind = run["stats"], run["status"], run["kind"]
    own = [r["score"] for r in scores if r["score"] is not None]
    shuffled = [r["shuffled"] for r in scores if r["shuffled"] is not None]
    cost = f"${stats.get('cost_usd', 0):.4f}" if stats.get("cost_known", True) else "unknown (unpriced model)"
    elsewhere = stats.get("finished_elsewhere", 0)
    console.print(
        f"[bold]run {run_id}[/] ({kind}, {status}): {stats.get('done', 0)} done, {stats.get('skipped', 0)} skipped "
        f"(finished before), {f'{elsewhere} finished by another run, ' if elsewhere else ''}"
        f"{stats.get('failed', 0)} failed of {stats.get('total', 0)}; "
        f"LLM requests {stats.get('llm_requests', 0)} (retries {stats.get('llm_retries', 0)}, cache hits "
        f"{stats.get('cache_hits', 0)}); tokens {stats.get('prompt_tokens', 0) + stats.get('completion_tokens', 0):,}; "
        f"cost {cost}; {stats.get('elapsed_s', 0):.1f}s"
    )
    if stats.get("stopped_reason"):
        console.print(f"[yellow]stopped early: {stats['stopped_reason']}[/]")
    if stats.get("endpoint_failures"):
        console.print(f"{stats['endpoint_failures']} of the failed features failed on the endpoint: a rerun tries "
                      "them again (the other failures only with --retry-failed)")
    if show_exit and stats.get("exit_code") is not None:
        console.print(f"exit code {stats['exit_code']} ({exit_meaning(stats['exit_code'])})")
    if own:
        line = f"ev_correlation (top_and_random): mean {statistics.fmean(own):.3f}, median {statistics.median(own):.3f}"
        if shuffled:
            line += f"; shuffled-explanation baseline mean {statistics.fmean(shuffled):.3f}"
        console.print(line)
    for index, reason in list(stats.get("failures", {}).items())[:5]:
        console.print(f"[red]failed[/] feature {index}: {reason}")
    print_endpoints(stats.get("endpoints") or [], console)
    if scores:
        table = Table(title=f"best-explained features of run {run_id}")
        sided = any(r["polarity"] != "positive" for r in scores)  # a side column once a negative side is explained
        for column in ("feature", *(("side",) if sided else ()), "score", "shuffled", "explanation"):
            table.add_column(column, overflow="fold", max_width=80 if column == "explanation" else None)
        for r in scores[:top]:
            fmt = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
            table.add_row(str(r["index"]), *((r["polarity"],) if sided else ()), fmt(r["score"]), fmt(r["shuffled"]),
                          r["explanation"] or "")
        console.print(table)


def print_endpoints(endpoints: list[dict], console: Console) -> None:
    """One line per endpoint when there are several (or one failed): where the requests went and how they fared."""
    if len(endpoints) < 2 and not any(e["failures"] for e in endpoints):
        return
    for e in endpoints:
        latency = "-" if e["mean_latency_ms"] is None else f"{e['mean_latency_ms']:.0f} ms"
        rested = f", rested {e['rests']}x" if e["rests"] else ""
        console.print(f"endpoint {e['url']}: {e['requests']} requests, {e['failures']} failed{rested}, "
                      f"mean latency {latency}")
