"""Stop a run at its first features when they all fail the same way: a missing key, an endpoint that refuses
every connection or an unknown model fail every feature alike, and a layer of them is minutes of retries and
a run that says `done`."""

from __future__ import annotations

import re

from activations.vocab import FailureKind

_NUMBERS = re.compile(r"\d+(\.\d+)?")


def _shape(reason: str) -> str:
    # Attempt counts, ports and timings differ between features that failed the same way.
    return _NUMBERS.sub("#", reason)


class FailFast:
    """Watches the features of a run as they finish; with `n` > 0, the run is to stop once its first `n` all
    failed on the endpoint or with the same reason. Features failed on their own input (dead, a prompt too long:
    no LLM call) say nothing about the run and are not counted; the first success ends the watch."""

    def __init__(self, n: int) -> None:
        self.n = n
        self._watching = n > 0
        self._failures: list[tuple[str, FailureKind | None]] = []
        self._first = ""

    def observe(self, failure: str | None, kind: FailureKind | None) -> str | None:
        """Count one finished feature (its failure reason and kind, None when it succeeded); returns, once, the
        reason to stop the run for."""
        if not self._watching or kind == FailureKind.INPUT:
            return None
        if failure is None:
            self._watching = False
            return None
        self._first = self._first or failure
        self._failures.append((_shape(failure), kind))
        on_endpoint = all(k == FailureKind.ENDPOINT for _, k in self._failures)
        if not on_endpoint and len({shape for shape, _ in self._failures}) > 1:
            self._watching = False
            return None
        if len(self._failures) < self.n:
            return None
        self._watching = False
        how = "on the endpoint" if on_endpoint else "the same way"
        return f"the first {self.n} features all failed {how} (--fail-fast {self.n}); the first: {self._first}"
