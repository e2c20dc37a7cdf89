"""Layer-wide read endpoints: the distribution of every stored score method against its shuffled baseline."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query

from autointerp.api.deps import SessionDep
from autointerp.api.features import MAX_NAME_CHARS, NAME_PATTERN, Kind, Name
from autointerp.api.schemas import LayerScoreHistograms
from storage.reads.score_stats import score_histograms

router = APIRouter(prefix="/api", tags=["layers"])


@router.get("/layers/{model:path}/{layer}/score_histograms", response_model=LayerScoreHistograms,
            summary="Per score method, subset and simulator: histograms of own scores and shuffled-baseline scores")
def layer_score_histograms(
    session: SessionDep,
    model: str,
    layer: int,
    kind: Kind = None,
    sae: Name = None,
    subset: Annotated[str | None, Query(max_length=30, pattern=NAME_PATTERN)] = None,
) -> dict[str, Any]:
    if len(model) > MAX_NAME_CHARS:
        raise HTTPException(422, f"model name is longer than {MAX_NAME_CHARS} characters")
    if layer < 0:
        raise HTTPException(422, f"layer must be >= 0 (got {layer})")
    result = score_histograms(session, model, layer, kind=kind, sae=sae, subset=subset)
    if result is None:
        raise HTTPException(404, f"no model {model!r} in this database (list what exists with GET /api/models)")
    return result
