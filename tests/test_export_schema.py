"""The Parquet export schema is held to the row dicts of storage.core.rows: a key added to a row dict without a
Parquet column (or the other way round) fails here instead of being silently dropped from exports."""

from __future__ import annotations

import pyarrow as pa

from activations.records import FeatureId
from autointerp.export_writers import FEATURE_SCHEMA
from scorer import simulation_scorer_config
from storage.core import repository as repo
from storage.reads.feature_documents import iter_feature_documents
from tests.pipeline_data import fill_layer
from tests.stored import store_features, store_score


def _names(struct: pa.DataType) -> set[str]:
    return {struct.field(i).name for i in range(struct.num_fields)}


def test_parquet_schema_has_exactly_the_keys_of_the_row_dicts(db):
    fill_layer(db, 1)
    with db.session() as s, s.begin():
        feature = store_features(s, [FeatureId("tiny-model", 6, "mlp_neuron", 0)])[0]
        explanation, _ = repo.add_explanation(s, feature, explainer="openai:x", config={"k": 1}, text="digits")
        store_score(s, explanation, feature, method="ev_correlation", subset="random_only", value=0.5,
                    simulator="embedding", scorer_config=simulation_scorer_config())
    with db.session() as s:
        (doc,) = list(iter_feature_documents(s))
    explanation_doc = doc["explanations"][0]
    explanation_type = FEATURE_SCHEMA.field("explanations").type.value_type
    assert set(doc) == set(FEATURE_SCHEMA.names)
    assert set(doc["records"][0]) == _names(FEATURE_SCHEMA.field("records").type.value_type)
    assert set(explanation_doc) == _names(explanation_type)
    assert set(explanation_doc["scores"][0]) == _names(explanation_type.field("scores").type.value_type)
