"""Render records as explanation prompts: OpenAI's token/activation pairs, or delphi-style highlights.

Both take records already scaled to 0..10 (`Scaled`) and return chat messages; `render_plain` joins them
into one completion prompt for models without a chat template. Given `quiet` texts (the contrastive mode's
counterexamples, explainer.contrast), the feature and every few-shot example show theirs after the records.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache

from activations.records import normalize_activations
from activations.vocab import Polarity
from explainer.prompts import (
    CONTRAST_NOTE,
    EXPLANATION_PREFIX,
    FEW_SHOTS,
    HIGHLIGHT_ACTIVE_HEADER,
    HIGHLIGHT_MARKER,
    HIGHLIGHT_QUIET_HEADER,
    HIGHLIGHT_SYSTEM,
    NEGATIVE_NOTE,
    TAP_QUIET_HEADER,
    TAP_SYSTEM,
)

Scaled = tuple[Sequence[str], Sequence[int]]  # tokens, activations on the prompt's 0..10 scale
SPARSE_FRACTION = 0.2  # OpenAI repeats the non-zero tokens when fewer than this share are non-zero


def _show(token: str) -> str:
    # A raw newline or tab inside a token would break the one-token-per-line format.
    return token.replace("\n", "\\n").replace("\t", "\\t")


def _tap_block(records: Sequence[Scaled], *, omit_zeros: bool) -> str:
    blocks = []
    for tokens, values in records:
        lines = [f"{_show(t)}\t{v}" for t, v in zip(tokens, values) if not (omit_zeros and v == 0)]
        blocks.append("<start>\n" + "".join(line + "\n" for line in lines) + "<end>\n")
    return "".join(blocks)


def _tap_user(records: Sequence[Scaled], number: int, evidence: str | None = None,
              quiet: Sequence[str] | None = None, side: Polarity = Polarity.POSITIVE) -> str:
    text = f"\n\nNeuron {number}\nActivations:\n{_tap_block(records, omit_zeros=False)}"
    values = [v for _, vs in records for v in vs]
    if values and sum(1 for v in values if v > 0) / len(values) < SPARSE_FRACTION:
        text += f"Same activations, but with all zeros filtered out:\n{_tap_block(records, omit_zeros=True)}"
    if quiet:
        text += TAP_QUIET_HEADER[side].format(number=number) + "\n" + "".join(f"- {q}\n" for q in quiet)
    if evidence:
        text += f"{evidence}\n"
    return text + f"\nExplanation of neuron {number} behavior: {EXPLANATION_PREFIX}"


@cache
def _few_shot_turns(fmt: str, n: int, with_values: bool, quiet_side: Polarity | None = None) -> tuple[dict, ...]:
    """The first n few-shot examples as user/assistant turns, with their counterexamples when `quiet_side` is
    given (the contrastive mode, on that side); constant, so built once per process."""
    turns: list[dict] = []
    for i, shot in enumerate(FEW_SHOTS[:n]):
        scaled = [(shot.tokens, normalize_activations(shot.activations, max(shot.activations)))]
        quiet = shot.quiet if quiet_side is not None else None
        if fmt == "token_activation_pairs":
            user = _tap_user(scaled, i + 1, None, quiet, quiet_side or Polarity.POSITIVE)
            turns += [{"role": "user", "content": user},
                      {"role": "assistant", "content": f" {shot.explanation}."}]
        else:
            turns += [{"role": "user", "content": _highlight_user(scaled, with_values, quiet)},
                      {"role": "assistant", "content": f"{HIGHLIGHT_MARKER} {shot.explanation}"}]
    return tuple(turns)


def _system(text: str, negative: bool, quiet: Sequence[str] | None) -> dict:
    side = Polarity.NEGATIVE if negative else Polarity.POSITIVE
    return {"role": "system",
            "content": text + (NEGATIVE_NOTE if negative else "") + (CONTRAST_NOTE[side] if quiet else "")}


def token_activation_pairs(records: Sequence[Scaled], *, n_few_shot: int, negative: bool,
                           evidence: str | None = None, quiet: Sequence[str] | None = None) -> list[dict]:
    """`evidence`: a line of output-side evidence (the logit lens) placed after the feature's activations;
    `quiet`: the counterexamples, listed after the activations."""
    side = Polarity.NEGATIVE if negative else Polarity.POSITIVE
    return [_system(TAP_SYSTEM, negative, quiet),
            *_few_shot_turns("token_activation_pairs", n_few_shot, True, side if quiet else None),
            {"role": "user", "content": _tap_user(records, n_few_shot + 1, evidence, quiet, side)}]


def _highlight_example(number: int, tokens: Sequence[str], values: Sequence[int], with_values: bool) -> str:
    parts, inside = [], False
    for token, value in zip(tokens, values):
        if value > 0 and not inside:
            parts.append("<<")
        elif value == 0 and inside:
            parts.append(">>")
        inside = value > 0
        parts.append(token)
    if inside:
        parts.append(">>")
    text = f"Example {number}: {''.join(parts)}"
    if with_values:
        pairs = ", ".join(f"({_show(t)!r}, {v})" for t, v in zip(tokens, values) if v > 0)
        text += f"\nActivations: {pairs}"
    return text


def _highlight_user(records: Sequence[Scaled], with_values: bool, quiet: Sequence[str] | None = None) -> str:
    text = "\n\n".join(_highlight_example(i + 1, t, v, with_values) for i, (t, v) in enumerate(records))
    if not quiet:
        return text
    # As delphi's contrastive prompt: two headed lists, the counterexamples unmarked.
    counter = "\n".join(f"Example {i + 1}: {q}" for i, q in enumerate(quiet))
    return f"{HIGHLIGHT_ACTIVE_HEADER}\n{text}\n\n{HIGHLIGHT_QUIET_HEADER}\n{counter}"


def highlight(records: Sequence[Scaled], *, n_few_shot: int, negative: bool, with_values: bool = True,
              evidence: str | None = None, quiet: Sequence[str] | None = None) -> list[dict]:
    side = Polarity.NEGATIVE if negative else Polarity.POSITIVE
    user = _highlight_user(records, with_values, quiet) + (f"\n\n{evidence}" if evidence else "")
    return [_system(HIGHLIGHT_SYSTEM, negative, quiet),
            *_few_shot_turns("highlight", n_few_shot, with_values, side if quiet else None),
            {"role": "user", "content": user}]


def render_plain(messages: list[dict], fmt: str) -> str:
    """One completion prompt. Token/activation messages are written to be concatenated as they are (the
    answer continues "...does is find"); highlight turns get a line break and the marker to continue."""
    if fmt == "token_activation_pairs":
        return "".join(m["content"] for m in messages)
    return "\n\n".join(m["content"] for m in messages) + f"\n\n{HIGHLIGHT_MARKER}"
