"""The intervention scorer, an output-side test of an explanation (the output-centric evaluation of Gur-Arieh et
al., 2025): the feature was steered while the subject model continued neutral prompts, and per prompt a judge reads
the explanation and that prompt's continuations, the steered one placed among unsteered ones, and names the one the
feature changed. An explanation that says what the feature does to the model's output lets the judge find it; one
that does not leaves the judge at chance. The steered continuation's position is drawn from the seed (and never
from the explanation), so a rerun, and the shuffled-explanation baseline, see the very same prompts.

Methods, on the one subset `neutral` (the neutral prompts):
- `intervention_accuracy`: the fraction of answered prompts in which the judge named the steered continuation
  (chance is 1 over the continuations per prompt), with a bootstrap interval over prompts.
- `intervention_auroc`: every continuation scored by the judge's probability of its number, read from the top
  logprobs of the answer's number token and normalised over the options (a local judge is teacher-forced to a
  number, `ChoiceSlotsClient.choice_slots`), steered ones against unsteered ones, pooled over prompts, with a
  bootstrap interval that resamples prompts. Undefined, with the reason, where the judge gives no logprobs.
An answer with no readable continuation number, or a failed request, is a failure kept in the details, never
counted as a wrong pick."""

from __future__ import annotations

import asyncio
import math
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass

from activations.steering_results import SteeringResult
from activations.vocab import InterventionSubset, ScoreMethod, ScoreRole
from llm_client import ChoiceSlotsClient, Completion, LLMClient, LLMError
from scorer.binary_metrics import accuracy, grouped_auroc
from scorer.intruder import parse_pick
from scorer.judge import JudgeUsage
from scorer.metrics import ScoreValue

# In the stored configuration: a changed prompt or reading is a new configuration, never resumed as this one.
INTERVENTION_PROMPT_VERSION = "intervention-v1"
MAX_OPTIONS = 9  # single-digit option numbers: one token in every tokenizer, so P(number) is one logprob row
TOP_LOGPROBS = 10  # at least MAX_OPTIONS, so every option's number can be among the alternatives
MAX_FAILURES_KEPT = 5
SUBSET = InterventionSubset.NEUTRAL
NO_LOGPROBS = "the judge gave no probabilities for its answers (no top logprobs from this endpoint)"
_DIGIT = re.compile(r"\d")


def check_steering(data: SteeringResult) -> None:
    """What the judge needs of a steering result: one steered and 1 to MAX_OPTIONS - 1 unsteered continuations per
    prompt (single-digit option numbers, one token in every tokenizer)."""
    if not len(data.prompts) == len(data.steered) == len(data.unsteered):
        raise ValueError(f"steering result: {len(data.prompts)} prompts, {len(data.steered)} steered and "
                         f"{len(data.unsteered)} unsteered continuation lists; give one of each per prompt")
    for i, others in enumerate(data.unsteered):
        if not 1 <= len(others) < MAX_OPTIONS:
            raise ValueError(f"steering result: prompt {i} has {len(others)} unsteered continuations; the judge "
                             f"needs 1 to {MAX_OPTIONS - 1} (single-digit option numbers)")


@dataclass(frozen=True)
class InterventionPrompt:
    """One neutral prompt as the judge sees it: its opening, the continuations in order, where the steered one is."""

    opening: str
    continuations: tuple[str, ...]
    steered: int  # 0-based


@dataclass(frozen=True)
class Pick:
    prompt: InterventionPrompt
    answer: int | None  # 0-based position named; None: failed (see failure)
    probabilities: tuple[float, ...] | None = None  # the judge's P(each option), where it gave logprobs
    failure: str | None = None


def intervention_prompts(data: SteeringResult, *, seed: int) -> list[InterventionPrompt]:
    """Per neutral prompt, its unsteered continuations with the steered one inserted at a seeded position."""
    rng = random.Random(f"{seed}:intervention")  # a string seed: the same draws in every process
    out = []
    for opening, steered, unsteered in zip(data.prompts, data.steered, data.unsteered):
        position = rng.randrange(len(unsteered) + 1)
        texts = list(unsteered)
        texts.insert(position, steered)
        out.append(InterventionPrompt(opening, tuple(texts), position))
    return out


def _one_line(text: str) -> str:
    return " ".join(text.split())


def prompt_messages(explanation: str, p: InterventionPrompt) -> list[dict]:
    """The user message: the explanation, the opening, `Continuation 1: ...` lines, and the number to answer."""
    lines = "\n".join(f"Continuation {i}: {_one_line(t)}" for i, t in enumerate(p.continuations, 1))
    n = len(p.continuations)
    return [{"role": "user", "content": (
        f"A neuron's explanation: {_one_line(explanation)}\n"
        f"A language model continued the same opening {n} times. In one continuation the neuron was turned up; "
        "the others are the model's ordinary continuations.\n\n"
        f"Opening: {_one_line(p.opening)}\n{lines}\n\n"
        "Which continuation had the neuron turned up, so that it shows what the explanation describes? "
        "Answer with its number only.\nAnswer:")}]


