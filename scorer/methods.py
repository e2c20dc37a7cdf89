"""Every stored score method, the scorer that produces it and the subsets it is stored on (first = default)."""

from __future__ import annotations

from activations.errors import UserError
from activations.vocab import (
    ClassificationSubset,
    InterventionSubset,
    SampleKind,
    ScoreMethod,
    ScorerName,
    ScoringSubset,
)
from scorer.subsets import CALIBRATED_METHODS, QUANTILE_METHODS
from scorer.subsets import METHODS as SIMULATION_METHODS

SCORER_METHODS: dict[ScorerName, tuple[ScoreMethod, ...]] = {
    ScorerName.SIMULATION: (*SIMULATION_METHODS, *CALIBRATED_METHODS),  # calibrated: only with --calibrate
    ScorerName.DETECTION: (ScoreMethod.DETECTION_BALANCED_ACCURACY, ScoreMethod.DETECTION_AUROC),
    ScorerName.FUZZING: (ScoreMethod.FUZZING_BALANCED_ACCURACY, ScoreMethod.FUZZING_AUROC),
    ScorerName.EMBEDDING: (ScoreMethod.EMBEDDING_AUROC,),
    ScorerName.INTRUDER: (ScoreMethod.INTRUDER_ACCURACY,),
    ScorerName.INTERVENTION: (ScoreMethod.INTERVENTION_ACCURACY, ScoreMethod.INTERVENTION_AUROC),
    ScorerName.STEERING: (ScoreMethod.STEERING_LOGPROB_GAIN,),
}
ALL_METHODS: tuple[ScoreMethod, ...] = tuple(m for methods in SCORER_METHODS.values() for m in methods)
SIMULATION_SUBSETS: tuple[str, ...] = tuple(s.value for s in ScoringSubset)
EXAMPLE_SUBSETS: tuple[str, ...] = tuple(s.value for s in ClassificationSubset)
INTERVENTION_SUBSETS: tuple[str, ...] = tuple(s.value for s in InterventionSubset)  # intervention and steering
QUANTILE_SUBSET = "quantile:<i>"  # how the per-quantile subsets are named to a user (the bins vary by collection)


def scorer_of(method: str) -> ScorerName:
    for scorer, methods in SCORER_METHODS.items():
        if method in methods:
            return scorer
    raise UserError(f"unknown score method {method!r}; known: {', '.join(ALL_METHODS)}")


def subsets_of(method: str) -> tuple[str, ...]:
    """The subsets `method` is stored on, the default first (top_and_random, random for example scorers, neutral for
    the steering-based scorers)."""
    scorer = scorer_of(method)
    if scorer == ScorerName.SIMULATION:
        return SIMULATION_SUBSETS
    return INTERVENTION_SUBSETS if scorer in (ScorerName.INTERVENTION, ScorerName.STEERING) else EXAMPLE_SUBSETS


def stored_subsets_text(method: str) -> str:
    """The subsets `method` is stored on, as a user reads them: `quantile:<i>` stands for every bin."""
    per_quantile = (QUANTILE_SUBSET,) if method in QUANTILE_METHODS else ()
    return ", ".join((*subsets_of(method), *per_quantile))


def is_stored_subset(method: str, subset: str) -> bool:
    """Whether `method` is ever stored on `subset` (any quantile bin for the per-quantile methods)."""
    return subset in subsets_of(method) or (method in QUANTILE_METHODS and SampleKind.quantile_bin(subset) is not None)


def parse_scorers(spec: str) -> list[ScorerName]:
    """`simulation,detection` -> the scorers in the order given, each once; a clear error for an unknown name."""
    out: list[ScorerName] = []
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        try:
            name = ScorerName(part)
        except ValueError:
            raise UserError(f"--scorer: unknown scorer {part!r}; choose from "
                             f"{', '.join(s.value for s in ScorerName)} (comma-separated)") from None
        if name not in out:
            out.append(name)
    if not out:
        raise UserError(f"--scorer: no scorer named in {spec!r}; e.g. simulation,detection")
    return out
