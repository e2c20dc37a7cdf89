"""Garbage-collector settings for a long batch of LLM work.

A batch allocates container objects at a high rate (decoded response rows, records, score sets) while a
large, stable heap (imported modules, the ORM's mappers, the models) stays alive throughout. CPython's
default thresholds then run a full collection every few seconds, each walking that whole heap: a tenth of
the client's CPU in benchmarks/pipeline_throughput.py. Freezing the heap built before the batch keeps
full collections from walking it, and a larger young generation makes collections rarer; reference cycles
are still collected.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

YOUNG_THRESHOLD = 50_000  # container allocations between young collections (CPython's default: 700)


@contextmanager
def batch_collector() -> Iterator[None]:
    """Within the block: the heap built so far is frozen (left out of collections) and young collections
    are rarer. Settings are restored after, and the frozen objects are collectable again."""
    before = gc.get_threshold()
    gc.collect()  # what is garbage now is not frozen
    gc.freeze()
    gc.set_threshold(max(YOUNG_THRESHOLD, before[0]), *before[1:])
    try:
        yield
    finally:
        gc.set_threshold(*before)
        gc.unfreeze()
