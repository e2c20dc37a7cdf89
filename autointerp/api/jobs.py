"""Batch jobs from the API: explain or rescore in a background thread of the serve process. The API creates
the run row itself and hands its id to the pipeline, which keeps it up to date (status, and stats with
features done/total/failed, tokens, cost); GET /api/jobs/{id} reads it back."""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, HTTPException, Query, Request

from activations.vocab import RunKind, RunStatus
from autointerp.api.deps import RowId, SessionDep
from autointerp.api.schemas import Job, JobStarted
from autointerp.api.security import require_write_token
from autointerp.workflows.options import ExplainOptions, RescoreOptions
from autointerp.workflows.selection import check_selection
from storage.core.db import Database
from storage.results import runs

log = logging.getLogger(__name__)

JOB_KINDS = (RunKind.EXPLAIN, RunKind.RESCORE)
MAX_JOBS_LISTED = 200

router = APIRouter(prefix="/api/jobs", tags=["jobs"])


# Options renamed, by their old names: a body may still use the old one for one release (the new one wins when a
# body gives both).
DEPRECATED_OPTIONS = {"sanity": "shuffled_baseline"}


def _current_names(body: dict[str, Any]) -> dict[str, Any]:
    """`body` with deprecated option names replaced by the current ones."""
    out = dict(body)
    for old, new in DEPRECATED_OPTIONS.items():
        if old in out:
            value = out.pop(old)
            out.setdefault(new, value)
            log.warning("job option %r is deprecated; use %r", old, new)
    return out


def build_options(kind: str, body: dict[str, Any], *, base_url: str | None) -> ExplainOptions | RescoreOptions:
    """The pipeline's options for `kind` from a JSON body; ValueError names the bad key."""
    body = _current_names(body)
    options_cls: type[ExplainOptions | RescoreOptions] = ExplainOptions if kind == RunKind.EXPLAIN else RescoreOptions
    # The server talks only to the endpoint it was configured with: a job may not name a URL.
    url_fields = {f.name for f in dataclasses.fields(options_cls) if f.name.endswith("url")}
    allowed = {f.name for f in dataclasses.fields(options_cls)} - url_fields
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise ValueError(f"unknown or forbidden option(s) {unknown} for a {kind} job; allowed: {sorted(allowed)}")
    try:
        return options_cls(**body, **dict.fromkeys(url_fields, base_url))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"invalid {kind} job options: {exc}") from None


Work = Callable[[Database, int], object]  # (database, run id): fills in and finishes the run row


def _work(options: ExplainOptions | RescoreOptions) -> Work:
    """What the job thread does. Imported on first use: the pipeline pulls in model and LLM code the
    read-only viewer never needs."""
    if isinstance(options, RescoreOptions):
        from autointerp.workflows.rescore_run import run_rescore

        return lambda db, run_id: run_rescore(db, options, run_id=run_id, show_progress=False)
    if options.dry_run:
        from autointerp.workflows.dry_run import estimate

        def dry_run(db: Database, run_id: int) -> None:
            # An estimate only, sending nothing to any LLM: the estimate is the run's result.
            result = estimate(db, options)
            with db.session() as session, session.begin():
                runs.finish_run(session, run_id, RunStatus.DONE, {"dry_run": True, "estimate": result})

        return dry_run
    from autointerp.workflows.explain_run import run_explain

    return lambda db, run_id: run_explain(db, options, run_id=run_id, show_progress=False)


class JobRunner:
    """Starts jobs in daemon threads and remembers which runs this process is executing."""

    def __init__(self, db: Database, *, base_url: str | None = None) -> None:
        self.db = db
        self.base_url = base_url
        self._threads: dict[int, threading.Thread] = {}
        self._lock = threading.Lock()

    def submit(self, kind: str, body: dict[str, Any]) -> int:
        """Check the job, create its run row and start it; returns the run id. Bad options and a selection
        that is not in the database raise ValueError (the caller's input); later errors go on the row."""
        options = build_options(kind, body, base_url=self.base_url)
        check_selection(self.db, options)
        work = _work(options)
        with self.db.session() as session, session.begin():
            run_id = runs.start_run(session, kind, options.as_dict())
        thread = threading.Thread(target=self._execute, args=(work, run_id), name=f"job-{run_id}", daemon=True)
        with self._lock:
            self._threads[run_id] = thread
        thread.start()
        return run_id

    def _execute(self, work: Work, run_id: int) -> None:
        try:
            work(self.db, run_id)
        except BaseException as exc:  # a job thread must record, not lose, its failure
            log.exception("job %s failed", run_id)
            self._record_failure(run_id, f"{type(exc).__name__}: {exc}")

    def _record_failure(self, run_id: int, message: str) -> None:
        # The pipeline marks its run failed once it has taken the row; an error before that leaves it running.
        with self.db.session() as session, session.begin():
            run = runs.get_run(session, run_id)
            if run is not None and run["status"] in (RunStatus.RUNNING, RunStatus.STALE):
                runs.finish_run(session, run_id, RunStatus.FAILED)
            runs.add_error(session, run_id, message)

    def active(self, run_id: int) -> bool:
        with self._lock:
            thread = self._threads.get(run_id)
        return thread is not None and thread.is_alive()


def get_runner(request: Request) -> JobRunner:
    return request.app.state.jobs


RunnerDep = Annotated[JobRunner, Depends(get_runner)]


@router.post("", status_code=202, dependencies=[Depends(require_write_token)],
             summary="Start an explain or rescore job")
def submit_job(
    body: Annotated[dict[str, Any], Body(examples=[{"kind": "explain", "model": "gemma-3-270m", "layer": 6}])],
    runner: RunnerDep,
) -> JobStarted:
    kind = body.get("kind")
    if kind not in JOB_KINDS:
        raise HTTPException(422, f"kind must be one of {[str(k) for k in JOB_KINDS]} (got {kind!r})")
    try:
        run_id = runner.submit(kind, {k: v for k, v in body.items() if k != "kind"})
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    return JobStarted(run_id=run_id, status_url=f"/api/jobs/{run_id}")


@router.get("", response_model=list[Job], summary="Recent explain and rescore runs with their progress")
def list_jobs(
    session: SessionDep, runner: RunnerDep, limit: Annotated[int, Query(ge=1, le=MAX_JOBS_LISTED)] = 50,
) -> list[dict[str, Any]]:
    listed = runs.list_runs(session, kinds=JOB_KINDS, limit=limit)
    return [{**run, "active_here": runner.active(run["id"])} for run in listed]


@router.get("/{run_id}", response_model=Job, summary="One run with its progress")
def get_job(run_id: RowId, session: SessionDep, runner: RunnerDep) -> dict[str, Any]:
    run = runs.get_run(session, run_id)
    if run is None:
        raise HTTPException(404, f"no run with id {run_id}")
    return {**run, "active_here": runner.active(run_id)}
