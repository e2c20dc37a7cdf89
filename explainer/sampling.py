"""Which firing train records the explainer sees: the `--explainer-sample` choices.

- top: the records collected as the feature's top windows, highest peak first (OpenAI's explainer; the default).
  Explaining the negative side, its top windows are the bottom records (a signed collection's most negative).
- quantiles: the same number from each activation quantile bin, drawn at random within a bin (delphi's default).
- random: drawn uniformly from every firing train record, whichever sample collected it.
- mixed: half top (the highest), the rest as `quantiles`.

Draws are seeded by the run's seed and the feature, so a rerun shows the same records. Whatever is chosen is
ordered by peak, highest first: fitting drops the lowest first, and the first shown sets the 0..10 scale.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from activations.records import ActivationRecord
from activations.vocab import SampleKind

SAMPLES = ("top", "quantiles", "random", "mixed")
DEFAULT_SAMPLE = "top"
SEEDED_SAMPLES = frozenset({"quantiles", "random", "mixed"})  # the seed changes which records these show


def check_sample(sample: str) -> None:
    if sample not in SAMPLES:
        raise ValueError(f"explainer sample {sample!r} is not one of {', '.join(SAMPLES)}")


def choose(records: Sequence[ActivationRecord], peaks: Sequence[float], *, sample: str, n: int,
           seed: str, side: str = SampleKind.TOP) -> list[int]:
    """Indices of up to `n` of `records` (all firing: peak > 0 on the explained side), highest peak first.
    `side`: the sample kind of the explained side's top records (bottom for the negative side)."""
    check_sample(sample)
    rng = random.Random(seed)  # a str seed hashes the same in every process
    indices = range(len(records))
    top = sorted((i for i in indices if records[i].sample == side), key=lambda i: -peaks[i])
    if sample == "top":
        chosen = top[:n]
    elif sample == "random":
        chosen = rng.sample(list(indices), min(n, len(records)))
    else:
        chosen = top[:n // 2] if sample == "mixed" else []
        chosen += _stratified(records, n - len(chosen), rng)
    return sorted(chosen, key=lambda i: (-peaks[i], i))


def _stratified(records: Sequence[ActivationRecord], n: int, rng: random.Random) -> list[int]:
    """Up to `n` quantile records, one from each bin in turn (highest bin first) so the bins are equal to
    within one; a bin that runs out leaves its turns to the others."""
    bins: dict[int, list[int]] = {}
    for i, r in enumerate(records):
        if (b := SampleKind.quantile_bin(r.sample)) is not None:
            bins.setdefault(b, []).append(i)
    queues = [rng.sample(bins[b], len(bins[b])) for b in sorted(bins, reverse=True)]
    out: list[int] = []
    while len(out) < n and any(queues):
        for queue in queues:
            if queue and len(out) < n:
                out.append(queue.pop())
    return out

