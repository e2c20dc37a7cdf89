"""Read activation values 0..10 out of an endpoint's top-logprob alternatives."""

from __future__ import annotations

import math
from collections.abc import Mapping

from simulator.base import MAX_VALUE, SimulationError

_VALUE_OF: dict[str, int] = {}  # alternative token -> its activation value, or -1 (a few hundred texts recur)
_MEMO_MAX = 100_000


def _value_of(text: str) -> int:
    stripped = text.strip()
    value = int(stripped) if stripped.isascii() and stripped.isdigit() and int(stripped) <= MAX_VALUE else -1
    if len(_VALUE_OF) < _MEMO_MAX:
        _VALUE_OF[text] = value
    return value


def value_probs(top: Mapping[str, float]) -> list[float]:
    """Probability of each value 0..10 among the alternatives that are an activation value once surrounding
    whitespace is dropped (a server may merge the TAB or newline into the digit token); variants of one value
    add up. Summed into a list in one pass: the all-at-once simulator reads this for every token it simulates."""
    probs = [0.0] * (MAX_VALUE + 1)
    value_of, exp = _VALUE_OF.get, math.exp  # bound once: this loop runs for every alternative of every token
    for text, logprob in top.items():
        value = value_of(text)
        if value is None:
            value = _value_of(text)
        if value >= 0 and logprob is not None:
            probs[value] += exp(logprob)
    return probs


def distribution_from_top(top: Mapping[str, float], where: str) -> list[float]:
    """Length-11 distribution renormalised over the value alternatives; SimulationError when there are none."""
    probs = value_probs(top)
    total = math.fsum(probs)
    if not total > 0 or not math.isfinite(total):
        raise SimulationError(f"{where}: the model put no probability on any activation value 0..{MAX_VALUE}")
    return [p / total for p in probs]
