"""Reads over a caller's list of ids take any number of them: one layer of a wide SAE has more features than
one statement may bind (PostgreSQL's protocol caps it at 65535), so these run a chunk of ids at a time."""

from __future__ import annotations

from activations.records import FeatureId
from activations.vocab import OutcomeStatus, ScoreRole
from scorer import ScoreValue
from storage.core import repository as repo
from storage.core.in_lists import CHUNK, chunks
from storage.results import already_done, example_scores, outcome_store
from tests.stored import store_features, store_score

MANY = 70_000  # more ids than PostgreSQL binds in one statement


def test_chunks_cover_the_items_in_order():
    assert list(chunks(range(7), 3)) == [[0, 1, 2], [3, 4, 5], [6]]
    assert list(chunks([], 3)) == [] and CHUNK <= 65535


def test_reads_over_more_ids_than_one_statement_binds(db):
    with db.session() as s, s.begin():
        features = store_features(s, [FeatureId("m", 0, "mlp_neuron", i) for i in range(3)])
        explanations = []
        for f in features:
            e, _ = repo.add_explanation(s, f, explainer="openai:x", config={"k": 1}, text=f"text {f.index}",
                                        selected=True, status=OutcomeStatus.OK)
            own = outcome_store.Evaluation("sim", {}, [ScoreValue("ev_correlation", 0.5, subset="top_and_random")],
                                           outcome_store.SimulationToStore({}, [], []))
            outcome_store.save_evaluation(s, e, f, own, run_id=None)
            store_score(s, e, f, method="ev_correlation", subset="top_and_random", value=0.1, simulator="sim",
                        role=ScoreRole.SHUFFLED)
            example_scores.store_example_scores(s, e, f, [ScoreValue("detection_auroc", 0.7, subset="random")],
                                                scorer_spec="detection:openai:j", scorer_config={"judge": "j"},
                                                run_id=None)
            explanations.append(e)
        feature_ids = [f.id for f in features]
        explanation_ids = [e.id for e in explanations]
    # the real ids sit in different chunks of a list far longer than one statement takes
    spread = lambda real: [real[0], *range(10**9, 10**9 + MANY), *real[1:]]  # noqa: E731
    with db.session() as s:
        assert sorted(f.id for f in repo.get_features(s, feature_ids + feature_ids)) == sorted(feature_ids)
        assert set(repo.current_explanations(s, spread(feature_ids))) == set(feature_ids)
        assert set(repo.explanations_with_features(s, explanation_ids)) == set(explanation_ids)
        assert already_done.finished_features(s, spread(feature_ids), config_hash=repo.config_hash({"k": 1})) == {
            f: already_done.Finished(OutcomeStatus.OK) for f in feature_ids}
        assert outcome_store.scored_explanations(s, spread(feature_ids)[::-1]) == explanation_ids
        assert already_done.with_shuffled_baseline(s, spread(explanation_ids), simulator="sim") == set(explanation_ids)
        assert already_done.simulated_with(s, spread(explanation_ids), simulator="sim") == set(explanation_ids)
        assert already_done.scored_with(s, spread(explanation_ids), simulator="sim",
                                        method="ev_correlation") == set(explanation_ids)
        assert already_done.example_scored(s, spread(explanation_ids), methods=["detection_auroc"],
                                           scorer_config={"judge": "j"}) == set(explanation_ids)
