"""The `snippets` format for base models: each record cut to a short snippet around its peak token, marked
<<like this>>, in a document that few-shot neurons have set up to end in "Summary: Neuron C fires on".

Weak models read a few words around one mark far better than 64 token/value lines, and the document's
pattern makes a one-line summary the likely continuation.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from activations.vocab import Polarity
from explainer.formatting import Scaled
from explainer.prompts import (
    SNIPPET_SHOTS,
    SNIPPETS_CONTRAST_HEADER,
    SNIPPETS_HEADER,
    SNIPPETS_QUIET_VERB,
    SNIPPETS_VERB,
)

LEFT, RIGHT = 8, 3  # context tokens shown before and after the peak
EXTRA_MARKS = 2  # more marked tokens per snippet, for records that fire on several tokens
STRONG = 5  # on the 0..10 scale: at least half the feature's max
STOP = ["\n"]  # the summary is one line; what follows would be the model writing the next neuron
MAX_TOKENS = 32
MAX_RECORDS = 10  # a small model follows a few strong snippets better than twenty
_MARK = re.compile(r"<<(.*?)>>")


def _marked(token: str) -> str:
    # Whitespace stays outside the marks ("paid <<15>>"), as in the few-shot lines.
    core = token.strip()
    if not core:
        return f"<<{token}>>"
    lead = token[: len(token) - len(token.lstrip())]
    trail = token[len(token.rstrip()):]
    return f"{lead}<<{core}>>{trail}"


def snippet_line(tokens: Sequence[str], values: Sequence[int]) -> str:
    """The record's peak token with LEFT/RIGHT tokens of context; up to EXTRA_MARKS more strong tokens in
    that window are marked too. Adjacent marked tokens form one span."""
    peak = max(range(len(values)), key=lambda i: values[i])
    lo, hi = max(0, peak - LEFT), min(len(tokens), peak + RIGHT + 1)
    strong = sorted((i for i in range(lo, hi) if i != peak and values[i] >= STRONG), key=lambda i: -values[i])
    marks = {peak, *strong[:EXTRA_MARKS]}
    shown = [tokens[i].replace("\n", " ").replace("\r", " ") for i in range(lo, hi)]
    parts, i = [], 0
    while i < len(shown):
        if lo + i not in marks:
            parts.append(shown[i])
            i += 1
            continue
        j = i
        while j + 1 < len(shown) and lo + j + 1 in marks:
            j += 1
        parts.append(_marked("".join(shown[i:j + 1])))
        i = j + 1
    return " ".join("".join(parts).split())


def quiet_line(tokens: Sequence[str], anchor: int) -> str:
    """A counterexample cut as a snippet is (LEFT/RIGHT tokens around its anchor), unmarked."""
    shown = tokens[max(0, anchor - LEFT):anchor + RIGHT + 1]
    return " ".join("".join(t.replace("\n", " ").replace("\r", " ") for t in shown).split())


def snippet_lines(records: Sequence[Scaled]) -> list[str]:
    """One line per record, best first; a line already shown is not repeated."""
    return list(dict.fromkeys(snippet_line(tokens, values) for tokens, values in records))


def _block(letter: str, lines: Sequence[str], side: Polarity, explanation: str | None, evidence: str | None = None,
           quiet: Sequence[str] | None = None) -> str:
    verb = SNIPPETS_VERB[side]
    body = "".join(f"- {line}\n" for line in lines)
    # The marked words again on one line: a small model names a repeated word far more often when it sees
    # the words side by side than when they are spread across the snippets.
    marked = ", ".join(span.strip() for line in lines for span in _MARK.findall(line))
    counter = (f"Neuron {letter} {SNIPPETS_QUIET_VERB[side]}:\n" + "".join(f"- {q}\n" for q in quiet)) if quiet else ""
    summary = f"Summary: Neuron {letter} {verb}" + (f" {explanation}." if explanation is not None else "")
    note = f"{evidence}\n" if evidence else ""
    return f"Neuron {letter} {verb}:\n{body}Marked: {marked}\n{counter}{note}{summary}"


def snippets(records: Sequence[Scaled], *, n_few_shot: int, negative: bool, evidence: str | None = None,
             quiet: Sequence[str] | None = None) -> list[dict]:
    """The document as blocks (header, few-shot neurons, the feature); messages_to_prompt joins them with
    blank lines into the completion prompt. With `quiet` (the contrastive mode's counterexamples, cut by
    quiet_line), every neuron's block lists where it does not fire, the few-shot neurons' too."""
    side = Polarity.NEGATIVE if negative else Polarity.POSITIVE
    blocks = [(SNIPPETS_CONTRAST_HEADER if quiet else SNIPPETS_HEADER)[side]]
    blocks += [_block(chr(ord("A") + i), shot.lines, side, shot.explanation, quiet=shot.quiet if quiet else None)
               for i, shot in enumerate(SNIPPET_SHOTS[:n_few_shot])]
    blocks.append(_block(chr(ord("A") + n_few_shot), snippet_lines(records), side, None, evidence, quiet))
    return [{"role": "user", "content": b} for b in blocks]
