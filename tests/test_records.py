import math

import pytest

from activations.records import (
    ActivationRecord,
    FeatureId,
    FeatureRecords,
    RecordError,
    interleaved_data_split,
    normalize_activations,
)

FID = FeatureId("gemma-3-270m", 6, "mlp_neuron", 12)


def test_valid_record_keeps_tokens_and_floats():
    rec = ActivationRecord(["a", "b"], [0, 1.5], sample="quantile:2", data_split="test", feature=FID)
    assert rec.tokens == ("a", "b") and rec.activations == (0.0, 1.5) and rec.max_activation == 1.5


@pytest.mark.parametrize(
    "tokens, acts, message",
    [
        (["a", "b"], [1.0], "2 tokens but 1 activations"),
        ([], [], "empty record"),
        (["a"], [math.nan], "not a finite number"),
        (["a"], [math.inf], "not a finite number"),
        (["a"], ["x"], "must be numbers"),
    ],
)
def test_invalid_record_names_feature_and_record(tokens, acts, message):
    with pytest.raises(RecordError) as err:
        ActivationRecord(tokens, acts, label="top[3]", feature=FID)
    assert message in str(err.value)
    assert "gemma-3-270m/L6/mlp_neuron/12" in str(err.value) and "top[3]" in str(err.value)


def test_bad_sample_and_data_split_names_rejected():
    with pytest.raises(RecordError, match="sample 'best'"):
        ActivationRecord(["a"], [1.0], sample="best")
    with pytest.raises(RecordError, match="data_split"):
        ActivationRecord(["a"], [1.0], data_split="holdout")


def test_feature_id_rules():
    assert str(FeatureId("m", 1, "sae_latent", 5, sae="res")) == "m/L1/res/sae_latent/5"
    with pytest.raises(RecordError, match="needs an SAE"):
        FeatureId("m", 1, "sae_latent", 5)
    with pytest.raises(RecordError, match="kind"):
        FeatureId("m", 1, "attention_head", 5)


def test_normalisation_matches_openai():
    assert normalize_activations([-1.0, 0.0, 0.5, 0.99, 1.0, 2.0], 1.0) == [0, 0, 5, 9, 10, 10]
    assert normalize_activations([1.0, 2.0], 0.0) == [0, 0]


def test_select_by_sample_and_interleaving():
    recs = [ActivationRecord(["x"], [float(i)], sample=s, data_split=interleaved_data_split(i))
            for i, s in enumerate(["top", "top", "quantile:0", "random"])]
    fr = FeatureRecords(FID, recs)
    assert len(fr.select(samples=["quantile"])) == 1
    assert [r.data_split for r in recs] == ["train", "train", "valid", "test"]
    assert fr.max_activation == 3.0
