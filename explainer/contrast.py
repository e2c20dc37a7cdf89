"""The contrastive mode's counterexamples (`--explainer-mode contrastive`, after delphi's contrastive explainer):
spans where the feature stays quiet, shown to the explainer beside the activating records.

Hard negatives first: top windows of the feature's nearest neighbours (the caller reads them, train split only),
cut around the neighbour's peak, nearest neighbour first. Where those run short (no neighbours stored, or the
feature fires on all of them), the feature's own random train windows fill in, those that come closest to firing
first. A span is quiet when every token is 0 on the prompt's 0..10 scale (below a tenth of the top shown record's
peak): the prompt shows it as "not activating", so it must read as zeros there. A neighbour window on which the
feature has no record of its own is taken as quiet (its activations there are not known), as the `neighbours`
subset of the example scorers takes it; the explanation's parameters count those.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from activations.records import ActivationRecord, NeighbourWindow, normalize_activations
from activations.vocab import DataSplit, SampleKind

MODES = ("plain", "contrastive")
DEFAULT_MODE = "plain"
DEFAULT_NEGATIVES = 5  # delphi's contrastive explainer shows at most 5 non-activating examples
NEGATIVES_RULE = "neighbours+random/v1"  # where they come from, as above: stored in the explain configuration
SPAN_TOKENS = 24  # tokens per counterexample, as the example scorers' spans
LEAD_TOKENS = 16  # of which at most this many come before the anchor (the neighbour's peak)


@dataclass(frozen=True)
class Negative:
    """One counterexample: a span of text, and the token it is centred on (snippets cut around it)."""

    tokens: tuple[str, ...]
    anchor: int  # index into tokens
    source: str  # "neighbour" | "random"
    label: str  # names it in the explanation's parameters
    quiet_known: bool  # False: a neighbour window where the feature's activations are not stored


@dataclass(frozen=True)
class Contrast:
    """What the contrastive explainer is given besides the feature's train records."""

    n_negatives: int
    neighbour_windows: Sequence[NeighbourWindow] | None  # train-split windows; None: no neighbours stored


def check_mode(mode: str, n_negatives: int) -> None:
    if mode not in MODES:
        raise ValueError(f"explainer mode {mode!r} is not one of {', '.join(MODES)}")
    if n_negatives < 1:
        raise ValueError(f"the contrastive explainer needs at least 1 counterexample, got {n_negatives}")


def _span(tokens: Sequence[str], anchor: int) -> tuple[int, int]:
    start = max(0, min(anchor - LEAD_TOKENS, len(tokens) - SPAN_TOKENS))
    return start, min(len(tokens), start + SPAN_TOKENS)


def _quiet(own: Sequence[float], sign: float, max_activation: float) -> bool:
    return not any(normalize_activations([sign * a for a in own], max_activation))


def _from_neighbours(windows: Sequence[NeighbourWindow], sign: float, max_activation: float) -> list[Negative]:
    """Quiet spans of the neighbours' train windows, round robin over the neighbours, nearest first."""
    per_neighbour: dict[int, list[Negative]] = {}
    for window in windows:
        record = window.record
        if record.data_split != DataSplit.TRAIN or max(record.activations) <= 0:
            continue  # only what the explainer may see, and only where the neighbour fires
        peak = max(range(len(record.activations)), key=lambda i: record.activations[i])
        start, end = _span(record.tokens, peak)
        own = window.own_activations
        if own is not None and not _quiet(own[start:end], sign, max_activation):
            continue  # the feature fires here too: not a counterexample
        per_neighbour.setdefault(window.neighbour_index, []).append(Negative(
            record.tokens[start:end], peak - start, "neighbour",
            f"neighbour {window.neighbour_index} {record.label or record.record_id}", own is not None))
    groups = list(per_neighbour.values())
    return [g[i] for i in range(max(map(len, groups), default=0)) for g in groups if i < len(g)]


def _from_randoms(records: Sequence[ActivationRecord], sign: float, max_activation: float) -> list[Negative]:
    """The feature's own quiet random train windows, those closest to firing first, cut around their peak."""
    quiet = []
    for i, record in enumerate(records):
        if record.sample != SampleKind.RANDOM or record.data_split != DataSplit.TRAIN:
            continue
        signed = [sign * a for a in record.activations]
        if _quiet(signed, 1.0, max_activation):
            quiet.append((-max(signed), i, record))
    out = []
    for _, i, record in sorted(quiet, key=lambda q: q[:2]):
        peak = max(range(len(record.activations)), key=lambda j: sign * record.activations[j])
        start, end = _span(record.tokens, peak)
        out.append(Negative(record.tokens[start:end], peak - start, "random", record.label or f"random#{i}", True))
    return out


def choose_negatives(contrast: Contrast, train: Sequence[ActivationRecord], *, negative: bool,
                     max_activation: float) -> list[Negative]:
    """Up to `contrast.n_negatives` counterexamples, hard negatives first, no span shown twice."""
    sign = -1.0 if negative else 1.0
    candidates = _from_neighbours(contrast.neighbour_windows or (), sign, max_activation)
    candidates += _from_randoms(train, sign, max_activation)
    seen: set[tuple[str, ...]] = set()
    out: list[Negative] = []
    for candidate in candidates:
        if candidate.tokens not in seen and len(out) < contrast.n_negatives:
            seen.add(candidate.tokens)
            out.append(candidate)
    return out


def no_negatives_reason(contrast: Contrast) -> str:
    """Why a feature has no counterexample, and what to do."""
    neighbours = ("it has no nearest neighbours stored (collect stores them; imported features lack them)"
                  if contrast.neighbour_windows is None else
                  "it fires on every train-split top window of its neighbours that the explainer may see")
    return (f"contrastive explainer: no quiet window to show as a counterexample: {neighbours}, and none of its "
            "random train windows stays quiet; explain it with --explainer-mode plain")


def params_of(contrast: Contrast, negatives: Sequence[Negative]) -> dict:
    """What an explanation stores about its counterexamples."""
    return {"explainer_mode": "contrastive", "n_negatives": contrast.n_negatives,
            "negatives_shown": [n.label for n in negatives],
            "negatives_by_source": {source: sum(n.source == source for n in negatives)
                                    for source in ("neighbour", "random")},
            "negatives_quiet_assumed": sum(not n.quiet_known for n in negatives)}


def negative_text(tokens: Sequence[str]) -> str:
    """A counterexample as one line of text."""
    return " ".join("".join(tokens).split())
