"""Where a score came from: measured here (a simulator or judge this tool ran on stored records, with its
shuffled baseline) or imported from a file (`import:<format>`: the file's own number, with no simulator here and
no baseline). Imported scores are kept and shown, labelled, but rank features only when a reader asks for them."""

from __future__ import annotations

from typing import Any

from sqlalchemy import or_

IMPORTED_PREFIX = "import:"  # the `simulator` of every imported score, e.g. import:openai


def is_imported(simulator: str | None) -> bool:
    return simulator is not None and simulator.startswith(IMPORTED_PREFIX)


def measured(simulator: Any) -> Any:
    """SQL condition on a score's simulator column (or an expression of it): the score was measured here.
    A NULL simulator (scores written without one) counts as measured."""
    return or_(simulator.is_(None), ~simulator.startswith(IMPORTED_PREFIX))
