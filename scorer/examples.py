"""The examples the example scorers (detection, fuzzing, embedding) judge: short spans of windows with their
activations on the 0..10 prompt scale, activating ones and each kind of non-activating ones.

A token *fires* when it reaches 1 on that scale (at least a tenth of the feature's maximum), which is what the
explainer was shown as active: below it the prompt showed 0. For sparse SAE latents this is "above zero";
dense MLP neurons are slightly positive on most tokens, and "above zero" would leave no window quiet.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from activations.vocab import ClassificationSubset

FIRING_LEVEL = 1.0  # on the 0..10 scale
EXAMPLE_TOKENS = 24  # tokens per example span: enough context to judge, and the bulk of a judge prompt's cost
LEAD_TOKENS = 16  # of which, at most this many come before an activating span's peak token


@dataclass(frozen=True)
class Example:
    """A span the judge reads. `values` are the activations (0..10) of the feature the span was chosen for: the
    scored feature for activating and random spans, the neighbour for neighbour spans (fuzzing highlights them)."""

    tokens: tuple[str, ...]
    values: tuple[float, ...]

    @property
    def text(self) -> str:
        return "".join(self.tokens)

    @property
    def firing(self) -> set[int]:
        return {i for i, v in enumerate(self.values) if v >= FIRING_LEVEL}


@dataclass
class ExampleSet:
    """Activating examples, the non-activating examples of each subset, and why a subset has none."""

    activating: list[Example]
    negatives: dict[ClassificationSubset, list[Example]] = field(default_factory=dict)
    missing: dict[ClassificationSubset, str] = field(default_factory=dict)


def peak_span(tokens: Sequence[str], values: Sequence[float], *, length: int = EXAMPLE_TOKENS,
              lead: int = LEAD_TOKENS) -> Example:
    """The span of `length` tokens holding the peak token, with up to `lead` tokens of context before it (the
    subject model reads left to right: what comes before explains the firing)."""
    start = peak_start(values, length=length, lead=lead)
    return Example(tuple(tokens[start:start + length]), tuple(values[start:start + length]))


def peak_start(values: Sequence[float], *, length: int = EXAMPLE_TOKENS, lead: int = LEAD_TOKENS) -> int:
    """Where `peak_span` starts."""
    peak = max(range(len(values)), key=lambda i: values[i])
    return max(0, min(peak - lead, len(values) - length))


def quiet_spans(tokens: Sequence[str], values: Sequence[float], *, length: int = EXAMPLE_TOKENS) -> list[Example]:
    """Non-overlapping spans of `length` tokens in which no token fires."""
    out = []
    for start in range(0, max(1, len(tokens) - length + 1), length):
        span = values[start:start + length]
        if span and max(span) < FIRING_LEVEL:
            out.append(Example(tuple(tokens[start:start + length]), tuple(span)))
    return out
