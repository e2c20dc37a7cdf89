"""The example sets the detection, fuzzing and embedding scorers judge: a feature's activating spans, quiet spans
of its random records, and its neighbours' top spans where it does not fire (hard negatives)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

from activations.records import FeatureRecords, NeighbourWindow
from activations.vocab import ClassificationSubset, DataSplit, Polarity, SampleKind
from scorer.examples import EXAMPLE_TOKENS, FIRING_LEVEL, Example, ExampleSet, peak_span, peak_start, quiet_spans
from scorer.scored_set import prompt_scale, side_sample

T = TypeVar("T")


def _round_robin(groups: Sequence[Sequence[T]]) -> list[T]:
    """The first of each group, then the second of each, ...: a cut of the result spreads over the groups."""
    return [g[i] for i in range(max((len(g) for g in groups), default=0)) for g in groups if i < len(g)]


def example_input(feature: FeatureRecords, polarity: str, neighbours: Sequence[NeighbourWindow] | None, *,
                  n_activating: int = 10, n_random: int = 10, n_neighbours: int = 10) -> ExampleSet:
    """The one builder of what the example scorers (detection, fuzzing, embedding) judge, on the polarity's 0..10
    scale: activating spans from the test split's top and quantile records (every quantile represented;
    negative polarity: its bottom records, the negative side's top), quiet spans of its random records (test and
    valid first, which the explainer never saw), and the neighbours' top spans (negative: their bottom spans) where
    this feature does not fire (hard negatives)."""
    scaled = prompt_scale(feature, polarity)
    side = side_sample(polarity)
    samples = [side] if polarity == Polarity.NEGATIVE else [side, SampleKind.QUANTILE]
    test = feature.select(samples=samples, data_splits=[DataSplit.TEST])
    by_sample: dict[str, list[Example]] = {}
    for record in test:
        values = scaled(record.activations)
        if max(values) >= FIRING_LEVEL:
            by_sample.setdefault(record.sample, []).append(peak_span(record.tokens, values))
    # Top first, then quantile bins from the highest down, so a short cut still spans the range.
    order = sorted(by_sample, key=lambda s: (s != side, -(SampleKind.quantile_bin(s) or 0)))
    examples = ExampleSet(_round_robin([by_sample[s] for s in order])[:n_activating])

    def quiet(data_splits: Sequence[str]) -> list[Example]:
        return _round_robin([quiet_spans(r.tokens, scaled(r.activations))
                             for r in feature.select(samples=[SampleKind.RANDOM], data_splits=data_splits)])

    # Train spans only when test and valid run short: a quiet span shows nothing the explainer could have used.
    randoms = (quiet([DataSplit.TEST, DataSplit.VALID]) + quiet([DataSplit.TRAIN]))[:n_random]
    if randoms:
        examples.negatives[ClassificationSubset.RANDOM] = randoms
    else:
        examples.missing[ClassificationSubset.RANDOM] = (
            f"no {EXAMPLE_TOKENS}-token span of the random records stays below {FIRING_LEVEL:g} on the 0..10 scale "
            "(the feature fires nearly everywhere)")
    if neighbours is None:
        examples.missing[ClassificationSubset.NEIGHBOURS] = (
            "no nearest neighbours stored for this feature (collection computes them)")
        return examples
    per_neighbour: dict[int, list[Example]] = {}
    sign = -1.0 if polarity == Polarity.NEGATIVE else 1.0  # a neighbour's side: its bottom windows, negated
    for window in neighbours:
        values = [sign * a for a in window.record.activations]
        peak = max(values)
        if peak <= 0:
            continue
        start = peak_start(values)
        span = slice(start, start + EXAMPLE_TOKENS)
        if window.own_activations is not None and max(scaled(window.own_activations[span])) >= FIRING_LEVEL:
            continue  # this feature fires here too: not a negative
        per_neighbour.setdefault(window.neighbour_index, []).append(
            Example(window.record.tokens[span], tuple(10.0 * max(v, 0.0) / peak for v in values[span])))
    hard = _round_robin(list(per_neighbour.values()))[:n_neighbours]
    if hard:
        examples.negatives[ClassificationSubset.NEIGHBOURS] = hard
    else:
        examples.missing[ClassificationSubset.NEIGHBOURS] = (
            "this feature fires on every stored top window of its neighbours (or they have none)")
    return examples
