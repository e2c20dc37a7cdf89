"""Detection and fuzzing, as delphi (EleutherAI) defines them, on an ExampleSet:
  - detection: does this example contain what the explanation describes? Activating examples (right answer
    yes) against each subset's non-activating examples (no).
  - fuzzing: are the tokens marked <<like this>> the ones it describes? Activating examples with their firing
    tokens marked (yes) against, for subset `random`, the same examples with as many other tokens marked (no),
    and for subset `neighbours`, the neighbours' top spans with the neighbour's firing tokens marked (no).
Each subset reports balanced accuracy and AUROC (from P(1) where the judge gives it), with bootstrap intervals
over examples. A failed judgement is counted as a failure in the details, never as a "no"."""

from __future__ import annotations

import random
from collections.abc import Sequence

from activations.vocab import ClassificationSubset, ScoreMethod, ScoreRole
from llm_client import LLMClient
from scorer.binary_metrics import auroc, balanced_accuracy
from scorer.examples import ExampleSet
from scorer.judge import Item, Judgement, JudgeUsage, judge
from scorer.metrics import ScoreValue

ACTIVATING = "activating"
METHODS: dict[str, tuple[ScoreMethod, ScoreMethod]] = {
    "detection": (ScoreMethod.DETECTION_BALANCED_ACCURACY, ScoreMethod.DETECTION_AUROC),
    "fuzzing": (ScoreMethod.FUZZING_BALANCED_ACCURACY, ScoreMethod.FUZZING_AUROC),
}
MAX_FAILURES_KEPT = 5  # distinct failure reasons kept in a score's details


def highlight(tokens: Sequence[str], marked: set[int]) -> str:
    return "".join(f"<<{t}>>" if i in marked else t for i, t in enumerate(tokens))


def detection_items(examples: ExampleSet) -> list[Item]:
    items = [Item(e.text, True, ACTIVATING) for e in examples.activating]
    for subset, negatives in examples.negatives.items():
        items += [Item(e.text, False, subset) for e in negatives]
    return items


def fuzzing_items(examples: ExampleSet, *, seed: int = 0) -> list[Item]:
    rng = random.Random(seed)
    items: list[Item] = []
    for e in examples.activating:
        firing = e.firing
        quiet = [i for i in range(len(e.tokens)) if i not in firing]
        if not firing or len(quiet) < len(firing):
            continue  # nothing to mark, or no way to mark as many wrong tokens
        items.append(Item(highlight(e.tokens, firing), True, ACTIVATING))
        items.append(Item(highlight(e.tokens, set(rng.sample(quiet, len(firing)))), False,
                          ClassificationSubset.RANDOM))
    for e in examples.negatives.get(ClassificationSubset.NEIGHBOURS, []):
        if e.firing:
            items.append(Item(highlight(e.tokens, e.firing), False, ClassificationSubset.NEIGHBOURS))
    return items


