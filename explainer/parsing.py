"""Turn a model's raw answer into explanation text, or say why it is not one."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from explainer.prompts import EXPLANATION_PREFIX, HIGHLIGHT_MARKER

_PREFIX = re.compile(
    rf"^\s*(?:explanation of neuron \d+ behavior:|{re.escape(HIGHLIGHT_MARKER)}|explanation:)?\s*"
    rf"(?:{re.escape(EXPLANATION_PREFIX)})?\s*",
    re.IGNORECASE,
)
# Traces of the prompt itself: an answer that carries these echoed the prompt instead of explaining it.
_ECHO = re.compile(r"<start>|<end>|<<|>>|\t\d|^activations:|^neuron \d+|^example \d+:|same activations, but"
                   r"|^summary:|^marked:|^neuron [a-z] (?:fires|is most negative|does not fire|is not pushed below"
                   r" zero) on|^(?:non-)?activating examples:|^texts where neuron|^- ", re.IGNORECASE | re.MULTILINE)
_MARKS = re.compile(r"<<|>>")
MIN_ECHO_WORDS = 4  # a shorter overlap with a snippet ("anarchism") may well be the explanation itself
MAX_CHARS = 500


@dataclass(frozen=True)
class Parsed:
    text: str | None
    failure_reason: str | None


def _words(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", _MARKS.sub("", text).lower()).split())


def _unquote(text: str) -> str:
    # '"plural nouns"' -> 'plural nouns', but 'the word "of"' keeps its quotes.
    if len(text) >= 2 and text[0] == text[-1] == '"' and '"' not in text[1:-1]:
        return text[1:-1].strip()
    return text


def _copied_few_shot(text: str, few_shots: Sequence[str]) -> str | None:
    answer = _words(text)
    for shot in few_shots:
        words = _words(shot)
        if answer == words or answer.startswith(words + " "):
            return shot
    return None


def _echoes_snippet(text: str, snippets: Sequence[str]) -> bool:
    answer = f" {_words(text)} "
    for line in snippets:
        snippet = f" {_words(line)} "
        if answer == snippet:
            return True
        shorter, longer = sorted((answer, snippet), key=len)
        if len(shorter.split()) >= MIN_ECHO_WORDS and shorter in longer:
            return True
    return False


def parse_explanation(raw: str, fmt: str, *, few_shots: Sequence[str] = (), snippets: Sequence[str] = ()) -> Parsed:
    """`few_shots`: the explanations of the prompt's few-shot examples (an answer equal to or starting with
    one is a copy, for every format); `snippets`: the text snippets the prompt showed."""
    answer = raw.strip()
    if fmt == "highlight" and HIGHLIGHT_MARKER.lower() in answer.lower():
        answer = answer[answer.lower().rindex(HIGHLIGHT_MARKER.lower()) + len(HIGHLIGHT_MARKER):]
    elif fmt == "highlight":
        # No marker: the answer's last line is its conclusion (reasoning comes first).
        lines = [line for line in answer.splitlines() if line.strip()]
        answer = lines[-1] if lines else ""
    else:
        answer = answer.split("\n", 1)[0]  # one sentence; what follows is the model running on
    text = _unquote(_PREFIX.sub("", answer, count=1).strip().rstrip(".").strip()).rstrip(".").rstrip()
    if not text:
        return Parsed(None, "empty explanation")
    if _ECHO.search(text):
        return Parsed(None, "the answer echoes the prompt instead of explaining it")
    copied = _copied_few_shot(text, few_shots)
    if copied is not None:
        return Parsed(None, f"the answer copies the prompt's few-shot explanation {copied!r} instead of explaining "
                            "this feature")
    if _echoes_snippet(text, snippets):
        return Parsed(None, "the answer echoes a snippet shown in the prompt instead of explaining it")
    if len(text) > MAX_CHARS:
        return Parsed(None, f"explanation longer than {MAX_CHARS} characters (the model rambled)")
    return Parsed(text, None)
