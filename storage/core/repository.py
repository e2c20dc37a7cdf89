"""Reads and writes of single entities: models, SAEs, features, explanations, simulations, scores (a
feature's activation records are storage/records/record_store.py's). Callers own the transaction
(`with db.session() as s, s.begin(): ...`), so a file import or a feature's results commit all together or not
at all.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, cast

from sqlalchemy import Table, bindparam, delete, insert, select
from sqlalchemy.orm import Session

from activations.records import FeatureId, FeatureStats
from activations.vocab import OutcomeStatus, Polarity, ScoreRole
from storage.core.activation_codec import encode
from storage.core.in_lists import chunks
from storage.core.schema import (
    Explanation,
    Feature,
    Sae,
    Score,
    SimulatedRecord,
    Simulation,
    SubjectModel,
)

# Bulk inserts go to the tables (Core), not the mapped classes: no ORM object or flush per row.
_SCORES = cast(Table, Score.__table__)
_SIMULATED_RECORDS = cast(Table, SimulatedRecord.__table__)
_SIMULATIONS = cast(Table, Simulation.__table__)


class Keyed(Protocol):
    """A stored row as the writers below use it: its id. An ORM row, or a RowRef where the id is known already
    (a feature's save then needs no lookup)."""

    @property
    def id(self) -> int: ...


class FeatureKeyed(Keyed, Protocol):
    """A feature as its score rows use it (they copy its model and layer)."""

    @property
    def model_id(self) -> int: ...

    @property
    def layer(self) -> int: ...


@dataclass(frozen=True)
class RowRef:
    id: int


def config_hash(config: Any) -> str:
    """Stable hash of a JSON-able configuration; equal configurations mean 'the same work'."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:32]


def get_or_create_model(session: Session, name: str, n_layers: int | None = None) -> SubjectModel:
    row = session.scalar(select(SubjectModel).where(SubjectModel.name == name))
    if row is None:
        row = SubjectModel(name=name, n_layers=n_layers, meta={})
        session.add(row)
        session.flush()
    elif n_layers is not None and row.n_layers is None:
        row.n_layers = n_layers
    return row


def find_model(session: Session, name: str) -> SubjectModel | None:
    return session.scalar(select(SubjectModel).where(SubjectModel.name == name))


def get_or_create_sae(session: Session, model: SubjectModel, name: str, **info: Any) -> Sae:
    row = session.scalar(select(Sae).where(Sae.model_id == model.id, Sae.name == name))
    if row is None:
        row = Sae(model_id=model.id, name=name, meta=info.pop("meta", {}), **info)
        session.add(row)
        session.flush()
    else:
        for key, value in info.items():
            if value is not None and getattr(row, key) is None:
                setattr(row, key, value)
    return row


def find_feature(session: Session, fid: FeatureId) -> Feature | None:
    model = find_model(session, fid.model)
    if model is None:
        return None
    return session.scalar(
        select(Feature).where(
            Feature.model_id == model.id, Feature.layer == fid.layer, Feature.kind == fid.kind,
            Feature.sae_key == (fid.sae or ""), Feature.index == fid.index,
        )
    )


def layer_features(session: Session, model_id: int, layer: int, sae: str | None) -> list[Feature]:
    """Every feature of a layer (MLP neurons, or latents of one SAE), by index."""
    return list(session.scalars(
        select(Feature).where(Feature.model_id == model_id, Feature.layer == layer, Feature.sae_key == (sae or ""))
        .order_by(Feature.index)
    ))


def live_neuron_indices(session: Session, model_name: str, layer: int) -> list[int]:
    """Indices of a layer's MLP neurons that fired during collection."""
    return list(session.scalars(
        select(Feature.index).join(SubjectModel, SubjectModel.id == Feature.model_id)
        .where(SubjectModel.name == model_name, Feature.layer == layer, Feature.kind == "mlp_neuron",
               Feature.dead.is_(False)).order_by(Feature.index)
    ))


def sae_names(session: Session, model_id: int) -> list[str]:
    return list(session.scalars(select(Sae.name).where(Sae.model_id == model_id).order_by(Sae.name)))


def get_feature(session: Session, feature_id: int) -> Feature:
    row = session.get(Feature, feature_id)
    if row is None:
        raise LookupError(f"no feature with id {feature_id}")
    return row


def get_features(session: Session, feature_ids: Sequence[int]) -> list[Feature]:
    """Features by id, a query per chunk of ids (order not kept); a missing id raises LookupError."""
    rows = [row for chunk in chunks(dict.fromkeys(feature_ids))
            for row in session.scalars(select(Feature).where(Feature.id.in_(chunk)))]
    if len(rows) < len(set(feature_ids)):
        found = {row.id for row in rows}
        raise LookupError(f"no feature with id {next(i for i in feature_ids if i not in found)}")
    return rows


def get_explanation(session: Session, explanation_id: int) -> Explanation:
    row = session.get(Explanation, explanation_id)
    if row is None:
        raise LookupError(f"no explanation with id {explanation_id}")
    return row


# The current explanation of a feature, the one place this is defined: its latest explanation that succeeded and
# was selected (the best-of-N winner; imports are selected). Rows come in this order so the latest overwrites.
_CURRENT = (Explanation.status == OutcomeStatus.OK, Explanation.selected.is_(True))
_CURRENT_ORDER = (Explanation.feature_id, Explanation.id)


def current_explanations(session: Session, feature_ids: Sequence[int],
                         polarity: str | None = None) -> dict[int, Explanation]:
    """feature id -> its current explanation (see _CURRENT; of `polarity`, when given); features without one are
    absent."""
    stmt = select(Explanation).where(*_CURRENT).order_by(*_CURRENT_ORDER)
    if polarity is not None:
        stmt = stmt.where(Explanation.polarity == polarity)
    # a feature's explanations all come in its chunk
    return {e.feature_id: e for chunk in chunks(feature_ids)
            for e in session.scalars(stmt.where(Explanation.feature_id.in_(chunk)))}


def layer_current_explanation_texts(session: Session, feature: Feature,
                                    polarity: str = Polarity.POSITIVE) -> dict[int, tuple[int, str]]:
    """feature id -> (id, text) of the current explanation of `polarity`, for every feature of `feature`'s layer
    that has one (a negative explanation's shuffled baseline borrows another feature's negative one). Two columns,
    no ORM rows: a layer of a wide SAE has 100k+ of them, and whole rows (raw outputs, params) would cost seconds
    and hundreds of MB."""
    stmt = (select(Explanation.feature_id, Explanation.id, Explanation.text)
            .join(Feature, Feature.id == Explanation.feature_id)
            .where(Feature.model_id == feature.model_id, Feature.layer == feature.layer,
                   Feature.sae_key == feature.sae_key, Explanation.polarity == polarity, *_CURRENT)
            .order_by(*_CURRENT_ORDER))
    return {feature_id: (explanation_id, text or "") for feature_id, explanation_id, text in session.execute(stmt)}


def explanation_polarities(session: Session, explanation_ids: Sequence[int]) -> dict[int, str]:
    """Explanation id -> its polarity, a query per chunk of ids."""
    stmt = select(Explanation.id, Explanation.polarity)
    return {explanation_id: polarity for chunk in chunks(explanation_ids)
            for explanation_id, polarity in session.execute(stmt.where(Explanation.id.in_(chunk)))}


def explanations_with_features(session: Session,
                               explanation_ids: Sequence[int]) -> dict[int, tuple[Explanation, Feature]]:
    """Explanation id -> (explanation, its feature), read in one query; a missing id raises LookupError."""
    joined = select(Explanation, Feature).join(Feature, Feature.id == Explanation.feature_id)
    out = {explanation.id: (explanation, feature) for chunk in chunks(explanation_ids)
           for explanation, feature in session.execute(joined.where(Explanation.id.in_(chunk)))}
    missing = next((i for i in explanation_ids if i not in out), None)
    if missing is not None:
        raise LookupError(f"no explanation with id {missing}")
    return out


def feature_id_of(row: Feature) -> FeatureId:
    return FeatureId(model=row.model.name, layer=row.layer, kind=row.kind, index=row.index, sae=row.sae_key or None)


def stats_values(stats: FeatureStats) -> dict[str, Any]:
    """Feature column values for a feature's statistics."""
    return {
        "max_activation": stats.max_activation, "min_activation": stats.min_activation, "mean": stats.mean,
        "variance": stats.variance, "firing_fraction": stats.firing_fraction, "n_tokens": stats.n_tokens,
        "quantile_boundaries": list(stats.quantile_boundaries), "dead": stats.dead,
    }


def set_feature_stats(row: Feature, stats: FeatureStats) -> None:
    for column, value in stats_values(stats).items():
        setattr(row, column, value)


def stats_of(row: Feature) -> FeatureStats | None:
    if row.max_activation is None:
        return None
    return FeatureStats(
        max_activation=row.max_activation, mean=row.mean, variance=row.variance,
        firing_fraction=row.firing_fraction, n_tokens=row.n_tokens,
        quantile_boundaries=tuple(row.quantile_boundaries or ()), min_activation=row.min_activation,
    )


def add_explanation(
    session: Session, feature: Keyed, *, explainer: str, config: dict, **fields: Any
) -> tuple[Explanation, bool]:
    """Insert an explanation unless one with the same (feature, configuration, polarity, candidate) exists.
    Returns (row, created)."""
    chash = config_hash(config)
    polarity = fields.get("polarity", Polarity.POSITIVE)
    candidate = fields.get("candidate", 0)
    row = session.scalar(
        select(Explanation).where(
            Explanation.feature_id == feature.id, Explanation.config_hash == chash,
            Explanation.polarity == polarity, Explanation.candidate == candidate,
        )
    )
    if row is not None:
        return row, False
    fields.setdefault("params", {})
    row = Explanation(feature_id=feature.id, explainer=explainer, config_hash=chash, **fields)
    session.add(row)
    session.flush()
    return row, True


# Statements of the per-feature writers, built once: building and cache-keying a statement per call costs
# about as much as running it.
_SIMULATION_OF = select(_SIMULATIONS.c.id, _SIMULATIONS.c.status).where(
    _SIMULATIONS.c.explanation_id == bindparam("explanation_id"), _SIMULATIONS.c.config_hash == bindparam("chash"))
_DELETE_SIMULATION = delete(_SIMULATIONS).where(_SIMULATIONS.c.id == bindparam("simulation_id"))
_INSERT_SIMULATION = insert(_SIMULATIONS).returning(_SIMULATIONS.c.id)
_INSERT_SIMULATED = insert(_SIMULATED_RECORDS)
_INSERT_SCORES = insert(_SCORES)
_STORED_SCORES = select(_SCORES.c.method, _SCORES.c.subset, _SCORES.c.role).where(
    _SCORES.c.explanation_id == bindparam("explanation_id"), _SCORES.c.scorer_hash == bindparam("shash"))
_STORED_SCORES_OF = {
    True: _STORED_SCORES.where(_SCORES.c.simulation_id == bindparam("simulation_id")),
    False: _STORED_SCORES.where(_SCORES.c.simulation_id.is_(None)),
}


def simulation_config_hash(config: dict, role: str, feature_id: int) -> str:
    """A simulation's configuration hash: a shuffled baseline simulates another feature's explanation, so the
    scored feature is part of it."""
    return config_hash({"config": config, "role": role, "feature": feature_id})


def add_simulation(
    session: Session, explanation: Keyed, feature: Keyed, *, simulator: str, config: dict,
    records: Iterable[dict], status: str = OutcomeStatus.OK, failure_reason: str | None = None,
    role: str = ScoreRole.OWN,
    run_id: int | None = None, params: dict | None = None,
) -> tuple[RowRef, bool]:
    """Insert a simulation with its per-record rows (dicts of SimulatedRecord columns minus ids)."""
    chash = simulation_config_hash(config, role, feature.id)
    found = session.execute(_SIMULATION_OF, {"explanation_id": explanation.id, "chash": chash}).first()
    if found is not None and (found.status == OutcomeStatus.OK or status == OutcomeStatus.FAILED):
        return RowRef(found.id), False
    if found is not None:  # a failed simulation is replaced by a successful retry of the same configuration
        session.execute(_DELETE_SIMULATION, {"simulation_id": found.id})
    simulation_id = session.execute(_INSERT_SIMULATION, {
        "explanation_id": explanation.id, "feature_id": feature.id, "simulator": simulator, "config_hash": chash,
        "role": role, "status": status, "failure_reason": failure_reason, "run_id": run_id, "params": params or {},
    }).scalar_one()
    values = [{"simulation_id": simulation_id, "position": i, **simulated_values(rec)} for i, rec in enumerate(records)]
    if values:
        session.execute(_INSERT_SIMULATED, values)
    return RowRef(simulation_id), True


def simulated_values(record: dict) -> dict:
    """A simulated record's columns with its value lists (expected, true, distribution) in binary."""
    out = dict(record)
    for column in ("expected_activations", "true_activations", "distribution"):
        if out.get(column) is not None:
            out[column] = encode(out[column])
    return out


def add_scores(
    session: Session, explanation: Keyed, feature: FeatureKeyed, scores: Sequence[dict[str, Any]], *,
    simulation: Keyed | None = None, simulator: str | None = None, run_id: int | None = None,
    scorer_config: dict | None = None,
) -> int:
    """Insert a score set of one explanation and simulation in one statement (dicts of Score columns: method,
    subset, value, and optionally undefined_reason, role, ci_low, ci_high, n_records, details); scores already
    stored for the same (simulation, method, subset, role, scorer config) are left unchanged. A feature's
    outcome holds a score set or two, and one lookup plus one bulk insert costs a tenth of a flush per row.
    Returns how many were added."""
    shash = config_hash(scorer_config or {})
    sim_id = simulation.id if simulation is not None else None
    stored: set[tuple[str, str, str]] = {(m, sub, r) for m, sub, r in session.execute(
        _STORED_SCORES_OF[sim_id is not None],
        {"explanation_id": explanation.id, "shash": shash, "simulation_id": sim_id})}
    rows = []
    for score in scores:
        role = score.get("role", ScoreRole.OWN)
        key = (score["method"], score["subset"], role)
        if key in stored:
            continue
        if score["value"] is None and not score.get("undefined_reason"):
            raise ValueError(f"score {score['method']}/{score['subset']} of feature {feature.id}: an undefined score "
                             "needs a reason")
        stored.add(key)
        rows.append({"details": {}, **score, "role": role, "explanation_id": explanation.id, "simulation_id": sim_id,
                     "feature_id": feature.id, "model_id": feature.model_id, "layer": feature.layer,
                     "simulator": simulator, "run_id": run_id, "scorer_hash": shash})
    if rows:
        session.execute(_INSERT_SCORES, rows)
    return len(rows)
