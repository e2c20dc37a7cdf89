"""Scores in aggregate: per layer, each stored method's distribution of own scores against its shuffled baseline
(the viewer's histograms)."""

from __future__ import annotations

from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from activations.vocab import ScoreRole
from storage.core.schema import Feature, Score, SubjectModel
from storage.reads.score_source import current_version, is_imported

N_BINS = 20


def _range(values: list[float]) -> tuple[float, float]:
    """One range for own and shuffled: [-1, 1] (or [0, 1] with no negative score), widened to the data
    (r² and absolute deviation explained can be far below -1 for a bad simulation)."""
    low, high = min(values, default=0.0), max(values, default=1.0)
    return min(low, -1.0 if low < 0 else 0.0), max(high, 1.0)


def score_histograms(session: Session, model: str, layer: int, *, kind: str | None = None, sae: str | None = None,
                     subset: str | None = None) -> dict[str, Any] | None:
    """Per (method, subset, simulator): histogram counts of own and of shuffled-baseline scores over the layer's
    features, on the same edges, plus counts of undefined scores. None when the model is unknown. Each
    explanation contributes its scores as stored (all runs), so a rescored layer shows every simulator apart."""
    model_id = session.scalar(select(SubjectModel.id).where(SubjectModel.name == model))
    if model_id is None:
        return None
    conds = [Score.model_id == model_id, Score.layer == layer,
             current_version(Score.method, Score.scorer_hash, Score.simulator)]
    if subset is not None:
        conds.append(Score.subset == subset)
    stmt = select(Score.method, Score.subset, Score.simulator, Score.role, Score.value)
    if kind is not None or sae is not None:
        stmt = stmt.join(Feature, Feature.id == Score.feature_id)
        if kind is not None:
            conds.append(Feature.kind == kind)
        if sae is not None:
            conds.append(Feature.sae_key == sae)
    groups: dict[tuple[str, str, str], dict[str, list[float | None]]] = {}
    for method, subset_, simulator, role, value in session.execute(stmt.where(*conds)):
        roles = groups.setdefault((method, subset_, simulator or ""), {ScoreRole.OWN: [], ScoreRole.SHUFFLED: []})
        roles.setdefault(role, []).append(value)
    histograms = []
    for (method, subset_, simulator), roles in sorted(groups.items()):
        defined = {role: [v for v in values if v is not None] for role, values in roles.items()}
        span = _range(defined[ScoreRole.OWN] + defined[ScoreRole.SHUFFLED])
        # Equal bins given by count and range: numpy bins a value by arithmetic, so 0.2 lands in [0.2, 0.3)
        # rather than on whichever side of a rounded edge it falls.
        edges = [float(e) for e in np.histogram_bin_edges([], bins=N_BINS, range=span)]
        entry: dict[str, Any] = {"method": method, "subset": subset_, "simulator": simulator or None,
                                 "imported": is_imported(simulator), "edges": edges}
        for role in (ScoreRole.OWN, ScoreRole.SHUFFLED):
            counts, _ = np.histogram(defined[role], bins=N_BINS, range=span)
            entry[role.value] = {"counts": [int(c) for c in counts], "n": len(defined[role]),
                                 "undefined": len(roles[role]) - len(defined[role]),
                                 "mean": float(np.mean(defined[role])) if defined[role] else None}
        histograms.append(entry)
    return {"model": model, "layer": layer, "kind": kind, "sae": sae, "histograms": histograms}
