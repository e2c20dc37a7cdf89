"""A planted signed layer: features whose positive side follows one rule and whose negative side follows another
(tests.planted_rules), collected as `collect --signed` collects a layer (the streaming sampler over windows of the
embedded Wikipedia sample, then the product's assembly and splits) and stored as a collection stores it; and a
rule-following explainer for the fake OpenAI server, which names the rule its prompt's strongest tokens follow.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch

from activations.assemble import WindowRecords, features_of
from activations.collect_config import CollectConfig
from activations.records import FeatureId
from activations.sampling import SamplerConfig, StreamingSampler
from activations.windows import Window
from storage.core.db import Database
from storage.records.collection_store import save_layer
from storage.results.runs import start_run
from tests.planted_records import windows
from tests.planted_rules import RULE, RULES, Rule, rule_following_answer

MODEL, LAYER = "planted-signed", 0
# The true explanation of each rule (each names its rule's keyword only: tests.planted_rules.rule_named_in).
EXPLANATION = {"digits": "digits and numbers such as years", "months": "months of the year such as March",
               "capitalised": "capitalised words such as names of people and places"}


@dataclass(frozen=True)
class SignedFeature:
    index: int
    positive: Rule | None  # the tokens that push it up (None: never above zero)
    negative: Rule | None  # the tokens that push it down (None: never below zero)
    up: float  # its value on a positive-side token (plus the token's length mod 3)
    down: float  # its value on a negative-side token (minus the token's length mod 3)

    def activation(self, token: str) -> float:
        extra = len(token.strip()) % 3
        if self.negative is not None and self.negative(token):
            return self.down - extra
        if self.positive is not None and self.positive(token):
            return self.up + extra
        return 0.0


SIGNED = (
    # the demo neuron's shape: a small positive side, a larger negative one
    SignedFeature(0, RULE["digits"], RULE["months"], up=2.0, down=-5.0),
    SignedFeature(1, RULE["capitalised"], RULE["digits"], up=4.0, down=-2.0),
    SignedFeature(2, RULE["months"], None, up=3.0, down=0.0),  # never below zero: no bottom records
)


class WordTokenizer:
    """The planted records' words as token ids: what WindowRecords decodes."""

    def __init__(self) -> None:
        self.words: list[str] = []
        self.ids: dict[str, int] = {}

    def encode(self, tokens: list[str]) -> tuple[int, ...]:
        for token in tokens:
            if token not in self.ids:
                self.ids[token] = len(self.words)
                self.words.append(token)
        return tuple(self.ids[t] for t in tokens)

    def decode(self, ids: list[int]) -> str:
        return "".join(self.words[i] for i in ids)


def collect_signed(sampler: SamplerConfig = SamplerConfig(bottom_k=20)):
    """The planted features' records as a signed collection of the windows makes them (FeatureRecords per
    feature), through the product's sampler, splits and assembly."""
    tokenizer, texts = WordTokenizer(), windows()
    batch = [Window(i, str(i), 0, tokenizer.encode(tokens)) for i, tokens in enumerate(texts)]
    acts = torch.tensor([[[f.activation(t) for f in SIGNED] for t in tokens] for tokens in texts])
    state = StreamingSampler(len(SIGNED), acts.shape[1], sampler)
    state.update(acts, torch.ones(acts.shape[:2], dtype=torch.bool), torch.arange(len(texts)))
    config = CollectConfig(ctx_len=acts.shape[1], sampler=sampler)
    builder = WindowRecords({w.id: w for w in batch}, tokenizer, "planted", config)
    return features_of(state.result(), builder, FeatureId(MODEL, LAYER, "mlp_neuron", 0))


def store_signed(db: Database, sampler: SamplerConfig = SamplerConfig(bottom_k=20)) -> None:
    """The planted layer stored as `collect` stores one (one transaction, marked complete)."""
    features = collect_signed(sampler)
    with db.session() as session, session.begin():
        save_layer(session, start_run(session, "collect", {"planted": True}), MODEL, features, n_layers=1)


_BLOCK = re.compile(r"Activations:\n(.*?)(?:Same activations|\nExplanation of neuron)", re.DOTALL)


def explainer_answer(content: str) -> str:
    """The explanation of the rule that covers most of the prompt's strongest tokens (value 5 or more) and, among
    those, fewest of its other tokens (months are capitalised words too: the narrower rule is the answer)."""
    pairs = [line.rsplit("\t", 1) for line in _BLOCK.findall(content)[-1].splitlines() if "\t" in line]
    strong = [t for t, v in pairs if int(v) >= 5]
    weak = [t for t, v in pairs if int(v) < 5]
    best = max((r for r in RULES if r.name in EXPLANATION),
               key=lambda r: (sum(map(r, strong)), -sum(map(r, weak))))
    return f" {EXPLANATION[best.name]}."


def signed_answer(endpoint: str, body: dict) -> str:
    """FakeOpenAI's `answer` hook: the explainer's answer to an explanation prompt, else the rule-following
    simulation or judge (tests.planted_rules)."""
    content = body["messages"][-1]["content"]
    if "Activations:\n" in content and "Explanation of neuron" in content:
        return explainer_answer(content)
    return rule_following_answer(endpoint, body)
