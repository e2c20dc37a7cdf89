"""Stored rows as plain JSON-able dicts: the one mapping used by query output, the feature page, the API,
run listings and exports (the Parquet schema in `autointerp.export_writers` is held to these keys by a test)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from activations.vocab import RunStatus
from storage.core.activation_codec import decode
from storage.core.schema import ActivationRecordRow, Explanation, Feature, Run, Score, Simulation
from storage.reads.score_source import is_imported, scoring_version

# Runs whose heartbeat is older than this while `running` are shown as stale (see storage.results.runs).
STALE_AFTER = timedelta(seconds=60)


def iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def record_dict(row: ActivationRecordRow) -> dict[str, Any]:
    """A stored record (its `sample`: top | random | quantile:<i>); its tokens and provenance come from its
    window."""
    window = row.window
    activations = decode(row.activations)
    return {
        "id": row.id, "sample": row.sample, "data_split": row.data_split, "position": row.position,
        "tokens": window.tokens, "activations": activations, "max_activation": max(activations),
        "corpus": window.corpus, "document": window.document, "offset": window.offset,
    }


def feature_stats_dict(row: Feature) -> dict[str, Any]:
    return {
        "max_activation": row.max_activation, "min_activation": row.min_activation, "mean": row.mean,
        "variance": row.variance, "firing_fraction": row.firing_fraction, "n_tokens": row.n_tokens,
        "dead": row.dead, "quantile_boundaries": row.quantile_boundaries,
    }


def feature_key_dict(row: Feature, model_name: str) -> dict[str, Any]:
    return {"feature_id": row.id, "model": model_name, "layer": row.layer, "kind": row.kind,
            "sae": row.sae_key or None, "index": row.index}


def explanation_dict(row: Explanation) -> dict[str, Any]:
    return {
        "id": row.id, "feature_id": row.feature_id, "status": row.status, "text": row.text,
        "failure_reason": row.failure_reason, "explainer": row.explainer, "prompt_version": row.prompt_version,
        "params": row.params, "polarity": row.polarity, "candidate": row.candidate, "selected": row.selected,
        "prompt_tokens": row.prompt_tokens, "completion_tokens": row.completion_tokens, "cost_usd": row.cost_usd,
        "elapsed_s": row.elapsed_s, "run_id": row.run_id, "source": row.source, "created_at": iso(row.created_at),
    }


def score_dict(row: Score) -> dict[str, Any]:
    return {
        "id": row.id, "explanation_id": row.explanation_id, "simulation_id": row.simulation_id,
        "run_id": row.run_id, "method": row.method, "subset": row.subset, "role": row.role,
        "simulator": row.simulator, "imported": is_imported(row.simulator),  # a file's number, not measured here
        "scoring_version": scoring_version(row.method, row.scorer_hash, row.simulator),
        "value": row.value, "undefined_reason": row.undefined_reason,
        "ci_low": row.ci_low, "ci_high": row.ci_high, "n_records": row.n_records, "details": row.details,
        "created_at": iso(row.created_at),
    }


def simulation_dict(row: Simulation) -> dict[str, Any]:
    """A simulation without its per-record values (the feature page adds those)."""
    return {
        "id": row.id, "explanation_id": row.explanation_id, "simulator": row.simulator, "role": row.role,
        "status": row.status, "failure_reason": row.failure_reason, "params": row.params, "run_id": row.run_id,
        "created_at": iso(row.created_at),
    }


def shown_status(row: Run, now: datetime) -> str:
    """The stored status, except that a `running` run whose heartbeat stopped is `stale`."""
    if row.status != RunStatus.RUNNING:
        return row.status
    last = row.heartbeat_at or row.started_at
    if last is not None and last.tzinfo is None:  # SQLite hands back naive datetimes (stored as UTC)
        last = last.replace(tzinfo=UTC)
    return RunStatus.STALE if last is not None and now - last > STALE_AFTER else row.status


def run_dict(row: Run, *, now: datetime | None = None) -> dict[str, Any]:
    """A run with its status as a reader should see it and the headline counters of its stats."""
    now = now or datetime.now(UTC)
    stats = dict(row.stats or {})
    started, finished = _aware(row.started_at), _aware(row.finished_at)
    status = shown_status(row, now)
    # A stale run's duration ends at its last heartbeat, not now.
    end = finished or (now if status == RunStatus.RUNNING else _aware(row.heartbeat_at))
    return {
        "id": row.id, "kind": row.kind, "status": status, "config": row.config, "stats": stats,
        "started_at": iso(started), "finished_at": iso(finished), "heartbeat_at": iso(_aware(row.heartbeat_at)),
        "duration_s": round((end - started).total_seconds(), 2) if started and end else None,
        # An estimate only (`explain --dry-run` as a job): nothing was explained, whatever its status says.
        "dry_run": bool(stats.get("dry_run") or (row.config or {}).get("dry_run")),
        "exit_code": stats.get("exit_code"),
        "reason": stats.get("stopped_reason") or stats.get("error"),
        "done": stats.get("done"), "failed": stats.get("failed"),
        # not done by this run because already finished: before it started, or by another run meanwhile
        "skipped": None if "skipped" not in stats else stats["skipped"] + stats.get("finished_elsewhere", 0),
        "requests": stats.get("llm_requests"),
        "tokens": (
            stats.get("prompt_tokens", 0) + stats.get("completion_tokens", 0) if "prompt_tokens" in stats else None
        ),
        "cost_usd": stats.get("cost_usd") if stats.get("cost_known", True) else None,
    }


def _aware(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value
