"""Storing the scores of the example scorers (detection, fuzzing, embedding). They have no simulation row:
`Score.simulator` holds the scorer's spec (e.g. `detection:openai:gpt-4o-mini`), `scorer_hash` its configuration.
A scorer whose judgements all failed on some subset stores that subset as undefined with a reason starting
`already_done.FAILED_PREFIX`; such an explanation counts as not yet scored (`already_done.example_scored`), and
the next run replaces its rows."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from sqlalchemy import delete
from sqlalchemy.orm import Session

from scorer import ScoreValue
from storage.core import repository as repo
from storage.core.schema import Explanation, Feature, Score
from storage.results import outcome_store

# A shuffled baseline's details name the other feature's explanation it judged (there is no simulation row to).
SHUFFLED_EXPLANATION_KEY = "shuffled_explanation_id"


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
    outcome_store.save_evaluation(session, explanation, feature,
                                  outcome_store.Evaluation(scorer_spec, scorer_config, described), run_id=run_id)
