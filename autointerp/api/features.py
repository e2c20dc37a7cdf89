"""Read endpoints: subject models, the ranked feature list (filters, keyword and semantic search), one feature."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, Request
from sqlalchemy.orm import Session

from activations.records import FeatureId, RecordError
from autointerp.api.deps import EmbedderDep, RowId, SessionDep
from autointerp.api.schemas import FeatureDetail, FeatureKind, FeaturePage, ModelInfo, SimilarFeatures
from storage.core.repository import find_feature
from storage.reads.feature_detail import feature_detail
from storage.reads.queries import (
    MAX_SEARCH_CHARS,
    FeatureQuery,
    check_method_subset,
    default_subset,
    list_models,
    query_features,
)
from storage.search.semantic import semantic_search, similar_features

MAX_PAGE_SIZE = 200
MAX_OFFSET = 10_000  # deeper pages walk too much of the score index; narrow the filters instead
MAX_SEMANTIC_CHARS = 500
MAX_NAME_CHARS = 300
NAME_PATTERN = r"^[a-z0-9_:.\-]+$"

router = APIRouter(prefix="/api", tags=["features"])

Name = Annotated[str | None, Query(max_length=MAX_NAME_CHARS)]
Layer = Annotated[int | None, Query(ge=0, le=100_000)]
Kind = Annotated[FeatureKind | None, Query()]

# Routes return storage's dicts; `response_model` validates and documents them (the return annotation says dict
# because that is what the function builds). Unset optional keys (`similarity`) stay out of the JSON.


@router.get("/models", response_model=list[ModelInfo],
            summary="Subject models with their layers, feature counts and SAEs")
def models(session: SessionDep) -> list[dict[str, Any]]:
    return list_models(session)


@router.get("/features", response_model=FeaturePage, response_model_exclude_unset=True,
            summary="Features sorted by score (or by similarity with `semantic`), paginated")
def features(
    request: Request,
    session: SessionDep,
    embedder: EmbedderDep,
    model: Name = None,
    layer: Layer = None,
    kind: Kind = None,
    sae: Name = None,
    min_score: Annotated[float | None,
                         Query(ge=-1e6, le=1e6, description="keep features scoring at least this")] = None,
    method: Annotated[str, Query(max_length=50, pattern=NAME_PATTERN)] = "ev_correlation",
    subset: Annotated[str | None, Query(max_length=30, pattern=NAME_PATTERN,
                                        description="default: the method's first subset")] = None,
    explainer: Name = None,
    simulator: Name = None,
    q: Annotated[str | None, Query(max_length=MAX_SEARCH_CHARS, description="keyword search in explanations")] = None,
    semantic: Annotated[str | None,
                        Query(max_length=MAX_SEMANTIC_CHARS, description="rank by meaning of explanations")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    polarity: Annotated[Literal["positive", "negative"] | None, Query(
        description="rank by the scores of this side's explanations only (default: either side)")] = None,
    include_imported: Annotated[bool, Query(
        description="let scores imported from files (no simulator here, no baseline) rank and head features; "
                    "such a score is marked score_imported")] = False,
) -> dict[str, Any]:
    subset = subset or default_subset(method)
    check_method_subset(method, subset)  # a QueryError: answered 400 by the app's handler
    query = FeatureQuery(
        model=model, layer=layer, kind=kind, sae=sae, min_score=min_score, search=q or None,
        explainer=explainer, simulator=simulator, method=method, subset=subset, limit=limit + 1, offset=offset,
        include_imported=include_imported, polarity=polarity,
    )
    if semantic is not None and semantic.strip():
        result = semantic_search(session, query, semantic, embedder=embedder.name, embed=embedder,
                                 index_root=request.app.state.index_root)
        session.commit()  # keep the embeddings computed for this search
        items = result.items
        return {"items": items[:limit], "limit": limit, "offset": offset, "has_more": len(items) > limit,
                "order": "similarity", "not_embedded": result.not_embedded, "search_mode": result.mode}
    items = query_features(session, query)
    return {"items": items[:limit], "limit": limit, "offset": offset, "has_more": len(items) > limit, "order": "score"}


@router.get("/features/by-key", response_model=FeatureDetail, summary="One feature by model, layer, index (and SAE)")
def feature_by_key(
    session: SessionDep,
    model: Annotated[str, Query(max_length=MAX_NAME_CHARS)],
    layer: Annotated[int, Query(ge=0)],
    index: Annotated[int, Query(ge=0)],
    sae: Name = None,
    kind: Kind = None,
) -> dict[str, Any]:
    try:
        kind = kind or ("sae_latent" if sae else "mlp_neuron")
        fid = FeatureId(model=model, layer=layer, kind=kind, index=index, sae=sae)
    except RecordError as exc:
        raise HTTPException(422, str(exc)) from None
    row = find_feature(session, fid)
    if row is None:
        raise HTTPException(404, f"no feature {fid} in this database (list what exists with GET /api/models)")
    return _detail_or_404(session, row.id)


@router.get("/features/{feature_id}", response_model=FeatureDetail,
            summary="One feature: stats, records, explanations, scores, simulations")
def feature(feature_id: RowId, session: SessionDep) -> dict[str, Any]:
    return _detail_or_404(session, feature_id)


@router.get("/features/{feature_id}/similar", response_model=SimilarFeatures, response_model_exclude_unset=True,
            summary="Features whose explanations mean something close")
def similar(
    request: Request,
    feature_id: RowId,
    session: SessionDep,
    embedder: EmbedderDep,
    limit: Annotated[int, Query(ge=1, le=50)] = 10,
) -> dict[str, Any]:
    result = similar_features(session, feature_id, embedder=embedder.name, embed=embedder, limit=limit,
                              index_root=request.app.state.index_root)
    session.commit()
    return {"items": result.items, "not_embedded": result.not_embedded, "search_mode": result.mode}


def _detail_or_404(session: Session, feature_id: int) -> dict[str, Any]:
    detail = feature_detail(session, feature_id)
    if detail is None:
        raise HTTPException(404, f"no feature with id {feature_id}")
    return detail
