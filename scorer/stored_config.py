"""What a simulation and its scores are stored under: the configuration that says 'the same work'.

The scoring version says what the numbers of a simulation score mean. It is part of every simulation score's
stored configuration (its scorer hash), so numbers of different versions are never ranked together and a run
under a new version scores again what an older one scored. It is not part of the simulation's own configuration:
the simulator's output does not depend on it, so a stored simulation is scored again without a new LLM call.

Versions: 1 (stored without a version): real activations clipped at zero before scoring. 2: real activations
polarity-signed and never clipped, as OpenAI scored them (docs/score-definitions.md).
"""

from __future__ import annotations

from activations.vocab import DataSplit, Polarity, SampleKind
from simulator import prompt_version
from simulator.base import VALUE_READING

SCORING_VERSION = "3"  # docs/score-definitions.md#scoring-versions: what each version changed
# The test split's records a simulation covers: top and random (OpenAI's scored sets) and every quantile bin (the
# per-quantile scores). Part of the simulation's configuration: one stored before quantile bins were simulated
# holds none, so it is other work, never reused.
SIMULATED_SAMPLES: tuple[str, ...] = (SampleKind.TOP, SampleKind.RANDOM, SampleKind.QUANTILE)
# A negative explanation's: the bottom records (its side's top) and the random ones. Quantile bins are bins of the
# positive side, so they are not simulated for it.
NEGATIVE_SIMULATED_SAMPLES: tuple[str, ...] = (SampleKind.BOTTOM, SampleKind.RANDOM)


def simulated_samples(polarity: str) -> tuple[str, ...]:
    """The test split's samples a simulation of an explanation of this polarity covers."""
    return NEGATIVE_SIMULATED_SAMPLES if polarity == Polarity.NEGATIVE else SIMULATED_SAMPLES


def simulation_config(simulator: str, polarity: str = Polarity.POSITIVE, **extra: object) -> dict:
    """The configuration of a simulation of the held-out test split by `simulator` (a shuffled baseline adds
    the own explanation it stands in for). The value reading is the simulator's: a simulation made under another
    reading of the values 0..10 (simulator.base.VALUE_READING), with another version of a logprob: simulator's
    prompt (simulator.prompt_version) or of other records (`simulated_samples`: a negative explanation's cover its
    bottom records) is other work, never reused. A positive explanation's configuration is the one stored before
    polarities had their own samples."""
    # "split" is the data split here (elsewhere `data_split`): the key is hashed into every stored simulation's
    # configuration, so renaming it would make every stored simulation look like other work and be redone.
    version = prompt_version(simulator)
    return {"simulator": simulator, "split": DataSplit.TEST.value, "value_reading": VALUE_READING,
            **({"prompt_version": version} if version is not None else {}),
            "samples": [str(s) for s in simulated_samples(polarity)], **extra}


def simulation_scorer_config() -> dict:
    """The stored configuration of every simulation score (own, shuffled baseline, calibrated)."""
    return {"scoring_version": SCORING_VERSION}
