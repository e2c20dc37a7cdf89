"""The balanced train/valid/test assignment (activations.splits) and the importers that use it."""

from __future__ import annotations

import json
import random as rnd
from collections import Counter

import pytest

from activations.collect_config import CollectConfig
from activations.importers.neuronpedia import parse_neuronpedia
from activations.importers.openai_format import parse_neuron_record
from activations.records import FeatureRecords, interleaved_data_split
from activations.splits import balanced_splits, bottom_splits, held_out_counts
from tests.conftest import FIXTURES

FRACTIONS = (0.6, 0.2, 0.2)


def _counts(splits: dict, keys: list) -> Counter:
    return Counter(splits[k] for k in keys)


def test_overlapping_samples_one_split_per_window_and_balanced():
    """20 top and 20 random windows, 6 of them in both samples: each window has one split, and valid and test
    each hold 4 top and 4 random records (20% of 20), a shared window counting once in each sample."""
    top = list(range(20))  # strongest first
    random = [1, 4, 7, 12, 15, 19] + list(range(100, 114))
    for salt in ("0:f/L6/mlp_neuron/0", "0:f/L6/mlp_neuron/1", "7:f/L6/mlp_neuron/0"):
        splits = balanced_splits(top, random, FRACTIONS, salt)
        assert set(splits) == set(top) | set(random)  # one entry per window: one split, whatever samples hold it
        for keys in (top, random):
            assert _counts(splits, keys) == {"train": 12, "valid": 4, "test": 4}


def test_bottom_windows_balanced_against_the_same_random_records():
    """A signed feature: its 20 bottom windows (2 of them random windows too, one a top window) hold as many valid
    and test records as its random sample; a window shared with another sample keeps its one split."""
    top, random = list(range(20)), list(range(100, 120))
    bottom = [100, 5] + list(range(200, 218))
    for salt in ("0:f/L6/mlp_neuron/0", "3:f/L6/mlp_neuron/9"):
        splits = balanced_splits(top, random, FRACTIONS, salt)
        bottoms = bottom_splits(bottom, random, splits, salt + ":bottom")
        assert set(bottoms) == set(bottom)
        assert bottoms[100] == splits[100] and bottoms[5] == splits[5]
        assert _counts(bottoms, bottom) == _counts(splits, random) == {"train": 12, "valid": 4, "test": 4}
        held = [i for i, key in enumerate(bottom) if bottoms[key] != "train" and key >= 200]
        assert held[0] <= 4 and held[-1] >= 14  # spread over the ranks, as top records are
    few = bottom_splits([300, 301, 302], random, balanced_splits(top, random, FRACTIONS, "0:g"), "0:g:bottom")
    assert sorted(few.values()) == ["test", "test", "test"]  # too few: test first


