"""Output-side evidence for explanation prompts: a feature's stored logit lens as one line of prompt text, and its
stored steering (steered beside unsteered continuations) as a few lines."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from activations.errors import UserError
from activations.steering_results import SteeringFailure, SteeringResult
from activations.vocab import Polarity
from explainer.prompts import LOGITS_NOTE, STEERING_HEADER, STEERING_LINE

N_SHOWN = 10  # tokens per side
# Steering shown: the first prompts' steered and first unsteered continuations, each cut to a character budget
# (about 40 tokens), so the note stays a small, fixed part of the prompt. Changing these bumps STEERING_VERSION.
STEERING_PROMPTS = 4
STEERING_CHARS = 160


class EvidenceError(UserError):
    """The evidence a prompt asked for is missing or malformed; the message says what to do."""


@dataclass(frozen=True)
class StoredSteering:
    """Steering asked for as evidence: the feature's stored result under the run's steering configuration (None:
    never steered under it)."""

    result: SteeringResult | SteeringFailure | None


def _tokens(entries: Any, side: str) -> list[str]:
    if not isinstance(entries, list) or not all(isinstance(e, (list, tuple)) and e and isinstance(e[0], str)
                                                for e in entries):
        raise EvidenceError(f"stored logit lens has no usable {side!r} list of [token, value] pairs")
    return [e[0] for e in entries[:N_SHOWN]]


def _quoted(tokens: list[str]) -> str:
    # Quoted and escaped: a token's leading space, or a newline token, must stay visible.
    return ", ".join(repr(t) for t in tokens)


def logits_note(logits: Mapping[str, Any] | None, *, negative: bool = False) -> str:
    """The prompt line naming the tokens the feature promotes and suppresses. Explaining the negative side
    (the feature pushed below zero) swaps them: a negative activation lowers what a positive one raises."""
    if not logits:
        raise EvidenceError("no logit lens stored for this feature")
    promoted, suppressed = _tokens(logits.get("promoted"), "promoted"), _tokens(logits.get("suppressed"), "suppressed")
    raised, lowered = (suppressed, promoted) if negative else (promoted, suppressed)
    return LOGITS_NOTE.format(raised=_quoted(raised), lowered=_quoted(lowered))


def _trimmed(text: str) -> str:
    text = " ".join(text.split())  # newlines and runs of spaces would break the prompt's layout
    return text if len(text) <= STEERING_CHARS else text[:STEERING_CHARS].rstrip() + "..."


def steering_note(steering: SteeringResult | SteeringFailure | None, *, negative: bool = False) -> str:
    """The prompt lines saying what the model writes when the feature is turned up, against what it normally writes
    after the same neutral prompts (steering only ever turns the feature up, so the negative side says so)."""
    if steering is None:
        raise EvidenceError("no steering stored for this feature")
    if isinstance(steering, SteeringFailure):
        raise EvidenceError(f"the feature's stored steering failed ({steering.reason})")
    shown = [(p, s, u[0]) for p, s, u in zip(steering.prompts, steering.steered, steering.unsteered) if u]
    if not shown:
        raise EvidenceError("the feature's stored steering holds no continuations")
    lines = [STEERING_LINE.format(prompt=p, steered=_trimmed(s), unsteered=_trimmed(u))
             for p, s, u in shown[:STEERING_PROMPTS]]
    return "\n".join([STEERING_HEADER[Polarity.NEGATIVE if negative else Polarity.POSITIVE], *lines])
