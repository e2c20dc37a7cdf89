"""Scores of the example scorers (detection, fuzzing, embedding): which explanations already have them under a
scorer configuration, and storing them. They have no simulation row: `Score.simulator` holds the scorer's spec
(e.g. `detection:openai:gpt-4o-mini`), `scorer_hash` its configuration. A scorer whose judgements all failed on
some subset stores that subset as undefined with a reason starting "failed:"; such an explanation counts as not
yet scored, and the next run replaces its rows."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from activations.vocab import ScoreRole
from scorer import ScoreValue
from storage.core import repository as repo
from storage.core.schema import Explanation, Feature, Score
from storage.results import outcome_store

FAILED_PREFIX = "failed:"
# A shuffled baseline's details name the other feature's explanation it judged (there is no simulation row to).
SHUFFLED_EXPLANATION_KEY = "shuffled_explanation_id"


def example_scored(session: Session, explanation_ids: Sequence[int], *, methods: Sequence[str], scorer_config: dict,
                   role: str = ScoreRole.OWN) -> set[int]:
    """Which of these explanations have this scorer's scores under this configuration (and role), none failed."""
    if not explanation_ids:
        return set()
    rows = session.execute(select(Score.explanation_id, Score.undefined_reason).where(
        Score.explanation_id.in_(list(explanation_ids)), Score.method.in_(list(methods)),
        Score.scorer_hash == repo.config_hash(scorer_config), Score.role == role, Score.simulation_id.is_(None)))
    scored: set[int] = set()
    failed: set[int] = set()
    for explanation_id, reason in rows:
        (failed if reason and reason.startswith(FAILED_PREFIX) else scored).add(explanation_id)
    return scored - failed


def store_example_scores(session: Session, explanation: Explanation, feature: Feature, scores: Sequence[ScoreValue], *,
                         scorer_spec: str, scorer_config: dict, run_id: int | None) -> None:
    """Store one scorer's scores of one explanation (all one role), replacing that scorer's earlier rows for it
    under the same configuration and role (a failed attempt)."""
    methods = sorted({s.method for s in scores})
    roles = {s.role for s in scores}
    session.execute(delete(Score).where(
        Score.explanation_id == explanation.id, Score.method.in_(methods), Score.role.in_(roles),
        Score.scorer_hash == repo.config_hash(scorer_config), Score.simulation_id.is_(None)))
    # The configuration itself beside its hash, so a score says how it was made (judge, prompt version, sizes).
    described = [replace(s, details={**s.details, "scorer_config": scorer_config}) for s in scores]
    outcome_store.store_scores(session, explanation, feature, None, described, simulator=scorer_spec, run_id=run_id,
                               scorer_config=scorer_config)
