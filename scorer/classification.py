"""Classification scorers in the style of delphi (EleutherAI): an LLM judges, from the explanation alone,
  - detection: does this text contain what the explanation describes? (activating vs non-activating records)
  - fuzzing: are the <<highlighted>> tokens the ones it describes? (true highlights vs random ones)
Reported as balanced accuracy, and AUROC when the endpoint returns top logprobs for the answer. An answer
that cannot be read is counted as a failure in the details, never as a wrong or right answer."""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

from scipy import stats

from llm_client import LLMClient, LLMError
from scorer.metrics import ScoreValue

_QUESTION = {
    "detection": "Does this text contain what the explanation describes, anywhere in it?",
    "fuzzing": "Are the tokens marked <<like this>> exactly the kind of tokens the explanation describes?",
}


@dataclass(frozen=True)
class Judgement:
    label: bool  # the right answer
    answer: bool | None  # the LLM's answer; None when it could not be read
    probability: float | None = None  # P(yes) from top logprobs, when the endpoint gives them
    failure: str | None = None


def _prompt(kind: str, explanation: str, text: str) -> list[dict]:
    return [{"role": "user", "content": (
        "We're studying neurons in a neural network. Each neuron looks for some particular thing in a short document.\n"
        f"Explanation of the neuron: {' '.join(explanation.split())}\n\nText:\n{text}\n\n"
        f"{_QUESTION[kind]} Answer with a single digit: 1 for yes, 0 for no.")}]


async def _judge(client: LLMClient, kind: str, explanation: str, text: str, label: bool) -> Judgement:
    k = 10 if client.capabilities.top_logprobs else None
    try:
        completion = await client.chat(_prompt(kind, explanation, text), max_tokens=2, top_logprobs=k)
    except LLMError as exc:
        return Judgement(label, None, failure=f"LLM call failed: {exc.reason}")
    first = completion.text.strip()[:1]
    if first not in ("0", "1"):
        return Judgement(label, None, failure=f"answer {completion.text[:40]!r} is not 0 or 1")
    probability = None
    if completion.generated_logprobs:
        top = completion.generated_logprobs[0].top
        p = {d: sum(math.exp(v) for t, v in top.items() if t.strip() == d) for d in ("0", "1")}
        if p["0"] + p["1"] > 0:
            probability = p["1"] / (p["0"] + p["1"])
    return Judgement(label, first == "1", probability)


def summarize(kind: str, judgements: Sequence[Judgement]) -> list[ScoreValue]:
    """Balanced accuracy and AUROC over the readable answers; undefined with a reason where they cannot be."""
    read = [j for j in judgements if j.answer is not None]
    failures = [j.failure for j in judgements if j.failure]
    details = {"n_items": len(judgements), "n_failed": len(failures), "failures": failures[:5]}
    pos, neg = [j for j in read if j.label], [j for j in read if not j.label]
    n = len(judgements)
    if not pos or not neg:
        reason = f"no readable answers on {'positive' if not pos else 'negative'} items"
        if failures:
            reason += f" ({len(failures)} of {n} answers could not be read)"
        return [ScoreValue(f"{kind}_balanced_accuracy", None, reason, n_records=n, details=details),
                ScoreValue(f"{kind}_auroc", None, reason, n_records=n, details=details)]
    tpr = sum(1 for j in pos if j.answer) / len(pos)
    tnr = sum(not j.answer for j in neg) / len(neg)
    out = [ScoreValue(f"{kind}_balanced_accuracy", (tpr + tnr) / 2, n_records=n,
                      details={**details, "true_positive_rate": tpr, "true_negative_rate": tnr})]
    if all(j.probability is not None for j in read):
        # AUROC = P(score of a positive > score of a negative), ties counting half: the Mann-Whitney U statistic.
        u = stats.mannwhitneyu([j.probability for j in pos], [j.probability for j in neg]).statistic
        out.append(ScoreValue(f"{kind}_auroc", float(u) / (len(pos) * len(neg)), n_records=n, details=details))
    else:
        out.append(ScoreValue(f"{kind}_auroc", None, "the endpoint gave no top logprobs for the answers", n_records=n,
                              details=details))
    return out


async def detection_scores(client: LLMClient, explanation: str, activating: Sequence[Sequence[str]],
                           non_activating: Sequence[Sequence[str]]) -> list[ScoreValue]:
    """Detection: each record's plain text; the right answer is yes for activating records."""
    items = [("".join(t), True) for t in activating] + [("".join(t), False) for t in non_activating]
    judgements = await asyncio.gather(*(_judge(client, "detection", explanation, text, label) for text, label in items))
    return summarize("detection", judgements)


def highlight(tokens: Sequence[str], marked: set[int]) -> str:
    return "".join(f"<<{t}>>" if i in marked else t for i, t in enumerate(tokens))


async def fuzzing_scores(client: LLMClient, explanation: str,
                         activating: Sequence[tuple[Sequence[str], Sequence[float]]], *,
                         seed: int = 0) -> list[ScoreValue]:
    """Fuzzing: each activating record twice, once with its firing tokens (activation > 0) highlighted (right
    answer yes) and once with as many random non-firing tokens highlighted instead (right answer no)."""
    rng = random.Random(seed)
    items: list[tuple[str, bool]] = []
    for n, (tokens, acts) in enumerate(activating):
        if len(tokens) != len(acts):
            raise ValueError(f"activating record {n}: {len(tokens)} tokens but {len(acts)} activations")
        firing = {i for i, a in enumerate(acts) if a > 0}
        quiet = [i for i in range(len(tokens)) if i not in firing]
        if not firing or len(quiet) < len(firing):
            continue  # nothing to highlight, or no way to highlight as many wrong tokens
        items.append((highlight(tokens, firing), True))
        items.append((highlight(tokens, set(rng.sample(quiet, len(firing)))), False))
    if not items:
        return summarize("fuzzing", [])
    judgements = await asyncio.gather(*(_judge(client, "fuzzing", explanation, text, label) for text, label in items))
    return summarize("fuzzing", judgements)