def test_held_out_top_records_spread_over_the_ranks():
    """Test and valid each take one top record from every fifth of the ranks (OpenAI's interleaving by rank)."""
    top, random = list(range(20)), list(range(100, 120))
    seen_ranks = set()
    for i in range(30):
        splits = balanced_splits(top, random, FRACTIONS, f"0:feature/{i}")
        for split in ("test", "valid"):
            ranks = [k for k in top if splits[k] == split]
            assert [r // 5 for r in ranks] == [0, 1, 2, 3]
            seen_ranks.update(ranks)
    assert len(seen_ranks) > 8  # the seeded offset moves the ranks from feature to feature


def test_seeded_and_stable():
    top, random = list(range(20)), list(range(50, 70))
    first = balanced_splits(top, random, FRACTIONS, "0:a")
    assert balanced_splits(list(top), list(reversed(random)), FRACTIONS, "0:a") == first  # random order is the hash's
    assert any(balanced_splits(top, random, FRACTIONS, f"{seed}:a") != first for seed in range(1, 6))


def test_too_few_random_only_windows_keeps_the_balance():
    """A corpus barely bigger than the samples: most random windows are top windows too. Top-only held-out windows
    without a random-only partner go back to train; valid and test stay balanced."""
    top, random = list(range(10)), list(range(2, 12))
    for i in range(20):
        splits = balanced_splits(top, random, FRACTIONS, f"s{i}")
        for split in ("test", "valid"):
            assert _counts(splits, top)[split] == _counts(splits, random)[split]
    splits = balanced_splits(list(range(5)), list(range(5)), FRACTIONS, "all shared")  # every window in both
    assert _counts(splits, list(range(5))) == {"train": 3, "valid": 1, "test": 1}


def test_random_samples_of_every_shape_stay_balanced():
    """Seeded random sizes and overlaps: balance always; the target counts whenever random-only windows suffice."""
    gen = rnd.Random(0)
    for case in range(300):
        n_top, n_random = gen.randint(1, 30), gen.randint(1, 30)
        universe = list(range(gen.randint(max(n_top, n_random), 80)))
        top, random = gen.sample(universe, n_top), gen.sample(universe, n_random)
        splits = balanced_splits(top, random, FRACTIONS, f"case{case}")
        n_valid, n_test = held_out_counts(min(n_top, n_random), FRACTIONS)
        top_c, random_c = _counts(splits, top), _counts(splits, random)
        assert top_c["test"] == random_c["test"] <= n_test and top_c["valid"] == random_c["valid"] <= n_valid
        if len(set(random) - set(top)) >= n_valid + n_test:
            assert (top_c["valid"], top_c["test"]) == (n_valid, n_test), case


def test_counts_follow_the_fractions_of_the_smaller_sample():
    assert held_out_counts(20, FRACTIONS) == (4, 4)
    assert held_out_counts(3, FRACTIONS) == (1, 1)
    assert held_out_counts(1, FRACTIONS) == (0, 0)
    assert held_out_counts(10, (0.5, 0.25, 0.25)) == (3, 3)  # 2.5 rounds half up
    assert held_out_counts(1, (0.0, 0.5, 0.5)) == (0, 1)  # valid gives way when both would take more than n
    assert balanced_splits([], [1, 2], FRACTIONS, "dead") == {}  # no top records: nothing to balance


def test_an_unknown_split_rule_is_refused():
    with pytest.raises(ValueError, match="data split rule 'hash'.*leave data_split_rule at its default"):
        CollectConfig(data_split_rule="hash")


def _held_out_balance(fr: FeatureRecords) -> dict[str, tuple[int, int]]:
    return {split: (len(fr.select(samples=["top"], data_splits=[split])),
                    len(fr.select(samples=["random"], data_splits=[split]))) for split in ("valid", "test")}


def test_neuronpedia_import_is_balanced():
    """30 top and 5 lowest-bin ("random") records per feature: 1 + 1 in valid and in test (a quarter of 5)."""
    obj = json.loads((FIXTURES / "neuronpedia" / "gpt2-small-res-jb-layer0-batch-1.json").read_text())
    for imported in parse_neuronpedia(obj, "batch-1"):
        assert _held_out_balance(imported.records) == {"valid": (1, 1), "test": (1, 1)}
        for sample in {r.sample for r in imported.records.select(samples=["quantile"])}:  # interleaved, as before
            splits = [r.data_split for r in imported.records.select(samples=[sample])]
            assert splits == [interleaved_data_split(i) for i in range(len(splits))]


def test_openai_neuron_record_import_is_balanced_and_spread():
    top = [{"tokens": ["a", "b"], "activations": [0.0, 20.0 - i]} for i in range(20)]
    random = [{"tokens": ["c"], "activations": [0.1 * i]} for i in range(12)]
    obj = {"dataclass_name": "NeuronRecord", "neuron_id": {"layer_index": 3, "neuron_index": 9},
           "most_positive_activation_records": top[::-1],  # weakest first in the file: ranked by peak anyway
           "random_sample": random}
    records = parse_neuron_record(obj, "n.json").records
    assert _held_out_balance(records) == {"valid": (3, 3), "test": (3, 3)}
    test_peaks = sorted(r.max_activation for r in records.select(samples=["top"], data_splits=["test"]))
    assert test_peaks[0] <= 8 and test_peaks[-1] >= 13  # spread over the strength range, not bunched
