"""Past runs of every kind (collect, explain, rescore): status (a run whose process died shows as `stale`),
duration, counts, requests, tokens and cost, as `autointerp runs` lists them."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query

from autointerp.api.deps import RowId, SessionDep
from autointerp.api.schemas import RunInfo
from storage.results import runs

MAX_RUNS_LISTED = 500

router = APIRouter(prefix="/api/runs", tags=["runs"])


@router.get("", response_model=list[RunInfo], summary="Runs of every kind, newest first")
def list_runs(session: SessionDep, limit: Annotated[int, Query(ge=1, le=MAX_RUNS_LISTED)] = 50) -> list[dict[str, Any]]:
    return runs.list_runs(session, limit=limit)


@router.get("/{run_id}", response_model=RunInfo, summary="One run")
def get_run(run_id: RowId, session: SessionDep) -> dict[str, Any]:
    run = runs.get_run(session, run_id)
    if run is None:
        raise HTTPException(404, f"no run with id {run_id} (list runs with GET /api/runs)")
    return run
