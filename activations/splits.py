"""Train/valid/test assignment of one feature's records: the held-out splits balance top and random records.
A signed feature's bottom records (its negative side's top) are balanced against the same random records
(`bottom_splits`).

OpenAI scored a feature on its test split's top-activating and random records one to one. A split drawn per
window by a hash gives each feature its own luck (with 20 + 20 records at 0.6/0.2/0.2, about 4 +- 1.8 of each
in test), so a pooled score would weigh top and random records differently from feature to feature. Here
valid and test hold as many top as random records: `round(fraction * min(#top, #random))` each.

- A window has one split per feature, whatever samples it is in: a window in both the top and the random
  sample is one top and one random record of its split, so it never breaks the balance, and a window the
  explainer saw (train) is never scored.
- Held-out top records sit at evenly spaced ranks with a seeded offset (test and valid alternate along
  them), so every split sees the same range of strengths, as OpenAI interleaved theirs by rank.
- Random-only windows fill the held-out splits in a seeded hash order, as many as the top-only windows there.
  When too few random-only windows exist (a corpus barely larger than the samples), the weakest top-only
  held-out windows go back to train instead: balance first.
- Everything is a pure function of (salt, window keys): reruns and executors give the same splits.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Hashable, Sequence
from typing import TypeVar

import numpy as np

from activations.vocab import DataSplit

# Stored in each collection's configuration (CollectConfig.data_split_rule); collections without it used the
# per-window hash rule alone (`data_split_of` for every window).
BALANCED_SPLIT_RULE = "balanced-top-random/v1"

K = TypeVar("K", bound=Hashable)


def _unit(*parts: object) -> float:
    """A seeded uniform number in [0, 1): a hash of the parts' text (stable across processes and machines)."""
    digest = hashlib.blake2b(":".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def data_split_of(window_id: int, seed: int, fractions: tuple[float, float, float]) -> str:
    """The per-window hash rule: for windows that are in neither the top nor the random sample (quantile-only),
    and for every window of collections made before the balanced rule."""
    u = _unit(seed, window_id)
    edges = np.cumsum(fractions) / sum(fractions)
    return tuple(DataSplit)[min(int(np.searchsorted(edges, u, side="right")), 2)].value


def held_out_counts(n: int, fractions: tuple[float, float, float]) -> tuple[int, int]:
    """(valid, test) records of each sample when the smaller sample holds `n`: the configured fractions of
    `n`, rounded half up; valid gives way when both would take more than `n`."""
    total = sum(fractions)
    n_test = min(n, math.floor(n * fractions[2] / total + 0.5))
    n_valid = min(n - n_test, math.floor(n * fractions[1] / total + 0.5))
    return n_valid, n_test


def _is_test(i: int, n_test: int, n_held: int) -> bool:
    """Spreads `n_test` test slots evenly over a cycle of `n_held` held-out slots (the others are valid)."""
    i %= n_held
    return (i + 1) * n_test // n_held - i * n_test // n_held == 1


def _held_out_by_rank(ranked: Sequence[K], n_test: int, n_held: int, salt: str, tag: str) -> dict[K, str]:
    """`n_held` of `ranked` (strongest first) at evenly spaced ranks from a seeded offset, `n_test` of them test and
    the rest valid, spread over the ranks; `tag` keeps each sample's draw its own."""
    offset, turn = _unit(salt, f"{tag}offset"), int(_unit(salt, f"{tag}turn") * n_held)
    out: dict[K, str] = {}
    for j in range(n_held):  # rank steps are len(ranked) / n_held >= 1, so the ranks are distinct
        rank = int((j + offset) * len(ranked) / n_held)
        out[ranked[rank]] = (DataSplit.TEST if _is_test(j + turn, n_test, n_held) else DataSplit.VALID).value
    return out


def balanced_splits(top: Sequence[K], random: Sequence[K], fractions: tuple[float, float, float],
                    salt: str) -> dict[K, str]:
    """The split of every window of one feature's top and random samples.

    `top`: window keys strongest first; `random`: window keys in any order; a key in both is one window.
    `salt` names the feature and seed (it seeds the rank offset and the random order). Empty when either
    sample is empty: there is nothing to balance against, and the caller's per-window rule applies."""
    top, random = list(dict.fromkeys(top)), list(dict.fromkeys(random))
    if not top or not random:
        return {}
    n_valid, n_test = held_out_counts(min(len(top), len(random)), fractions)
    n_held = n_valid + n_test
    splits: dict[K, str] = {key: DataSplit.TRAIN.value for key in (*top, *random)}
    if n_held == 0:
        return splits
    splits.update(_held_out_by_rank(top, n_test, n_held, salt, ""))
    in_top, in_random = set(top), set(random)
    random_only = sorted((key for key in random if key not in in_top), key=lambda key: _unit(salt, "random", repr(key)))
    start = 0
    for split in (DataSplit.TEST.value, DataSplit.VALID.value):
        top_only = [key for key in top if splits[key] == split and key not in in_random]
        partners = random_only[start:start + len(top_only)]
        for key in partners:
            splits[key] = split
        for key in top_only[len(partners):]:  # no random-only partner left: back to train, weakest first
            splits[key] = DataSplit.TRAIN.value
        start += len(partners)
    return splits


def bottom_splits(bottom: Sequence[K], random: Sequence[K], splits: dict[K, str], salt: str) -> dict[K, str]:
    """The splits of a signed feature's bottom windows (the top windows of its negative side), by the rule above:
    valid and test hold as many bottom as random records, so the negative side's scored set (the test split's
    bottom and random records) is one to one as well. `splits`: the feature's windows split already (its top and
    random ones); a bottom window among them keeps its split (one split per window), and counts. The others,
    strongest (most negative) first, fill the held-out slots still open at evenly spaced ranks with a seeded
    offset, test and valid alternating; the rest are train. Too few bottom windows: test is filled first."""
    bottom = list(dict.fromkeys(bottom))
    out = {key: splits[key] for key in bottom if key in splits}
    free = [key for key in bottom if key not in splits]
    out.update({key: DataSplit.TRAIN.value for key in free})

    def missing(split: str) -> int:
        want = sum(1 for key in dict.fromkeys(random) if splits.get(key) == split)
        return max(0, want - sum(1 for value in out.values() if value == split))

    n_test = min(missing(DataSplit.TEST.value), len(free))
    n_held = n_test + min(missing(DataSplit.VALID.value), len(free) - n_test)
    if n_held == 0:
        return out
    out.update(_held_out_by_rank(free, n_test, n_held, salt, "bottom-"))
    return out
