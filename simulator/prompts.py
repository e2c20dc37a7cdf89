"""OpenAI's all-at-once simulation prompt: instructions, few-shot neurons with their activations, then the
explanation under test and each token followed by an "unknown" slot where the activation digit would go.

As in OpenAI's few-shot examples (`first_revealed_activation_indices`), each few-shot record shows "unknown" on
its first lines and the values from its first revealed index on: the model sees "unknown" lines followed by
values, so at every slot of the record under test the value tokens stay likely rather than the model copying
"unknown" down the record (docs/simulator-values.md has the measurement).

Layout (the record part is built line by line by the simulators so they know where each slot is):
    ...few-shot...\n\nNeuron 4\nExplanation of neuron 4 behavior: the main thing this neuron does is find X
    Activations: \n<start>\n
    token<TAB>unknown\n          <- one line per subject token; the slot is right after the TAB
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from itertools import accumulate

SLOT = "unknown"
INSTRUCTIONS = (
    "We're studying neurons in a neural network. Each neuron looks for some particular thing in a short document. "
    "Look at an explanation of what the neuron does, and try to predict its activations on each token.\n\n"
    "The activation format is token<tab>activation, activations go from 0 to 10, \"unknown\" indicates an unknown "
    "activation. Most activations will be 0.\n"
)
_ESCAPES = {"\t": "\\t", "\n": "\\n", "\r": "\\r", "\\": "\\\\"}
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def escape_token(token: str) -> str:
    """Make a subject token safe for a `token<TAB>value` line: tabs, newlines and other control characters
    become visible escapes (so they cannot break the line format), and an empty token shows as <empty>."""
    if token == "":
        return "<empty>"
    if token.isprintable() and "\\" not in token:  # nearly every token: nothing to escape
        return token
    out = "".join(_ESCAPES.get(c, c) for c in token)
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", out)


def explanation_header(number: int, explanation: str) -> str:
    one_line = " ".join(explanation.split())
    return (f"\n\nNeuron {number}\nExplanation of neuron {number} behavior: the main thing this neuron does is find "
            f"{one_line}\nActivations: \n")


# The all-at-once prompt's version, stored in every logprob simulation's configuration (simulator.prompt_version)
# so that simulations and scores made with another prompt are never taken for these. 1: every few-shot value
# shown; 2: each few-shot record's first lines "unknown", its values from its first revealed index on.
PROMPT_VERSION = 2


@dataclass(frozen=True)
class FewShotExample:
    explanation: str
    records: tuple[tuple[tuple[str, int], ...], ...]  # records of (token, activation 0..10)
    # per record, the index of its first line that shows its value (the lines before show "unknown"); () shows all
    first_revealed: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if not self.first_revealed:
            return
        if len(self.first_revealed) != len(self.records):
            raise ValueError(f"few-shot example {self.explanation!r}: {len(self.first_revealed)} first revealed "
                             f"indices for {len(self.records)} records; give one per record")
        for n, (index, record) in enumerate(zip(self.first_revealed, self.records)):
            if not 0 <= index < len(record):
                raise ValueError(f"few-shot example {self.explanation!r}, record {n}: first revealed index {index} is "
                                 f"outside 0..{len(record) - 1}; a record must show at least its last value")

    def shown(self, record: int) -> list[tuple[str, str]]:
        """The record's lines as (token, value text): "unknown" before its first revealed index."""
        first = self.first_revealed[record] if self.first_revealed else 0
        return [(t, SLOT if i < first else str(a)) for i, (t, a) in enumerate(self.records[record])]


def _tokens(sentence: str) -> list[str]:
    # Word-level tokens with their leading space, as subject tokenizers decode them.
    return re.findall(r" ?\w+| ?[^\w\s]", sentence)


def _example(explanation: str, sentences: list[str], rule: Callable[[list[str], int], int],
             first_revealed: tuple[int, ...]) -> FewShotExample:
    records = []
    for sentence in sentences:
        toks = _tokens(sentence)
        records.append(tuple((t, rule(toks, i)) for i, t in enumerate(toks)))
    return FewShotExample(explanation, tuple(records), first_revealed)


_WATER = {"river", "rivers", "sea", "ocean", "water", "waves", "lake", "harbour", "tide", "flood", "rain", "stream",
          "coast"}

FEW_SHOT = (
    _example(
        "numbers, especially years",
        ["The bridge was finished in 1932 after 6 years of work, and it carried 40 thousand cars a day by 1950.",
         "She moved to Lyon in March, where the rent was 300 francs and the flat had 2 rooms "
         "overlooking the old square."],
        lambda toks, i: (10 if len(toks[i].strip()) == 4 else 6) if toks[i].strip().isdigit() else 0,
        (3, 8),  # " 1932" (10) stays shown: the remote simulator reads from it how the endpoint writes 10
    ),
    _example(
        "words related to water, rivers and the sea",
        ["The fishermen waited in the harbour until the tide turned and the waves calmed along the rocky coast.",
         "After three days of heavy rain the river burst its banks, and the flood reached the market by noon."],
        lambda toks, i: (10 if toks[i].strip().lower() in {"sea", "river", "waves", "tide"} else 7)
        if toks[i].strip().lower() in _WATER else 0,
        (6, 2),  # " harbour" (7) hidden: an "unknown" line may hide an activation
    ),
    _example(
        "the word right after \"of\", strongest when it names a place",
        ["The history of Rome is told in many of the books kept at the University of Padua.",
         "Most of the guests left early, but the mayor of Bristol stayed for a cup of tea and a piece of cake."],
        lambda toks, i: (10 if toks[i].strip()[:1].isupper() else 5) if i > 0 and toks[i - 1].strip() == "of" else 0,
        (4, 10),
    ),
)


def prefix_text(explanation: str, examples: tuple[FewShotExample, ...] = FEW_SHOT) -> str:
    """Everything before the first record line: shared by every record simulated under one explanation."""
    parts = [INSTRUCTIONS]
    for n, example in enumerate(examples, start=1):
        parts.append(explanation_header(n, example.explanation))
        for r in range(len(example.records)):
            lines = "\n".join(f"{escape_token(t)}\t{a}" for t, a in example.shown(r))
            parts.append(f"<start>\n{lines}\n<end>\n")
    parts.append(explanation_header(len(examples) + 1, explanation))
    parts.append("<start>\n")
    return "".join(parts)


def slot_line_head(token: str) -> str:
    """The part of a record line before its slot: the escaped token and the TAB."""
    return f"{escape_token(token)}\t"


def slot_line_tail() -> str:
    return f"{SLOT}\n"


def record_text(tokens: list[str] | tuple[str, ...]) -> tuple[str, list[int]]:
    """The record's lines as text, and the char offset of each slot (right after each TAB)."""
    heads = [slot_line_head(token) for token in tokens]
    tail = slot_line_tail()
    # a slot sits after its own head and every line before it
    ends = accumulate(len(head) + len(tail) for head in heads)
    offsets = [end - len(tail) for end in ends]
    return tail.join(heads) + tail if heads else "", offsets
