"""What a simulation and its scores are stored under: the configuration that says 'the same work'.

The scoring version says what the numbers of a simulation score mean. It is part of every simulation score's
stored configuration (its scorer hash), so numbers of different versions are never ranked together and a run
under a new version scores again what an older one scored. It is not part of the simulation's own configuration:
the simulator's output does not depend on it, so a stored simulation is scored again without a new LLM call.

Versions: 1 (stored without a version): real activations clipped at zero before scoring. 2: real activations
polarity-signed and never clipped, as OpenAI scored them (docs/score-definitions.md).
"""

from __future__ import annotations

from activations.vocab import DataSplit
from simulator.base import VALUE_READING

SCORING_VERSION = "2"


def simulation_config(simulator: str, **extra: object) -> dict:
    """The configuration of a simulation of the held-out test split by `simulator` (a shuffled baseline adds
    the own explanation it stands in for). The value reading is the simulator's: a simulation made under another
    reading of the values 0..10 (simulator.base.VALUE_READING) is other work, never reused."""
    return {"simulator": simulator, "split": DataSplit.TEST.value, "value_reading": VALUE_READING, **extra}


def simulation_scorer_config() -> dict:
    """The stored configuration of every simulation score (own, shuffled baseline, calibrated)."""
    return {"scoring_version": SCORING_VERSION}
