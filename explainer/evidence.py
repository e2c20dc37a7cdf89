"""Output-side evidence for explanation prompts: a feature's stored logit lens as one line of prompt text."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from activations.errors import UserError
from explainer.prompts import LOGITS_NOTE

N_SHOWN = 10  # tokens per side


class EvidenceError(UserError):
    """The evidence a prompt asked for is missing or malformed; the message says what to do."""


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
