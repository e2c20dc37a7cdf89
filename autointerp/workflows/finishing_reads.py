"""What the finishing pass still has to do for each explanation, read a chunk of explanations at a time: first
which of them lack a shuffled baseline or an example scorer's scores (explanations lacking nothing cost no record
read), then, once for both passes, the records of the features of those that lack something."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from activations.records import FeatureRecords
from activations.vocab import ScorerName, ScoreRole
from scorer import simulation_scorer_config
from scorer.example_sets import NeighbourWindow
from scorer.scored_set import side_sample
from storage.core import repository as repo
from storage.core.db import Database
from storage.core.schema import Feature
from storage.reads.scoring_inputs import neighbour_windows
from storage.records import record_store
from storage.results import already_done

CHUNK = 32  # explanations whose pending work is read together (a few queries, not several per explanation)


@dataclass(frozen=True)
class ScorerCheck:
    """One example scorer in one role, with what identifies its stored scores."""

    name: ScorerName
    role: ScoreRole
    methods: Sequence[str]
    config: dict


@dataclass(frozen=True)
class FinishingQuestions:
    """What the pass asks of each explanation: a baseline under this simulator (None: no baselines), and these
    example scorers' scores."""

    baseline_simulator: str | None
    scorer_checks: Sequence[ScorerCheck] = ()


@dataclass
class FinishTarget:
    """An explanation with what it still lacks, and its feature's records read once for all of it."""

    explanation_id: int
    feature: Feature  # its row as read (ids and layer loaded): what the rows saved copy, so saving needs no lookup
    text: str
    polarity: str
    records: FeatureRecords
    baseline: bool  # lacks its shuffled baseline under the run's simulator
    todo: list[tuple[ScorerName, ScoreRole]] = field(default_factory=list)  # example scorers it lacks
    neighbours: list[NeighbourWindow] | None = None  # read only when an example scorer is to run


def _lacking(session: Session, explanation_ids: Sequence[int],
             questions: FinishingQuestions) -> tuple[set[int], dict[int, list[tuple[ScorerName, ScoreRole]]]]:
    """The explanations lacking a baseline, and each one's example scorers lacking scores: one query per
    question for the whole chunk."""
    baseline: set[int] = set()
    if questions.baseline_simulator is not None:
        done = already_done.with_shuffled_baseline(session, explanation_ids,
                                                   simulator=questions.baseline_simulator,
                                                   scorer_config=simulation_scorer_config())
        baseline = {e for e in explanation_ids if e not in done}
    todo: dict[int, list[tuple[ScorerName, ScoreRole]]] = {e: [] for e in explanation_ids}
    for check in questions.scorer_checks:
        scored = already_done.example_scored(session, explanation_ids,
                                             methods=check.methods, scorer_config=check.config, role=check.role)
        for explanation_id in explanation_ids:
            if explanation_id not in scored:
                todo[explanation_id].append((check.name, check.role))
    return baseline, todo


def read_targets(db: Database, explanation_ids: Sequence[int],
                 questions: FinishingQuestions) -> dict[int, FinishTarget]:
    """Those of these explanations that lack something, each with its feature's records (each feature's read
    once, in one query for the chunk) and, where an example scorer runs, its neighbours' windows."""
    with db.session() as session:
        baseline, todo = _lacking(session, explanation_ids, questions)
        rows = repo.explanations_with_features(session, [e for e in explanation_ids if e in baseline or todo[e]])
        features = {f.id: f for _, f in rows.values()}
        records = record_store.load_many_feature_records(session, list(features.values()))
        scored = {(f.id, e.polarity) for e, f in rows.values() if todo[e.id]}
        neighbours = {(f, polarity): neighbour_windows(session, features[f], sample=side_sample(polarity))
                      for f, polarity in scored}
        return {e.id: FinishTarget(e.id, f, e.text or "", e.polarity, records[f.id], e.id in baseline, todo[e.id],
                                   neighbours.get((f.id, e.polarity)))
                for e, f in rows.values()}
