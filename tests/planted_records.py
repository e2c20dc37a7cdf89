"""Planted features as OpenAI NeuronRecord JSON: windows of the embedded Wikipedia sample, tokenised into words
and punctuation, with activations computed by a known rule (tests.planted_rules), ready for `autointerp import`.

Two shapes of activation:
- `sparse`: 0 off the concept, 4 + (token length mod 3) on it (an SAE latent or a ReLU neuron);
- `gelu`: GELU of a pre-activation, as a dense MLP neuron: off the concept the pre-activation lies between -3
  and -0.5 (a value fixed by the token), so the neuron sits slightly below zero (-0.004 .. -0.17) everywhere;
  on it the pre-activation is 2 + (token length mod 3), a large positive value. Scoring must keep the small
  negatives (OpenAI scores the activations as recorded); clipping them at zero changes the correlation.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import random
from dataclasses import dataclass
from pathlib import Path

from activations.corpus import open_corpus
from tests.planted_rules import RULE, Rule, tokens_of

WINDOW = 64  # tokens per record, as collect's default --ctx-len
N_DOCUMENTS = 30  # of the Wikipedia sample: enough windows for every rule, read in about a second


def gelu(x: float) -> float:
    return x * 0.5 * (1 + math.erf(x / math.sqrt(2)))


def _quiet_pre(token: str) -> float:
    """A pre-activation in [-3, -0.5] fixed by the token: the dense neuron's varied dip below zero."""
    return -3.0 + 2.5 * (int(hashlib.md5(token.encode()).hexdigest(), 16) % 1000) / 999


def sparse_activation(rule: Rule, token: str) -> float:
    return 4.0 + len(token.strip()) % 3 if rule(token) else 0.0


def gelu_activation(rule: Rule, token: str) -> float:
    return gelu(2.0 + len(token.strip()) % 3 if rule(token) else _quiet_pre(token))


@dataclass(frozen=True)
class PlantedFeature:
    index: int
    rule: Rule
    signed: bool  # GELU-like (slightly negative off the concept) rather than sparse
    explanation: str  # the true one
    near_miss: str  # a neighbouring rule's explanation

    def activation(self, token: str) -> float:
        return (gelu_activation if self.signed else sparse_activation)(self.rule, token)


def windows(n_documents: int = N_DOCUMENTS) -> list[list[str]]:
    """Consecutive WINDOW-token windows of the first documents, whitespace collapsed (deterministic)."""
    out = []
    for document in itertools.islice(open_corpus().documents(), n_documents):
        tokens = tokens_of(" ".join(document.text.split()))
        out += [tokens[i:i + WINDOW] for i in range(0, len(tokens) - WINDOW + 1, WINDOW)]
    return out


def _record(tokens: list[str], feature: PlantedFeature) -> dict:
    return {"tokens": tokens, "activations": [feature.activation(t) for t in tokens]}


def neuron_record(feature: PlantedFeature, all_windows: list[list[str]], *, layer: int, n_top: int = 40,
                  n_random: int = 40, seed: int = 0) -> dict:
    """The feature's NeuronRecord: its top windows (by peak, ties by position) and a seeded random sample
    of the windows, as OpenAI's collection stored them."""
    scored = [_record(w, feature) for w in all_windows]
    by_peak = sorted(range(len(scored)), key=lambda i: (-max(scored[i]["activations"]), i))
    picked = random.Random(seed).sample(range(len(scored)), n_random)
    values = [a for r in scored for a in r["activations"]]
    mean = sum(values) / len(values)
    return {"dataclass_name": "NeuronRecord", "neuron_id": {"layer_index": layer, "neuron_index": feature.index},
            "most_positive_activation_records": [scored[i] for i in by_peak[:n_top]],
            "random_sample": [scored[i] for i in picked],
            "mean": mean, "variance": sum((v - mean) ** 2 for v in values) / len(values)}


def explanations_file(feature: PlantedFeature, *, layer: int) -> dict:
    """OpenAI explanation JSON with the near miss first and the true explanation last: both are imported
    as current explanations, and the last (the true one) is what another feature's shuffled baseline borrows."""
    return {"neuron_id": {"layer_index": layer, "neuron_index": feature.index},
            "scored_explanations": [{"explanation": feature.near_miss}, {"explanation": feature.explanation}]}


PLANTED = (
    PlantedFeature(0, RULE["digits"], False, "digits and numbers such as years",
                   "punctuation marks such as commas and periods"),
    PlantedFeature(1, RULE["capitalised"], False, "capitalised words such as names of people and places",
                   "lowercase words"),
    PlantedFeature(2, RULE["months"], True, "months of the year such as March and October",
                   "seasons of the year such as summer and winter"),
)


def write_planted(folder: Path, *, layer: int) -> None:
    """One NeuronRecord file and one explanations file per planted feature, into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    all_windows = windows()
    for feature in PLANTED:
        (folder / f"neuron_{feature.index}.json").write_text(json.dumps(neuron_record(feature, all_windows,
                                                                                      layer=layer)))
        (folder / f"explanations_{feature.index}.json").write_text(json.dumps(explanations_file(feature,
                                                                                                layer=layer)))
