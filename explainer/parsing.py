"""Turn a model's raw answer into explanation text, or say why it is not one."""

from __future__ import annotations

import re
from dataclasses import dataclass

from explainer.prompts import EXPLANATION_PREFIX, HIGHLIGHT_MARKER

_PREFIX = re.compile(
    rf"^\s*(?:explanation of neuron \d+ behavior:|{re.escape(HIGHLIGHT_MARKER)}|explanation:)?\s*"
    rf"(?:{re.escape(EXPLANATION_PREFIX)})?\s*",
    re.IGNORECASE,
)
# Traces of the prompt itself: an answer that carries these echoed the prompt instead of explaining it.
_ECHO = re.compile(r"<start>|<end>|<<|>>|\t\d|^activations:|^neuron \d+|^example \d+:|same activations, but",
                   re.IGNORECASE | re.MULTILINE)
MAX_CHARS = 500


@dataclass(frozen=True)
class Parsed:
    text: str | None
    failure_reason: str | None


def parse_explanation(raw: str, fmt: str) -> Parsed:
    answer = raw.strip()
    if fmt == "highlight" and HIGHLIGHT_MARKER.lower() in answer.lower():
        answer = answer[answer.lower().rindex(HIGHLIGHT_MARKER.lower()) + len(HIGHLIGHT_MARKER):]
    elif fmt == "highlight":
        # No marker: the answer's last line is its conclusion (reasoning comes first).
        lines = [line for line in answer.splitlines() if line.strip()]
        answer = lines[-1] if lines else ""
    else:
        answer = answer.split("\n", 1)[0]  # one sentence; what follows is the model running on
    text = _PREFIX.sub("", answer, count=1).strip().rstrip(".").strip().strip('"').strip().rstrip(".").rstrip()
    if not text:
        return Parsed(None, "empty explanation")
    if _ECHO.search(text):
        return Parsed(None, "the answer echoes the prompt instead of explaining it")
    if len(text) > MAX_CHARS:
        return Parsed(None, f"explanation longer than {MAX_CHARS} characters (the model rambled)")
    return Parsed(text, None)
