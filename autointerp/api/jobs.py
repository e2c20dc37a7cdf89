"""Batch jobs from the API: explain or rescore in a background thread of the serve process, followed through
the Run row the pipeline keeps up to date (status, and stats with features done/total/failed, tokens, cost)."""

from __future__ import annotations

import dataclasses
import logging
import threading
from typing import Annotated, Any, Callable

from fastapi import APIRouter, Body, Depends, HTTPException, Query, Request
from sqlalchemy import select
from sqlalchemy.orm import Session

from autointerp.api.deps import get_session
from autointerp.api.security import require_write_token
from storage.db import Database
from storage.schema import Run

log = logging.getLogger(__name__)

JOB_KINDS = ("explain", "rescore")
MAX_JOBS_LISTED = 200

router = APIRouter(prefix="/api/jobs", tags=["jobs"])


def _pipeline(kind: str) -> tuple[type, Callable[..., int]]:
    # Imported on first use: the pipeline pulls in model and LLM code the read-only viewer never needs.
    from autointerp import pipeline

    if kind == "explain":
        return pipeline.ExplainOptions, pipeline.run_explain
    return pipeline.RescoreOptions, pipeline.run_rescore


def build_options(kind: str, body: dict[str, Any]) -> Any:
    """The pipeline's options dataclass for `kind` from a JSON body; ValueError names the bad key."""
    options_cls, _ = _pipeline(kind)
    # The server talks only to the endpoints it was configured with (OPENAI_BASE_URL): a job may not name a
    # URL; and the run row is the API's to create.
    allowed = {f.name for f in dataclasses.fields(options_cls) if not f.name.endswith("url") and f.name != "run_id"}
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise ValueError(f"unknown or forbidden option(s) {unknown} for a {kind} job; allowed: {sorted(allowed)}")
    try:
        return options_cls(**body)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"invalid {kind} job options: {exc}") from None


def run_dict(run: Run) -> dict[str, Any]:
    return {
        "id": run.id, "kind": run.kind, "status": run.status, "config": run.config, "stats": run.stats,
        "started_at": run.started_at.isoformat() if run.started_at else None,
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
    }


class JobRunner:
    """Starts pipeline runs in daemon threads and remembers which runs this process is executing."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._threads: dict[int, threading.Thread] = {}
        self._lock = threading.Lock()

    def submit(self, kind: str, body: dict[str, Any]) -> int:
        options = build_options(kind, body)
        options_cls, run_fn = _pipeline(kind)
        if "run_id" not in {f.name for f in dataclasses.fields(options_cls)}:
            raise RuntimeError(f"this pipeline's {options_cls.__name__} has no run_id option, so a job cannot be followed")
        with self.db.session() as session, session.begin():
            run = Run(kind=kind, status="queued", config={"submitted_via": "api", **_jsonable(body)}, stats={})
            session.add(run)
            session.flush()
            run_id = run.id
        options = dataclasses.replace(options, run_id=run_id)
        thread = threading.Thread(target=self._execute, args=(run_fn, options, run_id), name=f"job-{run_id}", daemon=True)
        with self._lock:
            self._threads[run_id] = thread
        thread.start()
        return run_id

    def _execute(self, run_fn: Callable[..., int], options: Any, run_id: int) -> None:
        try:
            run_fn(self.db, options)
        except Exception as exc:  # the pipeline records its own failures; this catches those before it could
            log.exception("job %s failed", run_id)
            with self.db.session() as session, session.begin():
                run = session.get(Run, run_id)
                if run is not None and run.status in ("queued", "running"):
                    run.status = "failed"
                    run.stats = {**(run.stats or {}), "error": f"{type(exc).__name__}: {exc}"}

    def active(self, run_id: int) -> bool:
        with self._lock:
            thread = self._threads.get(run_id)
        return thread is not None and thread.is_alive()


def _jsonable(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if isinstance(v, (str, int, float, bool, list, type(None)))}


def get_runner(request: Request) -> JobRunner:
    return request.app.state.jobs


@router.post("", status_code=202, dependencies=[Depends(require_write_token)], summary="Start an explain or rescore job")
def submit_job(
    body: Annotated[dict[str, Any], Body(examples=[{"kind": "explain", "model": "gemma-3-270m", "layer": 6}])],
    runner: JobRunner = Depends(get_runner),
) -> dict[str, Any]:
    kind = body.get("kind")
    if kind not in JOB_KINDS:
        raise HTTPException(422, f"kind must be one of {list(JOB_KINDS)} (got {kind!r})")
    options = {k: v for k, v in body.items() if k != "kind"}
    try:
        run_id = runner.submit(kind, options)
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    return {"run_id": run_id, "status_url": f"/api/jobs/{run_id}"}


@router.get("", summary="Recent explain and rescore runs with their progress")
def list_jobs(
    limit: Annotated[int, Query(ge=1, le=MAX_JOBS_LISTED)] = 50,
    session: Session = Depends(get_session),
    runner: JobRunner = Depends(get_runner),
) -> list[dict[str, Any]]:
    runs = session.scalars(select(Run).where(Run.kind.in_(JOB_KINDS)).order_by(Run.id.desc()).limit(limit))
    return [{**run_dict(r), "active_here": runner.active(r.id)} for r in runs]


@router.get("/{run_id}", summary="One run with its progress")
def get_job(run_id: int, session: Session = Depends(get_session), runner: JobRunner = Depends(get_runner)) -> dict[str, Any]:
    run = session.get(Run, run_id)
    if run is None:
        raise HTTPException(404, f"no run with id {run_id}")
    return {**run_dict(run), "active_here": runner.active(run_id)}
