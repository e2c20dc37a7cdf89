"""A small, known database for the API and browser tests, written through storage.core.repository (no tests here)."""

from __future__ import annotations

from typing import Any

from activations.records import ActivationRecord, FeatureId, FeatureStats, Provenance
from scorer import simulation_scorer_config
from storage.core import repository as repo
from storage.core.db import Database
from storage.records import record_store
from storage.results import runs
from tests.stored import store_features, store_score

MODEL = "toy-model"
XSS_TOKENS = ["Hello", " <img src=x onerror=alert(1)>", " and", " <script>alert(1)</script>", " bye"]

# index -> (explanation text or None, {(method, subset): value or None})
LAYER1 = {
    0: ("numbers and digits in lists", {("ev_correlation", "top_and_random"): 0.9, ("rsquared", "top_and_random"): 0.7,
                                        ("ev_correlation", "random_only"): None}),
    1: ("references to cats and other pets", {("ev_correlation", "top_and_random"): 0.5}),
    2: ("closing brackets in source code", {("ev_correlation", "top_and_random"): 0.2}),
    3: ("html markup with tags", {("ev_correlation", "top_and_random"): 0.6}),
    4: ("the word because", {}),  # explained, never scored
    5: (None, {}),  # not explained yet
}


def _records(index: int) -> list[ActivationRecord]:
    if index == 3:
        top_tokens = XSS_TOKENS
    else:
        top_tokens = [f" t{index}", " one", " two", " three"]
    prov = Provenance(corpus="toy", document=f"doc{index}", offset=0)
    acts = [0.0, 2.0 + index, 0.5, 1.0, 0.0][: len(top_tokens)]
    return [
        ActivationRecord(top_tokens, acts, sample="top", provenance=prov),
        ActivationRecord([" a", " b", " c"], [0.2, 0.1, 0.0], sample="quantile:0", data_split="valid", provenance=prov),
        ActivationRecord([" x", " y"], [0.0, 0.3], sample="random", data_split="test", provenance=prov),
    ]


def fill(db: Database) -> dict[str, Any]:
    """Layer 1: features 0-5 of LAYER1; layer 0: one feature scoring 0.95. Returns ids the tests need."""
    ids: dict[str, Any] = {"features": {}, "explanations": {}}
    with db.session() as s, s.begin():
        repo.get_or_create_model(s, MODEL, n_layers=2)  # the model knows its layer count
        ids["run"] = runs.start_run(s, "explain", {"explainer": "local:toy"})
        runs.finish_run(s, ids["run"], "done", {"done": 6, "total": 6, "failed": 0})
        for index, (text, scores) in LAYER1.items():
            feature = store_features(s, [FeatureId(MODEL, 1, "mlp_neuron", index)])[0]
            repo.set_feature_stats(feature, FeatureStats(
                max_activation=2.0 + index, mean=0.1, variance=0.2, firing_fraction=0.05, n_tokens=1000,
                quantile_boundaries=(0.1, 0.5, 1.0)))
            record_store.add_records(s, feature, _records(index))
            ids["features"][index] = feature.id
            if text is None:
                continue
            explanation, _ = repo.add_explanation(
                s, feature, explainer="local:toy", config={"i": index}, text=text, run_id=ids["run"],
                prompt_version="v1", prompt_tokens=100, completion_tokens=10, cost_usd=0.001)
            ids["explanations"][index] = explanation.id
            for (method, subset), value in scores.items():
                reason = None if value is not None else "constant simulation: correlation undefined"
                store_score(s, explanation, feature, method=method, subset=subset, value=value,
                               undefined_reason=reason, simulator="embedding", run_id=ids["run"],
                               scorer_config=simulation_scorer_config(),
                               ci_low=None if value is None else value - 0.1, ci_high=None if value is None else value + 0.05)
        s.flush()
        _add_simulations(s, ids)
        other = store_features(s, [FeatureId(MODEL, 0, "mlp_neuron", 7)])[0]
        exp0, _ = repo.add_explanation(s, other, explainer="openai:gpt-test", config={}, text="numbers at layer zero")
        store_score(s, exp0, other, method="ev_correlation", subset="top_and_random", value=0.95,
                       simulator="json:openai:x", scorer_config=simulation_scorer_config())
        ids["layer0_feature"] = other.id
    return ids


def _add_simulations(s, ids: dict[str, Any]) -> None:
    """Feature 0: its own simulation of its top record, and a shuffled baseline using feature 1's explanation."""
    from storage.core.schema import ActivationRecordRow, Explanation, Feature

    feature = s.get(Feature, ids["features"][0])
    top = s.query(ActivationRecordRow).filter_by(feature_id=feature.id, sample="top").one()
    own = s.get(Explanation, ids["explanations"][0])
    sim, _ = repo.add_simulation(s, own, feature, simulator="embedding", config={"k": 1},
                                 records=[{"record_id": top.id, "sample": "top", "expected_activations": [0.1, 1.5, 0.4, 0.9]}])
    borrowed = s.get(Explanation, ids["explanations"][1])
    shuffled, _ = repo.add_simulation(s, borrowed, feature, simulator="embedding", config={"k": 1}, role="shuffled",
                                      records=[{"record_id": top.id, "sample": "top", "expected_activations": [0.2, 0.2, 0.2, 0.3]}])
    # As the pipeline stores it: the score on the feature's own explanation, the simulation on the borrowed one.
    repo.add_scores(s, own, feature, [{"method": "ev_correlation", "subset": "top_and_random", "value": 0.05,
                                       "role": "shuffled"}],
                    simulation=shuffled, simulator="embedding", scorer_config=simulation_scorer_config())
    ids["simulation"] = sim.id
