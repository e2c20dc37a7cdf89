"""Steering results: store one feature's (or its failure, with the reason) under its steering configuration, and
read them back, for a scorer (the `SteeringResult` itself) or a page (every configuration's row as a dict)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from activations.steering_results import SteeringFailure, SteeringResult
from activations.vocab import OutcomeStatus
from storage.core.repository import config_hash
from storage.core.schema import Feature, SteeringRow


@dataclass(frozen=True)
class SteeringCost:
    """What one feature's steering cost: the subject model's forward passes and the wall seconds."""

    forward_passes: int
    elapsed_s: float


def save_steering(session: Session, feature: Feature, config: dict[str, Any], outcome: SteeringResult | SteeringFailure,
                  *, run_id: int | None, cost: SteeringCost | None = None) -> SteeringRow:
    """Store `outcome` for `feature` under `config` (its hash is the row's key): a rerun of the same
    configuration replaces nothing, since the caller asked `already_done.steered` first."""
    row = SteeringRow(
        feature_id=feature.id, config_hash=config_hash(config), config=config, run_id=run_id,
        target_kl=float(config["target_kl"]), strength=outcome.strength, kl=outcome.kl,
        forward_passes=cost.forward_passes if cost else None, elapsed_s=cost.elapsed_s if cost else None,
    )
    if isinstance(outcome, SteeringResult):
        row.status, row.prompts, row.steered = OutcomeStatus.OK, list(outcome.prompts), list(outcome.steered)
        row.unsteered = [list(texts) for texts in outcome.unsteered]
    else:
        row.status, row.failure_reason, row.prompts, row.steered, row.unsteered = \
            OutcomeStatus.FAILED, outcome.reason, [], [], []
    session.add(row)
    session.flush()
    return row


def _result(row: SteeringRow) -> SteeringResult | SteeringFailure:
    if row.status != OutcomeStatus.OK:
        return SteeringFailure(row.failure_reason or "failed", row.strength, row.kl)
    assert row.strength is not None and row.kl is not None, "an ok steering row has its strength and KL"
    return SteeringResult(strength=row.strength, kl=row.kl, target_kl=row.target_kl, prompts=tuple(row.prompts),
                          steered=tuple(row.steered), unsteered=tuple(tuple(u) for u in row.unsteered))


def steering_result(session: Session, feature_id: int, config: dict[str, Any]
                    ) -> SteeringResult | SteeringFailure | None:
    """The feature's stored steering under `config`, None when it was not steered under it."""
    row = session.scalar(select(SteeringRow).where(SteeringRow.feature_id == feature_id,
                                                   SteeringRow.config_hash == config_hash(config)))
    return None if row is None else _result(row)


def steering_rows(session: Session, feature_id: int) -> list[dict[str, Any]]:
    """Every steering of the feature, newest first, as a page shows it: strength and KL, the continuations
    (per prompt: the prompt, its steered text and its unsteered texts), or the failure's reason."""
    rows = session.scalars(select(SteeringRow).where(SteeringRow.feature_id == feature_id)
                           .order_by(SteeringRow.created_at.desc(), SteeringRow.id.desc())).all()
    return [{
        "status": row.status, "failure_reason": row.failure_reason, "strength": row.strength, "kl": row.kl,
        "target_kl": row.target_kl, "config": row.config, "config_hash": row.config_hash, "run_id": row.run_id,
        "forward_passes": row.forward_passes, "elapsed_s": row.elapsed_s,
        "created_at": row.created_at.isoformat() if row.created_at else None,
        "prompts": [{"prompt": p, "steered": s, "unsteered": list(u)}
                    for p, s, u in zip(row.prompts, row.steered, row.unsteered)],
    } for row in rows]
