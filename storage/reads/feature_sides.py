"""The two sides of a signed feature, as query, the API and the viewer show them: which side is larger (by the
feature's maximum and minimum activation) and, per polarity explained, its explanation and best score."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from activations.vocab import Polarity, ScoreRole
from storage.core.in_lists import chunks
from storage.core.repository import current_explanations
from storage.core.schema import Explanation, Feature, Score
from storage.reads.score_source import current_version, measured


def larger_side(max_activation: float | None, min_activation: float | None) -> str | None:
    """`negative` when the feature reaches further below zero than above it (|min| > max), else `positive`; None
    when its minimum is not known (imports that give no statistics)."""
    if max_activation is None or min_activation is None:
        return None
    return Polarity.NEGATIVE.value if -min_activation > max_activation else Polarity.POSITIVE.value


def _best_per_side(session: Session, feature_ids: Sequence[int], method: str,
                   subset: str) -> dict[tuple[int, str], tuple[float, int]]:
    """(feature id, polarity) -> (best own score, its explanation id) under `method` and `subset`, as the
    ranking counts scores: defined, of the current scoring version, measured here."""
    stmt = (select(Score.feature_id, Explanation.polarity, Score.value, Score.explanation_id)
            .join(Explanation, Explanation.id == Score.explanation_id)
            .where(Score.method == method, Score.subset == subset, Score.role == ScoreRole.OWN,
                   Score.value.is_not(None), current_version(method, Score.scorer_hash, Score.simulator),
                   measured(Score.simulator))
            .order_by(Score.value.desc(), Score.id.desc()))
    best: dict[tuple[int, str], tuple[float, int]] = {}
    for chunk in chunks(feature_ids):
        for feature_id, polarity, value, explanation_id in session.execute(stmt.where(Score.feature_id.in_(chunk))):
            if value is not None:  # never: the conditions skip undefined scores
                best.setdefault((feature_id, polarity), (value, explanation_id))
    return best


def feature_sides(session: Session, feature_ids: Sequence[int], *, method: str,
                  subset: str) -> dict[int, dict[str, dict[str, Any]]]:
    """feature id -> polarity -> {explanation, explanation_id, explainer, score}: each polarity explained, with
    the explanation behind its best score under `method` and `subset` (its current explanation, score None, when
    it has no such score). Features with no explanation are absent; a side never explained is absent."""
    best = _best_per_side(session, feature_ids, method, subset)
    current = {(feature_id, polarity.value): row for polarity in Polarity
               for feature_id, row in current_explanations(session, feature_ids, polarity=polarity).items()}
    wanted = [explanation_id for _, explanation_id in best.values()]
    scored = {e.id: e for chunk in chunks(wanted)
              for e in session.scalars(select(Explanation).where(Explanation.id.in_(chunk)))}
    out: dict[int, dict[str, dict[str, Any]]] = {}
    for key in sorted(set(best) | set(current)):
        value, explanation = (best[key][0], scored[best[key][1]]) if key in best else (None, current[key])
        out.setdefault(key[0], {})[key[1]] = {"explanation": explanation.text, "explanation_id": explanation.id,
                                             "explainer": explanation.explainer, "score": value}
    return out


def side_fields(feature: Feature, sides: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The keys a feature's result gains: its minimum, which side is larger, and each side explained."""
    return {"min_activation": feature.min_activation,
            "larger_side": larger_side(feature.max_activation, feature.min_activation), "sides": sides}
