"""The scores one run wrote, for its summary: own beside shuffled, per scored explanation."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from activations.vocab import ScoreRole
from storage.core.schema import Explanation, Feature, Score


def run_scores(session: Session, run_id: int, *, method: str, subset: str) -> list[dict[str, Any]]:
    """Own and shuffled scores a run wrote, one dict per scored explanation (index, polarity, explanation, score,
    shuffled), best first."""
    rows = session.execute(
        select(Feature.index, Explanation.text, Explanation.polarity, Score.role, Score.value, Score.explanation_id)
        .join(Explanation, Explanation.id == Score.explanation_id)
        .join(Feature, Feature.id == Score.feature_id)
        .where(Score.run_id == run_id, Score.method == method, Score.subset == subset)
    ).all()
    by_explanation: dict[int, dict[str, Any]] = {}
    for index, text_, polarity, role, value, explanation_id in rows:
        item = by_explanation.setdefault(explanation_id, {"index": index, "polarity": polarity, "explanation": text_,
                                                          "score": None, "shuffled": None})
        item["score" if role == ScoreRole.OWN else "shuffled"] = value
    return sorted(by_explanation.values(), key=lambda r: (r["score"] is None, -(r["score"] or 0.0)))