def _subset_scores(kind: str, subset: ClassificationSubset, judgements: Sequence[Judgement], *, role: ScoreRole,
                   usage: JudgeUsage, seed: int) -> list[ScoreValue]:
    ba_method, auroc_method = METHODS[kind]
    involved = [j for j in judgements if j.item.group in (ACTIVATING, subset)]
    pos = [j for j in involved if j.item.group == ACTIVATING and j.answer is not None]
    neg = [j for j in involved if j.item.group == subset and j.answer is not None]
    failed = [j for j in involved if j.answer is None]
    reasons = list(dict.fromkeys(j.failure for j in failed if j.failure))
    details: dict = {"n_items": len(involved), "n_positive": len(pos), "n_negative": len(neg),
                     "n_failed": len(failed), "failures": reasons[:MAX_FAILURES_KEPT], "cost": usage.as_dict()}

    def undefined(reason: str) -> list[ScoreValue]:
        return [ScoreValue(m, None, reason, subset=subset, role=role, n_records=len(involved), details=details)
                for m in (ba_method, auroc_method)]

    if not pos or not neg:
        which = "activating" if not pos else f"{subset} non-activating"
        if failed:
            return undefined(f"failed: no readable answer on the {which} examples ({len(failed)} of "
                             f"{len(involved)} judgements failed; first: {reasons[0]})")
        if kind == "fuzzing" and not pos:
            return undefined("no activating span has firing tokens to mark and as many other tokens to mark wrongly")
        return undefined(f"no {which} examples to judge")
    value, low, high = balanced_accuracy([bool(j.answer) for j in pos], [bool(j.answer) for j in neg], seed=seed)
    tpr = sum(bool(j.answer) for j in pos) / len(pos)
    tnr = sum(not j.answer for j in neg) / len(neg)
    out = [ScoreValue(ba_method, value, subset=subset, role=role, n_records=len(involved), ci_low=low, ci_high=high,
                      details={**details, "true_positive_rate": tpr, "true_negative_rate": tnr})]
    p_pos, p_neg = [j.probability for j in pos], [j.probability for j in neg]
    if any(p is None for p in p_pos + p_neg):
        out.append(ScoreValue(auroc_method, None, "the judge gave no probabilities for its answers (no top "
                              "logprobs from this endpoint)", subset=subset, role=role, n_records=len(involved),
                              details=details))
    else:
        value, low, high = auroc([p for p in p_pos if p is not None], [p for p in p_neg if p is not None], seed=seed)
        out.append(ScoreValue(auroc_method, value, subset=subset, role=role, n_records=len(involved), ci_low=low,
                              ci_high=high, details=details))
    return out


def summarize(kind: str, judgements: Sequence[Judgement], examples: ExampleSet, usage: JudgeUsage, *,
              role: ScoreRole = ScoreRole.OWN, seed: int = 0) -> list[ScoreValue]:
    """Both methods of `kind` on every subset; a subset without negatives is undefined with the reason."""
    out: list[ScoreValue] = []
    # Fuzzing's `random` negatives are wrong marks on the activating examples: quiet random spans play no part.
    missing = {k: v for k, v in examples.missing.items() if kind == "detection" or k != ClassificationSubset.RANDOM}
    for subset in ClassificationSubset:
        if subset in missing:
            ba_method, auroc_method = METHODS[kind]
            out += [ScoreValue(m, None, missing[subset], subset=subset, role=role,
                               details={"cost": usage.as_dict()}) for m in (ba_method, auroc_method)]
            continue
        out += _subset_scores(kind, subset, judgements, role=role, usage=usage, seed=seed)
    return out


async def classification_scores(kind: str, client: LLMClient, explanation: str, examples: ExampleSet, *,
                                 per_prompt: int = 5, role: ScoreRole = ScoreRole.OWN,
                                 seed: int = 0) -> list[ScoreValue]:
    """`kind` = detection | fuzzing: judge the examples and score every subset."""
    if kind not in METHODS:
        raise ValueError(f"unknown classification scorer {kind!r}; use one of {sorted(METHODS)}")
    items = detection_items(examples) if kind == "detection" else fuzzing_items(examples, seed=seed)
    judgements, usage = await judge(client, kind, explanation, items, per_prompt=per_prompt, seed=seed)
    return summarize(kind, judgements, examples, usage, role=role, seed=seed)


async def detection_scores(client: LLMClient, explanation: str, examples: ExampleSet, *, per_prompt: int = 5,
                           role: ScoreRole = ScoreRole.OWN, seed: int = 0) -> list[ScoreValue]:
    return await classification_scores("detection", client, explanation, examples, per_prompt=per_prompt, role=role,
                                       seed=seed)


async def fuzzing_scores(client: LLMClient, explanation: str, examples: ExampleSet, *, per_prompt: int = 5,
                         role: ScoreRole = ScoreRole.OWN, seed: int = 0) -> list[ScoreValue]:
    return await classification_scores("fuzzing", client, explanation, examples, per_prompt=per_prompt, role=role,
                                       seed=seed)
