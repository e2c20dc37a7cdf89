"""A small stored layer for the contrastive explainer's tests: feature 0 with two neighbours (1 and 2) whose top
windows sit in every split, a window feature 0 holds out that is a neighbour's train window, and features without
neighbours. Words name what may be shown: `heldout*`, `leakwindow` and `judgedwindow` never reach feature 0's
explainer; `neighbour*` are hard negatives it may see."""

from __future__ import annotations

from sqlalchemy import select

from activations.records import ActivationRecord, FeatureId, FeatureStats, Provenance
from storage.core.db import Database
from storage.core.schema import Feature
from tests.stored import store_features

MODEL, LAYER = "tiny-model", 6


def record(words: str, fire_at: int | None, sample: str, data_split: str, doc: str, peak: float = 3.0,
           quiet_level: float = 0.0) -> ActivationRecord:
    """One record on the window named `doc` (records with the same doc and words share their window)."""
    tokens = [f" {w}" for w in words.split()]
    acts = [peak if i == fire_at else quiet_level for i in range(len(tokens))]
    return ActivationRecord(tokens, acts, sample=sample, data_split=data_split, provenance=Provenance("c", doc, 0))


# Feature 1's train window that feature 0 holds out (its test random record), and feature 2's train window that the
# example scorers judge (feature 2 has one test top window, so the scorers take its first train one too).
LEAK = "dogs leakwindow bark loudly at night"
JUDGED = "birds judgedwindow sing in the morning"


def _own(index: int) -> list[ActivationRecord]:
    top = [record(f"the cat number{i} sat on the mat", 1, "top", "train", f"f{index}-top{i}") for i in range(4)]
    top += [record(f"the cat heldout{index} ran", 1, "top", split, f"f{index}-top-{split}") for split in ("valid", "test")]
    randoms = [record(f"plain quiet{index}x{i} words go here", None, "random", "train", f"f{index}-r{i}")
               for i in range(2)]
    randoms += [record(f"heldout{index} quiet words", None, "random", split, f"f{index}-r-{split}")
                for split in ("valid", "test")]
    return top + randoms


def _neighbour(index: int, n_test: int, first_train: str) -> list[ActivationRecord]:
    words = [first_train] + [f"some neighbour{index}x{i} text fires here" for i in range(1, 3)]
    top = [record(w, 2, "top", "train", f"f{index}-n{i}") for i, w in enumerate(words)]
    top += [record(f"heldout{index} neighbour test window", 2, "top", "test", f"f{index}-t{i}") for i in range(n_test)]
    return top + [record(f"neighbour{index} random words", None, "random", "test", f"f{index}-rt")]


def fill_contrast_layer(db: Database) -> None:
    """Features 0-2 as above; 3: no neighbours, quiet random train windows; 4: no neighbours and no quiet window."""
    zero = _own(0) + [record(LEAK, None, "random", "test", "f1-n0"),
                      record("some neighbour1x1 text fires here", None, "random", "train", "f1-n1")]
    one = _neighbour(1, 2, LEAK)
    two = _neighbour(2, 1, JUDGED)
    three = _own(3)
    four = [r for r in _own(4) if r.sample == "top"] + [
        record(f"busy words everywhere {i}", 0, "random", "train", f"f4-busy{i}", peak=2.0, quiet_level=1.0)
        for i in range(2)]
    records = [zero, one, two, three, four]
    features = [FeatureId(MODEL, LAYER, "mlp_neuron", i) for i in range(len(records))]
    stats = [FeatureStats(max_activation=3.0, mean=0.1, variance=0.2, firing_fraction=0.05, n_tokens=1000)
             for _ in records]
    neighbours = {0: [1, 2], 1: [0], 2: [0]}
    with db.session() as s, s.begin():
        store_features(s, features, records, stats)
        for row in s.scalars(select(Feature).where(Feature.index.in_(list(neighbours)))):
            row.extra = {**(row.extra or {}),
                         "neighbours": [{"index": n, "similarity": 0.5} for n in neighbours[row.index]]}
