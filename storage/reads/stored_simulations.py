"""A stored simulation's expected values read back, so that a rescore which changes only how the real side is
scored (a new scoring version) scores the same simulation again without asking the simulator."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from activations.vocab import OutcomeStatus, ScoreRole
from storage.core.activation_codec import decode
from storage.core.repository import simulation_config_hash
from storage.core.schema import SimulatedRecord, Simulation


def stored_expected_values(session: Session, explanation_id: int, feature_id: int, config: dict, *,
                           role: str = ScoreRole.OWN) -> list[tuple[int | None, list[float]]] | None:
    """(record id, expected values) per simulated record, in order, of the successful simulation of
    `explanation_id` on `feature_id` under `config`; None when there is none."""
    simulation_id = session.scalar(select(Simulation.id).where(
        Simulation.explanation_id == explanation_id,
        Simulation.config_hash == simulation_config_hash(config, role, feature_id),
        Simulation.status == OutcomeStatus.OK))
    if simulation_id is None:
        return None
    rows = session.execute(select(SimulatedRecord.record_id, SimulatedRecord.expected_activations)
                           .where(SimulatedRecord.simulation_id == simulation_id).order_by(SimulatedRecord.position))
    return [(record_id, decode(expected)) for record_id, expected in rows]
