"""Read activation values 0..10 out of an endpoint's top-logprob alternatives."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from itertools import chain
from operator import methodcaller

import numpy as np

from simulator.base import MAX_VALUE, SimulationError

_MEMO_MAX = 100_000
_N_VALUES = MAX_VALUE + 1


class _ValueMemo(dict[str, int]):
    """Alternative token -> its activation value, or -1: a lookup is one C call, and only a text not seen
    before (a few hundred recur) runs Python."""

    def __missing__(self, text: str) -> int:
        stripped = text.strip()
        value = int(stripped) if stripped.isascii() and stripped.isdigit() and int(stripped) <= MAX_VALUE else -1
        if len(self) < _MEMO_MAX:
            self[text] = value
        return value


_VALUE_OF = _ValueMemo()


def value_probs(top: Mapping[str, float]) -> list[float]:
    """Probability of each value 0..10 among the alternatives that are an activation value once surrounding
    whitespace is dropped (a server may merge the TAB or newline into the digit token); variants of one value
    add up."""
    probs = [0.0] * _N_VALUES
    for text, logprob in top.items():
        value = _VALUE_OF[text]
        if value >= 0 and logprob is not None:
            probs[value] += math.exp(logprob)
    return probs


def distribution_from_top(top: Mapping[str, float], where: str) -> list[float]:
    """Length-11 distribution renormalised over the value alternatives; SimulationError when there are none."""
    probs = value_probs(top)
    total = math.fsum(probs)
    if not total > 0 or not math.isfinite(total):
        raise SimulationError(f"{where}: the model put no probability on any activation value 0..{MAX_VALUE}")
    return [p / total for p in probs]


def distributions_from_tops(tops: Sequence[Mapping[str, float]], where: Callable[[int], str]) -> np.ndarray:
    """`distribution_from_top` of every row at once, as an (n, 11) array: the all-at-once simulator reads one
    per simulated token (tens of thousands per feature), so the alternatives are flattened and summed by numpy
    rather than a Python loop per alternative. SimulationError names the first row (`where(i)`) without any
    probability on a value."""
    n = len(tops)
    lengths = np.fromiter(map(len, tops), dtype=np.intp, count=n)
    total = int(lengths.sum())
    try:
        logprobs = np.fromiter(chain.from_iterable(map(methodcaller("values"), tops)), dtype=np.float64, count=total)
    except TypeError:  # an alternative without a logprob (None): the row-by-row reading leaves those out
        return np.array([distribution_from_top(top, where(i)) for i, top in enumerate(tops)], dtype=np.float64) \
            .reshape(n, _N_VALUES)
    values = np.fromiter(map(_VALUE_OF.__getitem__, chain.from_iterable(tops)), dtype=np.intp, count=total)
    keep = values >= 0
    cells = np.repeat(np.arange(n, dtype=np.intp) * _N_VALUES, lengths)[keep] + values[keep]
    probs = np.bincount(cells, weights=np.exp(logprobs[keep]), minlength=n * _N_VALUES).reshape(n, _N_VALUES)
    sums = probs.sum(axis=1)
    bad = np.flatnonzero(~(sums > 0) | ~np.isfinite(sums))
    if bad.size:
        raise SimulationError(f"{where(int(bad[0]))}: the model put no probability on any activation value "
                              f"0..{MAX_VALUE}")
    return probs / sums[:, None]
