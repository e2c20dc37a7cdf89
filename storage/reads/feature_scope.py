"""Which features a model / layer / kind / SAE filter selects, and a clear error when it selects none, naming
what the database does hold: a misspelt model must not read as "no results" (query, export)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from storage.core.schema import Feature, SubjectModel
from storage.reads.queries import QueryError, list_models


def scope_conds(*, model: str | None = None, layer: int | None = None, kind: str | None = None,
                sae: str | None = None) -> list[Any]:
    """Conditions on features joined with their subject model."""
    conds: list[Any] = []
    if model is not None:
        conds.append(SubjectModel.name == model)
    if layer is not None:
        conds.append(Feature.layer == layer)
    if kind is not None:
        conds.append(Feature.kind == kind)
    if sae is not None:
        conds.append(Feature.sae_key == sae)
    return conds


def check_scope(session: Session, *, model: str | None = None, layer: int | None = None, kind: str | None = None,
                sae: str | None = None) -> None:
    """Raise QueryError when the filters given select no feature at all (no filter: nothing to check)."""
    conds = scope_conds(model=model, layer=layer, kind=kind, sae=sae)
    if not conds:
        return
    found = session.scalar(select(Feature.id).join(SubjectModel, SubjectModel.id == Feature.model_id)
                           .where(*conds).limit(1))
    if found is not None:
        return
    named: dict[str, object] = {"model": model, "layer": layer, "kind": kind, "sae": sae}
    asked = ", ".join(f"{key} {value!r}" if isinstance(value, str) else f"{key} {value}"
                      for key, value in named.items() if value is not None)
    raise QueryError(f"no feature in this database matches {asked}; {held(session)}")


def held(session: Session) -> str:
    """What the database holds, in a line: each model's layers (with kind and SAE), or that it holds nothing."""
    models = list_models(session)
    if not models:
        return "the database has no features yet: collect or import some first (autointerp collect / import)"
    parts = []
    for m in models:
        layers = [f"{layer['layer']} ({layer['kind']}{', SAE ' + layer['sae'] if layer['sae'] else ''})"
                  for layer in m["layers"]]
        parts.append(f"{m['model']} layer{'s' if len(layers) > 1 else ''} {', '.join(layers)}" if layers
                     else f"{m['model']} (no features)")
    return "it has: " + "; ".join(parts)
