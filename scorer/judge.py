"""An LLM judges several numbered examples per prompt against an explanation and answers with a list of 0/1,
one entry per example (`[1,0,0,1,0]`), as delphi's detection and fuzzing scorers do.

The answer is read as chat models write it, as delphi reads it: the first bracketed list anywhere in the text (after
a preamble such as `Answer:`, before a closing sentence, inside a code fence), entries 0/1 or true/false, spaces
and quotes allowed. It is still strict where it matters: no list, a list of the wrong length or an entry that is
not binary fails the whole prompt, and each of its examples is a failure, never a "no". P(1) per example comes
from the answer's top logprobs where the endpoint gives them; a local model is teacher-forced through the list instead
(`ChoiceSlotsClient.choice_slots`), so every slot has a probability even when the model would have rambled.
"""

from __future__ import annotations

import asyncio
import math
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass

from llm_client import ChoiceSlotsClient, Completion, LLMClient, LLMError

# In the stored configuration: v3 reads answers as chat models write them, so v2 failures are never mixed in.
PROMPT_VERSION = "judge-list-v3"
CHOICES = ("0", "1")
ANSWER_OPENER = " ["  # the prompt ends with "Answer:"; a teacher-forced answer starts here
_BRACKETED = re.compile(r"\[([^\[\]]*)\]")  # the first innermost [...] in the answer
_DIGIT = re.compile(r"[01]")
_ENTRY = {"1": True, "0": False, "true": True, "false": False}

_TASK = {
    "detection": "Does each example contain what the explanation describes, anywhere in it?",
    "fuzzing": "In each example, are the tokens marked <<like this>> exactly the kind of tokens the explanation "
               "describes?",
}


@dataclass(frozen=True)
class Item:
    """One example as the judge sees it: `text`, the right answer, and which group it counts in."""

    text: str
    label: bool
    group: str


@dataclass(frozen=True)
class Judgement:
    item: Item
    answer: bool | None  # None: failed (see failure)
    probability: float | None = None  # P(1) against P(0), where the endpoint gives logprobs
    failure: str | None = None


@dataclass
class JudgeUsage:
    """What judging one feature cost: requests, tokens, dollars (None when a price is unknown)."""

    requests: int = 0
    failed_requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float | None = 0.0

    def add(self, completion: Completion) -> None:
        self.requests += 1
        self.prompt_tokens += completion.usage.prompt_tokens
        self.completion_tokens += completion.usage.completion_tokens
        if self.cost_usd is not None:
            self.cost_usd = None if completion.usage.cost_usd is None else self.cost_usd + completion.usage.cost_usd

    def as_dict(self) -> dict:
        return {"requests": self.requests, "failed_requests": self.failed_requests,
                "prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                "cost_usd": self.cost_usd}


def prompt(kind: str, explanation: str, texts: Sequence[str]) -> list[dict]:
    """The user message: the explanation, `Example 1: ...` lines, and the list to answer with. Short on purpose:
    the examples, not the instructions, should be what a judgement costs."""
    examples = "\n".join(f"Example {i}: {' '.join(t.split())}" for i, t in enumerate(texts, 1))
    n = len(texts)
    return [{"role": "user", "content": (
        f"A neuron's explanation: {' '.join(explanation.split())}\n{_TASK[kind]}\n\n{examples}\n\n"
        f"Answer 1 (yes) or 0 (no) for each of the {n} examples, as a list like "
        f"[{','.join('1' if i % 3 == 0 else '0' for i in range(n))}]. Write only the list.\nAnswer:")}]


def parse_answer(text: str, n: int) -> list[bool] | str:
    """The 0/1 list, or why it cannot be read."""
    match = _BRACKETED.search(text)
    if match is None:
        return f"answer {text.strip()[:60]!r} is not a list of 0s and 1s"
    raw = [e.strip().strip("'\"").lower() for e in match.group(1).split(",")]
    bad = [e for e in raw if e not in _ENTRY]
    if bad:
        return f"answer {match.group(0)[:60]!r} is not a list of 0s and 1s (entry {bad[0][:20]!r})"
    if len(raw) != n:
        return f"answer has {len(raw)} entries for {n} examples"
    return [_ENTRY[e] for e in raw]


def slot_probabilities(completion: Completion, n: int) -> list[float | None]:
    """P(1) / (P(0) + P(1)) at each answer slot, from the logprobs of the generated token holding that slot's
    digit (None where the logprobs do not cover it)."""
    rows = completion.generated_logprobs or []
    text = "".join(r.token for r in rows)
    # Only the answer list's digits, not a preamble's; teacher-forced rows hold the slots alone, without brackets.
    listed = _BRACKETED.search(text)
    start, end = (listed.start(), listed.end()) if listed else (0, len(text))
    digits = [m.start() for m in _DIGIT.finditer(text, start, end)]
    if not rows or len(digits) != n:
        return [None] * n
    ends, position = [], 0
    for r in rows:
        position += len(r.token)
        ends.append(position)
    out: list[float | None] = []
    for offset in digits:
        row = rows[next(i for i, end in enumerate(ends) if end > offset)]
        p = {d: sum(math.exp(v) for t, v in row.top.items() if t.strip(" [,]") == d) for d in CHOICES}
        out.append(p["1"] / (p["0"] + p["1"]) if p["0"] + p["1"] > 0 else None)
    return out


async def _judge_prompt(client: LLMClient, kind: str, explanation: str, items: Sequence[Item],
                        usage: JudgeUsage) -> list[Judgement]:
    messages = prompt(kind, explanation, [i.text for i in items])
    n = len(items)
    try:
        if isinstance(client, ChoiceSlotsClient):
            completion = await client.choice_slots(messages, choices=CHOICES, n_slots=n, opener=ANSWER_OPENER)
        else:
            k = 5 if client.capabilities.top_logprobs else None
            completion = await client.chat(messages, max_tokens=4 * n + 8, top_logprobs=k)
    except LLMError as exc:
        usage.failed_requests += 1
        return [Judgement(i, None, failure=f"LLM call failed: {exc.reason}") for i in items]
    usage.add(completion)
    answers = parse_answer(completion.text, n)
    if isinstance(answers, str):
        return [Judgement(i, None, failure=answers) for i in items]
    return [Judgement(i, a, p) for i, a, p in zip(items, answers, slot_probabilities(completion, n))]


async def judge(client: LLMClient, kind: str, explanation: str, items: Sequence[Item], *, per_prompt: int = 5,
                seed: int = 0) -> tuple[list[Judgement], JudgeUsage]:
    """Every item judged once, `per_prompt` to a prompt, in an order shuffled with `seed` (so each prompt mixes
    right answers yes and no); the prompts run concurrently. Judgements come back in the items' order."""
    if per_prompt < 1:
        raise ValueError(f"examples per prompt must be >= 1 (got {per_prompt})")
    order = list(range(len(items)))
    random.Random(seed).shuffle(order)
    chunks = [order[i:i + per_prompt] for i in range(0, len(order), per_prompt)]
    usage = JudgeUsage()
    results = await asyncio.gather(*(_judge_prompt(client, kind, explanation, [items[i] for i in chunk], usage)
                                     for chunk in chunks))
    out: list[Judgement | None] = [None] * len(items)
    for chunk, judgements in zip(chunks, results):
        for i, j in zip(chunk, judgements):
            out[i] = j
    return [j for j in out if j is not None], usage
