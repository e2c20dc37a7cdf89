"""`steer` as a run: steer each selected feature to the target KL and store its continuations, skipping the
features already steered under the same steering configuration (so a rerun does nothing twice). The steering
scorer calls `steer_missing` too, so `explain --scorer steering` works on features never steered before."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from activations.hooks import HookPoint, parse_hook
from activations.sae import Sae, load_sae
from activations.steerer import Steerer
from activations.steering import SteeringConfig, SteeringVector, latent_vector, neuron_vector
from activations.steering_results import SteeringFailure
from activations.vocab import FailureKind, RunKind
from autointerp.runtime.interrupts import sigterm_interrupts
from autointerp.runtime.progress import ProgressDisplay
from autointerp.runtime.run_record import RunRecord
from autointerp.runtime.run_stats import RunStats
from autointerp.workflows.selection import select_features
from llm_client.local_models import LoadedModel, ModelLoadError, load_model, local_model_name
from storage.core.db import Database
from storage.core.schema import Feature
from storage.results import already_done
from storage.results.steering_store import SteeringCost, save_steering


@dataclass
class SteerOptions:
    model: str = "gemma-3-270m"
    layer: int = 0
    sae: str | None = None
    features: str = "all"
    device: str = "auto"
    steering: SteeringConfig = SteeringConfig()


def feature_hook(feature: Feature) -> HookPoint:
    """Where the feature is read (and steered): its SAE's hook point, or the layer's MLP activations."""
    if feature.sae is None:
        return HookPoint(feature.layer, "mlp_act")
    return parse_hook(feature.sae.hook or "", feature.layer)


def steering_config(feature: Feature, config: SteeringConfig) -> dict[str, Any]:
    """What the feature's steering result is stored under (its hash is the key)."""
    return {"model": feature.model.name, "hook": str(feature_hook(feature)), **config.as_config()}


class Vectors:
    """Each feature's steering vector, loading each SAE once (from the path its collection stored)."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.saes: dict[int, Sae] = {}

    def of(self, feature: Feature) -> SteeringVector:
        if feature.sae is None:
            return neuron_vector(self.model, feature.layer, feature.index)
        row = feature.sae
        if row.id not in self.saes:
            if not row.path:
                raise ModelLoadError(f"SAE {row.name}: its collection stored no path to reload it from; collect it "
                                     "again with --sae PATH")
            self.saes[row.id] = load_sae(row.path, hook=row.hook, layer=feature.layer, name=row.name)
        return latent_vector(self.saes[row.id], feature.index)


def steer_missing(db: Database, loaded: LoadedModel, features: Sequence[Feature], config: SteeringConfig, *,
                  run_id: int | None, stats: RunStats | None = None,
                  advance: Callable[[int], None] = lambda _: None) -> int:
    """Steer and store every one of `features` not yet steered under `config` (each in its own transaction);
    returns how many were steered now."""
    with db.session() as session:
        done = already_done.steered(session, [f.id for f in features],
                                    steering_config=steering_config(features[0], config)) if features else set()
    todo = [f for f in features if f.id not in done]
    if stats is not None:
        stats.skipped += len(features) - len(todo)
    advance(len(features) - len(todo))
    steerer = Steerer(loaded.model, loaded.tokenizer, config) if todo else None
    vectors = Vectors(loaded.model)
    for feature in todo:
        assert steerer is not None
        start, passes = time.perf_counter(), steerer.forward_passes
        outcome, _ = steerer.steer(vectors.of(feature))
        cost = SteeringCost(steerer.forward_passes - passes, time.perf_counter() - start)
        with db.session() as session, session.begin():
            save_steering(session, session.merge(feature, load=False), steering_config(feature, config), outcome,
                          run_id=run_id, cost=cost)
        if stats is not None:
            failure = outcome.reason if isinstance(outcome, SteeringFailure) else None
            stats.record_outcome(feature.index, True, failure, FailureKind.INPUT if failure else None)
        advance(1)
    return len(todo)


def _selected(db: Database, opts: SteerOptions) -> list[Feature]:
    with db.session() as session:
        features = select_features(session, opts.model, opts.layer, opts.sae, opts.features)
        for feature in features:  # loaded before the session closes: the workflow reads them after
            _ = feature.model.name, feature.sae
        session.expunge_all()
        return features


def run_steer(db: Database, opts: SteerOptions, *, show_progress: bool = True) -> RunStats:
    """Steer the selected features (see the module); the run's stats."""
    features = _selected(db, opts)  # a missing layer or index is an error before the model loads
    loaded = load_model(local_model_name(opts.model), device=opts.device)
    Vectors(loaded.model).of(features[0])  # a feature that cannot be steered at all fails before the run row
    run_config = {"model": local_model_name(opts.model), "layer": opts.layer, "sae": opts.sae,
                  "features": opts.features, "device": loaded.device, **steering_config(features[0], opts.steering)}
    with sigterm_interrupts(), RunRecord(db, RunKind.STEER, run_config, total=len(features)) as record, \
            ProgressDisplay(len(features), label="steer", unit="feat", show=show_progress) as display:
        steer_missing(db, loaded, features, opts.steering, run_id=record.run_id, stats=record.stats,
                      advance=display.advance)
        return record.stats
