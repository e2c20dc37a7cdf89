"""The intruder scorer, after delphi's: each prompt shows several activating spans of a feature and one span that
is not (the intruder), and the judge names the intruder. It needs no explanation: it asks whether the feature is
interpretable at all, whatever anyone wrote about it.

Per subset the intruders are that subset's non-activating spans: `random` (quiet spans of the feature's random
records) or `neighbours` (its neighbours' top spans where it does not fire, the hard case). One prompt per intruder;
which activating spans join it and where the intruder sits are drawn from the seed, so a rerun sends the very same
prompts. Nothing is highlighted: a quiet span would have nothing marked and give itself away.

`intruder_accuracy` is the fraction of answered prompts in which the judge named the intruder (chance is 1 over
the examples per prompt), with a bootstrap interval over prompts. An answer with no readable example number is a
failure, kept in the details and never counted as a wrong pick."""

from __future__ import annotations

import asyncio
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass

from activations.vocab import ClassificationSubset, ScoreMethod, ScoreRole
from llm_client import LLMClient, LLMError
from scorer.binary_metrics import accuracy
from scorer.examples import ExampleSet
from scorer.judge import JudgeUsage
from scorer.metrics import ScoreValue

# In the stored configuration: a changed prompt or reading is a new configuration, never resumed as this one.
INTRUDER_PROMPT_VERSION = "intruder-v1"
MIN_ACTIVATING = 2  # an odd one out needs at least two examples that share something
MAX_FAILURES_KEPT = 5
_NUMBER = re.compile(r"\d+")


@dataclass(frozen=True)
class IntruderPrompt:
    """The spans one prompt shows, in order, and where the intruder is among them (0-based)."""

    texts: tuple[str, ...]
    intruder: int
    subset: ClassificationSubset


@dataclass(frozen=True)
class Pick:
    prompt: IntruderPrompt
    answer: int | None  # 0-based position named; None: failed (see failure)
    failure: str | None = None


def intruder_prompts(examples: ExampleSet, subset: ClassificationSubset, *, per_prompt: int,
                     seed: int) -> list[IntruderPrompt]:
    """One prompt per non-activating span of `subset`: up to `per_prompt - 1` activating spans drawn with the seed,
    and the intruder at a seeded position. Empty when there are too few activating spans or no intruders."""
    n_activating = min(per_prompt - 1, len(examples.activating))
    intruders = examples.negatives.get(subset, [])
    if n_activating < MIN_ACTIVATING:
        return []
    rng = random.Random(f"{seed}:{subset}")  # a string seed: the same draws in every process
    out = []
    for intruder in intruders:
        texts = [e.text for e in rng.sample(examples.activating, n_activating)]
        position = rng.randrange(n_activating + 1)
        texts.insert(position, intruder.text)
        out.append(IntruderPrompt(tuple(texts), position, subset))
    return out


def prompt_messages(texts: Sequence[str]) -> list[dict]:
    examples = "\n".join(f"Example {i}: {' '.join(t.split())}" for i, t in enumerate(texts, 1))
    return [{"role": "user", "content": (
        f"All but one of these {len(texts)} text excerpts were chosen because one neuron fires strongly on them, "
        "for a reason they share. One excerpt is an intruder the neuron does not fire on.\n\n"
        f"{examples}\n\nWhich example is the intruder? Answer with its number only.\nAnswer:")}]


def parse_pick(text: str, n: int, what: str = "example") -> int | str:
    """The 0-based position named by the first number in the answer ("Example 3", "3", "[3]"), or why it cannot
    be read (`what` the numbered things are called)."""
    match = _NUMBER.search(text)
    if match is None:
        return f"answer {text.strip()[:60]!r} names no {what} number"
    number = int(match.group(0))
    if not 1 <= number <= n:
        return f"answer {text.strip()[:60]!r} names {what} {number}, not one of 1..{n}"
    return number - 1


async def _ask(client: LLMClient, p: IntruderPrompt, usage: JudgeUsage) -> Pick:
    try:
        completion = await client.chat(prompt_messages(p.texts), max_tokens=8)
    except LLMError as exc:
        usage.failed_requests += 1
        return Pick(p, None, f"LLM call failed: {exc.reason}")
    usage.add(completion)
    answer = parse_pick(completion.text, len(p.texts))
    return Pick(p, None, answer) if isinstance(answer, str) else Pick(p, answer)


def _subset_score(subset: ClassificationSubset, picks: Sequence[Pick], usage: JudgeUsage, *, n_activating: int,
                  role: ScoreRole, seed: int) -> ScoreValue:
    answered = [p for p in picks if p.answer is not None]
    reasons = list(dict.fromkeys(p.failure for p in picks if p.failure))
    details: dict = {"explanation_independent": True, "n_prompts": len(picks), "n_answered": len(answered),
                     "n_failed": len(picks) - len(answered), "failures": reasons[:MAX_FAILURES_KEPT],
                     "cost": usage.as_dict()}

    def undefined(reason: str) -> ScoreValue:
        return ScoreValue(ScoreMethod.INTRUDER_ACCURACY, None, reason, subset=subset, role=role,
                          n_records=len(picks), details=details)

    if not picks:
        return undefined(f"fewer than {MIN_ACTIVATING} activating spans to set an intruder among ({n_activating})")
    if not answered:
        return undefined(f"failed: no readable answer ({len(picks)} of {len(picks)} prompts failed; "
                         f"first: {reasons[0]})")
    value, low, high = accuracy([p.answer == p.prompt.intruder for p in answered], seed=seed)
    chance = sum(1 / len(p.prompt.texts) for p in answered) / len(answered)
    return ScoreValue(ScoreMethod.INTRUDER_ACCURACY, value, subset=subset, role=role, n_records=len(picks),
                      ci_low=low, ci_high=high, details={**details, "chance": chance})


async def intruder_scores(client: LLMClient, examples: ExampleSet, *, per_prompt: int = 5,
                          role: ScoreRole = ScoreRole.OWN, seed: int = 0) -> list[ScoreValue]:
    """`intruder_accuracy` on every subset (undefined, with the reason, where it has no intruders)."""
    if per_prompt < MIN_ACTIVATING + 1:
        raise ValueError(f"the intruder scorer needs at least {MIN_ACTIVATING + 1} examples per prompt "
                         f"(got {per_prompt})")
    usage = JudgeUsage()
    prompts = {s: intruder_prompts(examples, s, per_prompt=per_prompt, seed=seed) for s in ClassificationSubset}
    asked = await asyncio.gather(*(_ask(client, p, usage) for s in ClassificationSubset for p in prompts[s]))
    out = []
    for subset in ClassificationSubset:
        if subset in examples.missing:
            out.append(ScoreValue(ScoreMethod.INTRUDER_ACCURACY, None, examples.missing[subset], subset=subset,
                                  role=role, details={"explanation_independent": True, "cost": usage.as_dict()}))
            continue
        picks = [a for a in asked if a.prompt.subset == subset]
        out.append(_subset_score(subset, picks, usage, n_activating=len(examples.activating), role=role, seed=seed))
    return out
