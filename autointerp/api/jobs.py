"""Batch jobs from the API: explain or rescore in a background thread of the serve process, followed through
the Run row the pipeline keeps up to date (status, and stats with features done/total/failed, tokens, cost)."""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Annotated, Any, Callable

from fastapi import APIRouter, Body, Depends, HTTPException, Query, Request
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from autointerp.api.deps import RowId, get_session
from autointerp.api.security import require_write_token
from storage.db import Database
from storage.schema import Run

log = logging.getLogger(__name__)

JOB_KINDS = ("explain", "rescore")
API_JOB_KEY = "api_job"
POLL_S = 0.05
MAX_JOBS_LISTED = 200

router = APIRouter(prefix="/api/jobs", tags=["jobs"])


def _pipeline(kind: str) -> tuple[type, Callable[..., int]]:
    # Imported on first use: the pipeline pulls in model and LLM code the read-only viewer never needs.
    if kind == "explain":
        from autointerp.pipeline.explain_run import run_explain
        from autointerp.pipeline.options import ExplainOptions

        return ExplainOptions, run_explain
    from autointerp.pipeline.options import RescoreOptions
    from autointerp.pipeline.rescore_run import run_rescore

    return RescoreOptions, run_rescore


def build_options(kind: str, body: dict[str, Any]) -> Any:
    """The pipeline's options dataclass for `kind` from a JSON body; ValueError names the bad key."""
    options_cls, _ = _pipeline(kind)
    # The server talks only to the endpoints it was configured with (OPENAI_BASE_URL): a job may not name a URL.
    allowed = {f.name for f in dataclasses.fields(options_cls) if not f.name.endswith("url")}
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise ValueError(f"unknown or forbidden option(s) {unknown} for a {kind} job; allowed: {sorted(allowed)}")
    if not isinstance(body.get("extra", {}), dict):
        raise ValueError("extra must be a JSON object")
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


@dataclass
class _Job:
    tag: str
    thread: threading.Thread | None = None
    error: BaseException | None = None
    finished: threading.Event = field(default_factory=threading.Event)


class JobRunner:
    """Starts pipeline runs in daemon threads and remembers which runs this process is executing.

    The pipeline creates its own Run row; a unique tag in the options' `extra` (recorded in the run's config)
    tells the submitter which row is its job's, so the run id can be returned as soon as the run starts.
    """

    def __init__(self, db: Database, *, start_timeout_s: float = 120.0) -> None:
        self.db = db
        self.start_timeout_s = start_timeout_s
        self._threads: dict[int, threading.Thread] = {}
        self._lock = threading.Lock()

    def submit(self, kind: str, body: dict[str, Any]) -> int:
        """Start a job; returns its run id once the run exists. Errors raised before that (bad options,
        nothing to do) propagate: ValueError for the caller's input."""
        options = build_options(kind, body)
        _, run_fn = _pipeline(kind)
        job = _Job(tag=uuid.uuid4().hex)
        options.extra = {**options.extra, API_JOB_KEY: job.tag}
        with self.db.session() as session:
            floor = session.scalar(select(func.max(Run.id))) or 0
        job.thread = threading.Thread(target=self._execute, args=(run_fn, options, job), name=f"job-{kind}", daemon=True)
        job.thread.start()
        run_id = self._wait_for_run(kind, floor, job)
        with self._lock:
            self._threads[run_id] = job.thread
        return run_id

    def _execute(self, run_fn: Callable[..., int], options: Any, job: _Job) -> None:
        try:
            run_fn(self.db, options, show_progress=False)
        except BaseException as exc:  # noqa: BLE001 - a job thread must record, not lose, its failure
            job.error = exc
            log.exception("job %s failed", job.tag)
            self._record_error(job, exc)
        finally:
            job.finished.set()

    def _find_run(self, kind: str, floor: int, tag: str) -> int | None:
        with self.db.session() as session:
            runs = session.scalars(select(Run).where(Run.id > floor, Run.kind == kind).order_by(Run.id))
            return next((r.id for r in runs if (r.config or {}).get("extra", {}).get(API_JOB_KEY) == tag), None)

    def _wait_for_run(self, kind: str, floor: int, job: _Job) -> int:
        deadline = time.monotonic() + self.start_timeout_s
        while True:
            ended = job.finished.wait(POLL_S)
            run_id = self._find_run(kind, floor, job.tag)
            if run_id is not None:
                return run_id
            if ended:
                if isinstance(job.error, ValueError):
                    raise ValueError(str(job.error))
                raise RuntimeError(f"the {kind} job ended before starting a run: {job.error!r}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"the {kind} job did not start a run within {self.start_timeout_s:.0f}s")

    def _record_error(self, job: _Job, exc: BaseException) -> None:
        # The pipeline marks its run failed; the reason goes into the stats so GET /api/jobs/{id} shows it.
        with self.db.session() as session, session.begin():
            for run in session.scalars(select(Run).where(Run.status.in_(("running", "failed"))).order_by(Run.id.desc()).limit(50)):
                if (run.config or {}).get("extra", {}).get(API_JOB_KEY) == job.tag:
                    run.stats = {**(run.stats or {}), "error": f"{type(exc).__name__}: {exc}"[:1000]}

    def active(self, run_id: int) -> bool:
        with self._lock:
            thread = self._threads.get(run_id)
        return thread is not None and thread.is_alive()


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
    except (RuntimeError, TimeoutError) as exc:
        raise HTTPException(500, str(exc)) from None
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
def get_job(run_id: RowId, session: Session = Depends(get_session), runner: JobRunner = Depends(get_runner)) -> dict[str, Any]:
    run = session.get(Run, run_id)
    if run is None:
        raise HTTPException(404, f"no run with id {run_id}")
    return {**run_dict(run), "active_here": runner.active(run_id)}
