"""The simulator interface: an explanation plus token sequences in, an expected activation per token out."""

from __future__ import annotations

import math
import operator
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

MAX_VALUE = 10  # the 0..10 scale of OpenAI's prompts (activations/records.normalize_activations)
# How simulators read values 0..10, stored in every simulation's configuration so that numbers read one way are
# never taken for numbers read another. 2: "10" read as "1" then "0" on tokenizers that split digits (before,
# their "1" was read as value 1); docs/simulator-values.md.
VALUE_READING = 2


class SimulationError(Exception):
    """A simulation that failed: the pipeline stores it as a failure with this reason, never as zeros."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class SequenceSimulation:
    """Simulated activations of one record: expected value on the 0..10 scale per token, and, when the
    simulator has one, the probability of each value 0..10 per token."""

    tokens: list[str]
    expected_activations: list[float]
    # one row per token; the all-at-once simulator keeps its [tokens, 11] array (storage writes it as it is)
    distributions: list[list[float]] | np.ndarray | None = None


class Simulator(ABC):
    """Predicts activations from an explanation. `spec` names it (as in docs/architecture.md) for storage."""

    spec: str

    @abstractmethod
    async def simulate(self, explanation: str, records: Sequence[Sequence[str]]) -> list[SequenceSimulation]:
        """One SequenceSimulation per record, in order; raises SimulationError when it cannot."""

    async def aclose(self) -> None:
        """Release connections; simulators that talk to an endpoint close their LLM client."""
        client = getattr(self, "client", None)
        if client is not None:
            await client.aclose()


def check_inputs(explanation: str, records: Sequence[Sequence[str]]) -> None:
    """Reject empty explanations and malformed records before any model runs."""
    if not isinstance(explanation, str) or not explanation.strip():
        raise SimulationError("the explanation is empty; pass the text that describes the feature")
    for i, tokens in enumerate(records):
        if isinstance(tokens, str) or not all(isinstance(t, str) for t in tokens):
            raise SimulationError(f"record {i}: tokens must be a list of strings")
        if not tokens:
            raise SimulationError(f"record {i}: no tokens")


def expected_value(distribution: Sequence[float]) -> float:
    return math.fsum(map(operator.mul, range(len(distribution)), distribution))
