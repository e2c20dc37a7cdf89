"""One feature with everything about it: statistics, records by sample kind, explanations with their scores and
provenance, the shuffled baselines, simulations with expected vs real activations, neighbours.

A fixed handful of indexed queries whatever the feature holds, so the feature page stays fast on big databases.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from activations.vocab import SampleKind, ScoreMethod, ScoreRole, ScoringSubset
from storage.core.activation_codec import decode
from storage.core.rows import (
    explanation_dict,
    feature_key_dict,
    feature_stats_dict,
    record_dict,
    run_dict,
    score_dict,
    simulation_dict,
)
from storage.core.schema import (
    ActivationRecordRow,
    Explanation,
    Feature,
    Run,
    Score,
    SimulatedRecord,
    Simulation,
    SubjectModel,
)
from storage.reads.feature_sides import feature_sides, larger_side
from storage.results.example_scores import SHUFFLED_EXPLANATION_KEY
from storage.results.steering_store import steering_rows


def _sample_order(sample: str) -> tuple[int, int]:
    # top first, then bottom, then quantile bins in order, then random
    match = re.fullmatch(rf"{SampleKind.QUANTILE}:(\d+)", sample)
    if match:
        return (1, int(match.group(1)))
    return {SampleKind.TOP.value: (0, 0), SampleKind.BOTTOM.value: (0, 1)}.get(sample, (2, 0))


def _explanation(row: Explanation, runs: dict[int, Run], scores: list[dict[str, Any]]) -> dict[str, Any]:
    run = runs.get(row.run_id) if row.run_id is not None else None
    run_summary = None
    if run is not None:
        full = run_dict(run)
        run_summary = {k: full[k] for k in ("id", "kind", "status", "config", "started_at", "finished_at")}
    return {**explanation_dict(row), "run": run_summary, "scores": scores}


def _baseline(score: Score, borrowed: Explanation | None) -> dict[str, Any]:
    """A shuffled-baseline score with the other feature's explanation that was simulated (or judged). The score
    row's own `explanation_id` is this feature's explanation, the one the baseline is a baseline for."""
    return {
        **score_dict(score),
        "borrowed_explanation_id": borrowed.id if borrowed is not None else None,
        "explanation_text": borrowed.text if borrowed is not None else None,
        "explanation_feature_id": borrowed.feature_id if borrowed is not None else None,
    }


def _borrowed_explanations(session: Session, baselines: list[Score]) -> dict[int, Explanation]:
    """score id -> the explanation its baseline actually used: the shuffled simulation's explanation, or for the
    example scorers (no simulation) the one named in the score's details. Older example-scorer rows that name only
    the feature are left out rather than guessed at."""
    simulation_ids = [b.simulation_id for b in baselines if b.simulation_id is not None]
    simulated = dict(session.execute(
        select(Simulation.id, Simulation.explanation_id).where(Simulation.id.in_(simulation_ids))).all()
    ) if simulation_ids else {}
    used = {b.id: simulated.get(b.simulation_id) if b.simulation_id is not None
            else (b.details or {}).get(SHUFFLED_EXPLANATION_KEY) for b in baselines}
    wanted = {e for e in used.values() if e is not None}
    rows = {e.id: e for e in session.scalars(select(Explanation).where(Explanation.id.in_(wanted)))} if wanted else {}
    return {score_id: rows[e] for score_id, e in used.items() if e in rows}


def _simulations(session: Session, feature_id: int, records: dict[int, dict[str, Any]]) -> list[dict[str, Any]]:
    sims = session.scalars(select(Simulation).where(Simulation.feature_id == feature_id).order_by(Simulation.id)).all()
    if not sims:
        return []
    per_sim: dict[int, list[dict[str, Any]]] = {s.id: [] for s in sims}
    rows = session.scalars(
        select(SimulatedRecord)
        .where(SimulatedRecord.simulation_id.in_(list(per_sim)))
        .order_by(SimulatedRecord.simulation_id, SimulatedRecord.position)
    )
    for rec in rows:
        # Records simulated from a stored record borrow its tokens; imported ones carry their own.
        source = records.get(rec.record_id) if rec.record_id is not None else None
        per_sim[rec.simulation_id].append(
            {
                "position": rec.position, "record_id": rec.record_id,
                "sample": rec.sample or (source["sample"] if source else None),
                "data_split": source["data_split"] if source else None,
                "tokens": rec.tokens if rec.tokens is not None else (source["tokens"] if source else None),
                "real": (
                    decode(rec.true_activations) if rec.true_activations is not None
                    else (source["activations"] if source else None)
                ),
                "expected": decode(rec.expected_activations),
            }
        )
    return [{**simulation_dict(s), "records": per_sim[s.id]} for s in sims]


def _neighbours(session: Session, feature: Feature) -> dict[str, int | None]:
    """Previous and next feature by index within the same model, layer, kind and SAE."""
    same = [
        Feature.model_id == feature.model_id, Feature.layer == feature.layer,
        Feature.kind == feature.kind, Feature.sae_key == feature.sae_key,
    ]
    prev_id = session.scalar(
        select(Feature.id).where(*same, Feature.index < feature.index).order_by(Feature.index.desc()).limit(1)
    )
    next_id = session.scalar(
        select(Feature.id).where(*same, Feature.index > feature.index).order_by(Feature.index).limit(1)
    )
    return {"prev": prev_id, "next": next_id}


def _evidence(session: Session, feature: Feature) -> dict[str, Any]:
    """The weight evidence stored at collection, its neighbours with their row ids so the page can link them."""
    extra = feature.extra or {}
    neighbours = extra.get("neighbours")
    if neighbours:
        ids = dict(session.execute(select(Feature.index, Feature.id).where(
            Feature.model_id == feature.model_id, Feature.layer == feature.layer, Feature.kind == feature.kind,
            Feature.sae_key == feature.sae_key, Feature.index.in_([n["index"] for n in neighbours]))).all())
        neighbours = [{**n, "feature_id": ids.get(n["index"])} for n in neighbours]
    return {"logits": extra.get("logits"), "neighbours": neighbours}


def feature_detail(session: Session, feature_id: int) -> dict[str, Any] | None:
    """Everything about one feature, or None when no feature has this id."""
    found = session.execute(
        select(Feature, SubjectModel.name)
        .join(SubjectModel, SubjectModel.id == Feature.model_id)
        .where(Feature.id == feature_id)
    ).first()
    if found is None:
        return None
    feature, model_name = found
    record_rows = session.scalars(
        select(ActivationRecordRow).where(ActivationRecordRow.feature_id == feature_id).order_by(ActivationRecordRow.id)
    ).all()
    record_dicts = {row.id: record_dict(row) for row in record_rows}
    by_sample: dict[str, list[dict[str, Any]]] = {}
    for row in sorted(record_rows, key=lambda r: (_sample_order(r.sample), r.position)):
        by_sample.setdefault(row.sample, []).append(record_dicts[row.id])

    explanations = session.scalars(
        select(Explanation).where(Explanation.feature_id == feature_id).order_by(Explanation.id)
    ).all()
    scores = session.scalars(select(Score).where(Score.feature_id == feature_id).order_by(Score.id)).all()
    own: dict[int, list[dict[str, Any]]] = {}
    baselines = []
    for score in scores:
        if score.role == ScoreRole.OWN:
            own.setdefault(score.explanation_id, []).append(score_dict(score))
        else:
            baselines.append(score)
    borrowed = _borrowed_explanations(session, baselines)
    run_ids = {e.run_id for e in explanations if e.run_id is not None}
    runs = {r.id: r for r in session.scalars(select(Run).where(Run.id.in_(run_ids)))} if run_ids else {}

    return {
        **feature_key_dict(feature, model_name),
        "stats": feature_stats_dict(feature),
        "records": by_sample,
        "larger_side": larger_side(feature.max_activation, feature.min_activation),
        "sides": feature_sides(session, [feature_id], method=ScoreMethod.EV_CORRELATION,
                               subset=ScoringSubset.TOP_AND_RANDOM).get(feature_id, {}),
        "explanations": [_explanation(e, runs, own.get(e.id, [])) for e in explanations],
        "shuffled_baselines": [_baseline(b, borrowed.get(b.id)) for b in baselines],
        "simulations": _simulations(session, feature_id, record_dicts),
        "neighbours": _neighbours(session, feature),
        "evidence": _evidence(session, feature),
        "steering": steering_rows(session, feature_id),
    }
