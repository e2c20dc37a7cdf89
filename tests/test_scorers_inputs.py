"""The one builder of the example scorers' inputs (scorer.example_sets.example_input): polarity, quantile spread,
quiet spans, and neighbours' windows where the feature itself does not fire."""

from __future__ import annotations

from activations.records import ActivationRecord, FeatureId, FeatureRecords, FeatureStats
from activations.vocab import ClassificationSubset
from scorer.example_sets import NeighbourWindow, example_input
from scorer.examples import EXAMPLE_TOKENS

FID = FeatureId("m", 0, "mlp_neuron", 0)
RANDOM, NEIGHBOURS = ClassificationSubset.RANDOM, ClassificationSubset.NEIGHBOURS


def _record(peak: float, sample: str, data_split: str = "test", at: int = 30, n: int = 48) -> ActivationRecord:
    acts = [0.0] * n
    acts[at] = peak
    return ActivationRecord([f" w{i}" for i in range(n)], acts, sample=sample, data_split=data_split)


def _feature(records: list[ActivationRecord]) -> FeatureRecords:
    return FeatureRecords(FID, records, FeatureStats(max_activation=10.0, min_activation=-10.0))


def test_activating_spans_spread_over_quantiles_and_hold_their_peak():
    records = [_record(10.0, "top") for _ in range(6)] + [_record(3.0, "quantile:1"), _record(2.0, "quantile:0"),
                                                          _record(0.5, "quantile:0"),  # below 1 on 0..10: not firing
                                                          _record(9.0, "top", data_split="train")]
    examples = example_input(_feature(records), "positive", None, n_activating=4)
    peaks = sorted(max(e.values) for e in examples.activating)
    assert peaks == [2.0, 3.0, 10.0, 10.0]  # both quantile bins make the cut; the train record never does
    assert all(len(e.tokens) == EXAMPLE_TOKENS for e in examples.activating)
    assert examples.missing[NEIGHBOURS].startswith("no nearest neighbours")
    assert examples.missing[RANDOM].startswith(f"no {EXAMPLE_TOKENS}-token span")


def test_quiet_spans_come_from_test_and_valid_random_records_first():
    records = [_record(10.0, "top"), _record(0.0, "random"), _record(0.0, "random", data_split="valid"),
               _record(0.0, "random", data_split="train"), _record(5.0, "random", at=10)]
    # 48 tokens make two 24-token spans; the firing record keeps only its quiet second half.
    assert len(example_input(_feature(records), "positive", None, n_random=5).negatives[RANDOM]) == 5
    # Train spans fill up only what test and valid cannot.
    assert len(example_input(_feature(records), "positive", None, n_random=10).negatives[RANDOM]) == 7
    only_train = [_record(10.0, "top"), _record(0.0, "random", data_split="train")]
    assert len(example_input(_feature(only_train), "positive", None).negatives[RANDOM]) == 2


def test_negative_polarity_reads_the_most_negative_activations():
    """The negative side's activating spans come from its bottom records (a signed collection's most negative
    windows), on the negated scale; a top record is not of that side, whatever its values."""
    records = [_record(-10.0, "bottom"), _record(-4.0, "bottom"), _record(-9.0, "top"), _record(6.0, "random", at=5)]
    examples = example_input(_feature(records), "negative", None)
    assert sorted(max(e.values) for e in examples.activating) == [4.0, 10.0]
    assert len(examples.negatives[RANDOM]) == 2  # both halves of the random record: firing up is quiet here


def test_neighbour_windows_where_the_feature_fires_are_left_out():
    mine = tuple([0.0] * 48)
    firing = tuple(5.0 if i == 30 else 0.0 for i in range(48))
    windows = [NeighbourWindow(3, 0.9, _record(7.0, "top"), mine),
               NeighbourWindow(3, 0.9, _record(7.0, "top"), firing),
               NeighbourWindow(4, 0.8, _record(7.0, "top"), None)]
    examples = example_input(_feature([_record(10.0, "top")]), "positive", windows)
    assert len(examples.negatives[NEIGHBOURS]) == 2
    assert all(max(e.values) == 10.0 for e in examples.negatives[NEIGHBOURS])  # on the neighbour's own scale
    examples = example_input(_feature([_record(10.0, "top")]), "positive", windows[1:2])
    assert "fires on every stored top window" in examples.missing[NEIGHBOURS]
