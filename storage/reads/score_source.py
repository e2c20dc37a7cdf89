"""Where a score came from: measured here (a simulator or judge this tool ran on stored records, with its
shuffled baseline) or imported from a file (`import:<format>`: the file's own number, with no simulator here and
no baseline). Imported scores are kept and shown, labelled, but rank features only when a reader asks for them.
Measured simulation scores rank only when they are of the current scoring version."""

from __future__ import annotations

from typing import Any

from sqlalchemy import or_
from sqlalchemy import true as sql_true

from activations.vocab import ScorerName
from scorer import SCORER_METHODS, SCORING_VERSION, simulation_scorer_config
from storage.core.repository import config_hash

IMPORTED_PREFIX = "import:"  # the `simulator` of every imported score, e.g. import:openai
SIMULATION_METHODS = tuple(m.value for m in SCORER_METHODS[ScorerName.SIMULATION])
CURRENT_SCORER_HASH = config_hash(simulation_scorer_config())  # what every current simulation score stores
# The scorer hash of each scoring version's simulation scores: version 1 stored no version (an empty config).
_VERSION_OF_HASH = {config_hash({}): "1", config_hash({"scoring_version": "2"}): "2",
                    CURRENT_SCORER_HASH: SCORING_VERSION}


def is_imported(simulator: str | None) -> bool:
    return simulator is not None and simulator.startswith(IMPORTED_PREFIX)


def measured(simulator: Any) -> Any:
    """SQL condition on a score's simulator column (or an expression of it): the score was measured here.
    A NULL simulator (scores written without one) counts as measured."""
    return or_(simulator.is_(None), ~simulator.startswith(IMPORTED_PREFIX))


def current_version(method: Any, scorer_hash: Any, simulator: Any) -> Any:
    """SQL condition on a score: a simulation score was measured under the current scoring version
    (scorer.stored_config), or imported (the file's own number, labelled as such). Numbers of another scoring
    version mean something else, so they never rank or count beside these; other scorers' scores pass as they are.
    `method` is a method name (one query's) or the method column (a query over every method)."""
    current = or_(scorer_hash == CURRENT_SCORER_HASH, ~measured(simulator))
    if not isinstance(method, str):
        return or_(method.not_in(SIMULATION_METHODS), current)
    return current if method in SIMULATION_METHODS else sql_true()


def scoring_version(method: str, scorer_hash: str, simulator: str | None) -> str | None:
    """The scoring version of a measured simulation score, so readers can tell old numbers from current ones;
    None for other scorers' and imported scores (and a hash no version here wrote)."""
    if method not in SIMULATION_METHODS or is_imported(simulator):
        return None
    return _VERSION_OF_HASH.get(scorer_hash)
