"""Synthetic collected features for pipeline tests: records across top/random samples and
train/valid/test splits, stored as an import stores them."""

from __future__ import annotations

import random
import uuid

from activations.records import ActivationRecord, FeatureId, FeatureStats
from storage.core.db import Database
from tests.stored import store_features

WORDS = "the cat sat on 3 mats in 1999 and 42 dogs ran past 7 red cars near the river bank today".split()


def _record(rng: random.Random, sample: str, data_split: str, fires: bool) -> ActivationRecord:
    tokens = [(" " if i else "") + rng.choice(WORDS) for i in range(12)]
    acts = [(2.0 + rng.random()) if fires and t.strip().isdigit() else 0.0 for t in tokens]
    if fires and max(acts) == 0:
        tokens[3], acts[3] = " 5", 2.5
    return ActivationRecord(tokens, acts, sample=sample, data_split=data_split)


def fill_layer(db: Database, n_features: int, *, model: str = "tiny-model", layer: int = 6, seed: int = 0,
               dead: tuple[int, ...] = ()) -> None:
    rng = random.Random(seed)
    features, records, stats = [], [], []
    for index in range(n_features):
        fires = index not in dead
        feature_records = [_record(rng, "top", d, fires) for d in ["train"] * 5 + ["valid"] * 2 + ["test"] * 3]
        feature_records += [_record(rng, "random", d, False) for d in ["train"] * 2 + ["valid"] + ["test"] * 2]
        features.append(FeatureId(model, layer, "mlp_neuron", index))
        records.append(feature_records)
        stats.append(FeatureStats(max_activation=max(r.max_activation for r in feature_records), mean=0.1,
                                  variance=0.2, firing_fraction=0.05 if fires else 0.0, n_tokens=1000))
    with db.session() as s, s.begin():
        store_features(s, features, records, stats)


def uncached_spec(backend: str = "openai:fake") -> str:
    """An LLM spec no earlier test run used: a server database's responses are cached in the user's cache dir,
    across tests and runs, so a test whose requests must reach the fake server names its model afresh."""
    return f"{backend}-{uuid.uuid4().hex[:8]}"