def option_probabilities(completion: Completion, n: int) -> tuple[float, ...] | None:
    """P(1..n) from the top logprobs of the generated token holding the answer's first digit, normalised over the
    options (an option missing from the alternatives counts as 0); None where the logprobs do not cover it."""
    rows = completion.generated_logprobs or []
    digit = _DIGIT.search("".join(r.token for r in rows))
    if digit is None:
        return None
    end = 0
    for row in rows:
        end += len(row.token)
        if end > digit.start():
            break
    options = [str(k) for k in range(1, n + 1)]
    mass = [sum(math.exp(v) for t, v in row.top.items() if t.strip() == o) for o in options]
    total = sum(mass)
    return tuple(m / total for m in mass) if total > 0 else None


async def _ask(client: LLMClient, explanation: str, p: InterventionPrompt, usage: JudgeUsage) -> Pick:
    messages = prompt_messages(explanation, p)
    n = len(p.continuations)
    try:
        if isinstance(client, ChoiceSlotsClient):
            completion = await client.choice_slots(messages, choices=[str(k) for k in range(1, n + 1)], n_slots=1,
                                                   opener=" ", separator="", closer="")
        else:
            k = TOP_LOGPROBS if client.capabilities.top_logprobs else None
            completion = await client.chat(messages, max_tokens=8, top_logprobs=k)
    except LLMError as exc:
        usage.failed_requests += 1
        return Pick(p, None, failure=f"LLM call failed: {exc.reason}")
    usage.add(completion)
    answer = parse_pick(completion.text, n, "continuation")
    if isinstance(answer, str):
        return Pick(p, None, failure=answer)
    return Pick(p, answer, option_probabilities(completion, n))


def _details(data: SteeringResult, picks: Sequence[Pick], usage: JudgeUsage) -> dict:
    reasons = list(dict.fromkeys(p.failure for p in picks if p.failure))
    answered = sum(p.answer is not None for p in picks)
    return {"n_prompts": len(picks), "n_answered": answered, "n_failed": len(picks) - answered,
            "failures": reasons[:MAX_FAILURES_KEPT], "strength": data.strength, "kl": data.kl,
            "target_kl": data.target_kl, "cost": usage.as_dict()}


def _auroc(answered: Sequence[Pick], details: dict, role: ScoreRole, seed: int) -> ScoreValue:
    groups = []
    for p in answered:
        if p.probabilities is None:
            return ScoreValue(ScoreMethod.INTERVENTION_AUROC, None, NO_LOGPROBS, subset=SUBSET, role=role,
                              n_records=details["n_prompts"], details=details)
        steered = p.prompt.steered
        groups.append(([p.probabilities[steered]], [q for i, q in enumerate(p.probabilities) if i != steered]))
    value, low, high = grouped_auroc(groups, seed=seed)
    return ScoreValue(ScoreMethod.INTERVENTION_AUROC, value, subset=SUBSET, role=role, n_records=details["n_prompts"],
                      ci_low=low, ci_high=high, details=details)


def summarize(data: SteeringResult, picks: Sequence[Pick], usage: JudgeUsage, *, role: ScoreRole = ScoreRole.OWN,
              seed: int = 0) -> list[ScoreValue]:
    """Both methods from the judge's picks; undefined with the reason where nothing was judged or all failed."""
    details = _details(data, picks, usage)
    answered = [p for p in picks if p.answer is not None]
    reason = None
    if not picks:
        reason = "no neutral prompts with continuations to judge"
    elif not answered:
        reason = (f"failed: no readable answer ({len(picks)} of {len(picks)} prompts failed; "
                  f"first: {details['failures'][0]})")
    if reason is not None:
        return [ScoreValue(m, None, reason, subset=SUBSET, role=role, n_records=len(picks), details=details)
                for m in (ScoreMethod.INTERVENTION_ACCURACY, ScoreMethod.INTERVENTION_AUROC)]
    value, low, high = accuracy([p.answer == p.prompt.steered for p in answered], seed=seed)
    chance = sum(1 / len(p.prompt.continuations) for p in answered) / len(answered)
    return [ScoreValue(ScoreMethod.INTERVENTION_ACCURACY, value, subset=SUBSET, role=role, n_records=len(picks),
                       ci_low=low, ci_high=high, details={**details, "chance": chance}),
            _auroc(answered, details, role, seed)]


async def intervention_scores(client: LLMClient, explanation: str, data: SteeringResult, *,
                              role: ScoreRole = ScoreRole.OWN, seed: int = 0) -> list[ScoreValue]:
    """Judge every neutral prompt's continuations against `explanation` (concurrently) and score both methods."""
    check_steering(data)
    usage = JudgeUsage()
    prompts = intervention_prompts(data, seed=seed)
    picks = await asyncio.gather(*(_ask(client, explanation, p, usage) for p in prompts))
    return summarize(data, picks, usage, role=role, seed=seed)
