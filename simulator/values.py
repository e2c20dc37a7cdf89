"""Read activation values 0..10 out of an endpoint's top-logprob alternatives."""

from __future__ import annotations

import math
from collections.abc import Mapping

from simulator.base import MAX_VALUE, distribution_from_probs


def value_probs(top: Mapping[str, float]) -> dict[int, float]:
    """Probabilities of the alternatives that are an activation value once surrounding whitespace is dropped
    (a server may merge the TAB or newline into the digit token); variants of one value add up."""
    out: dict[int, float] = {}
    for text, logprob in top.items():
        stripped = text.strip()
        if stripped.isascii() and stripped.isdigit() and int(stripped) <= MAX_VALUE and logprob is not None:
            out[int(stripped)] = out.get(int(stripped), 0.0) + math.exp(logprob)
    return out


def distribution_from_top(top: Mapping[str, float], where: str) -> list[float]:
    """Length-11 distribution renormalised over the value alternatives; SimulationError when there are none."""
    return distribution_from_probs(value_probs(top), where)
