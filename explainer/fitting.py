"""Choose the records a prompt shows and make the prompt fit a token budget.

Records come from the train split only, and only those where the side being explained (negated for polarity
"negative") fires; explainer.sampling chooses among them and orders them by peak, highest first. When the
prompt is over budget, records are dropped lowest-ranked first down to one, then few-shot examples are
dropped last-first; a prompt that still does not fit is an error naming the sizes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from activations.records import ActivationRecord, FeatureRecords, normalize_activations
from activations.vocab import DataSplit, Polarity, SampleKind
from explainer import sampling
from explainer.formatting import Scaled


class PromptTooLong(ValueError):
    pass


@dataclass(frozen=True)
class Ranked:
    records: list[ActivationRecord]  # best first
    signed: list[list[float]]  # activations on the explained side (negated for "negative")
    max_activation: float  # maps to 10: the peak of the best record, the maximum of the records shown


def rank_records(feature: FeatureRecords, *, polarity: str, max_records: int,
                 sample: str = sampling.DEFAULT_SAMPLE, seed: int = 0) -> Ranked:
    sign = -1.0 if polarity == Polarity.NEGATIVE else 1.0
    train = feature.select(data_splits=[DataSplit.TRAIN])
    firing = [(r, s) for r in train if max(s := [sign * a for a in r.activations]) > 0]
    side = SampleKind.BOTTOM if polarity == Polarity.NEGATIVE else SampleKind.TOP
    order = sampling.choose([r for r, _ in firing], [max(s) for _, s in firing], sample=sample, n=max_records,
                            seed=f"{seed}:{feature.feature}", side=side)
    records = [firing[i][0] for i in order]
    signed = [firing[i][1] for i in order]
    # OpenAI's scale: 10 is the maximum of the records the prompt shows, not of the whole collection (whose top
    # window is often in another split). fit_prompt drops records lowest-ranked first and always keeps the
    # first, so the best record's peak is the maximum of whatever the fitted prompt shows.
    peak = max(signed[0]) if signed else 0.0
    return Ranked(records, signed, peak)


def scale(ranked: Ranked) -> list[Scaled]:
    return [(r.tokens, normalize_activations(s, ranked.max_activation)) for r, s in zip(ranked.records, ranked.signed)]


@dataclass(frozen=True)
class Fit:
    messages: list[dict]
    prompt: str  # the text whose tokens were counted
    n_records: int
    dropped: list[str]  # labels of the dropped records, in the order dropped
    n_few_shot: int
    prompt_tokens: int


def fit_prompt(scaled: list[Scaled], labels: list[str], *, build: Callable[[list[Scaled], int], list[dict]],
               render: Callable[[list[dict]], str], count_tokens: Callable[[str], int], budget: int,
               n_few_shot: int) -> Fit:
    n_records = len(scaled)
    while True:
        messages = build(scaled[:n_records], n_few_shot)
        prompt = render(messages)
        size = count_tokens(prompt)
        if size <= budget:
            return Fit(messages, prompt, n_records, labels[n_records:][::-1], n_few_shot, size)
        if n_records > 1:
            n_records -= 1
        elif n_few_shot > 0:
            n_few_shot -= 1
        else:
            raise PromptTooLong(
                f"even one record without few-shot examples needs {size} prompt tokens, over the budget of "
                f"{budget}; raise max_prompt_tokens or collect shorter records"
            )
