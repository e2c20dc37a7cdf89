"""The embedding scorer (no LLM): how well the explanation's sentence embedding ranks activating examples above
non-activating ones, as the AUROC of cosine(explanation, example text), per subset. A near-free triage signal:
a layer's worth of features costs a few encode passes of a small model.

The sentence model is the embedding simulator's (`EmbeddingSimulator.embed`: unit vectors, cached per text,
batched), so a run that simulates with `embedding` loads it once."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import numpy as np

from activations.vocab import ClassificationSubset, ScoreMethod, ScoreRole
from scorer.binary_metrics import auroc
from scorer.examples import ExampleSet
from scorer.metrics import ScoreValue

if TYPE_CHECKING:  # the simulator module imports torch: only when an embedding scorer is built
    from simulator.embedding import EmbeddingSimulator


class EmbeddingScorer:
    def __init__(self, embedder: EmbeddingSimulator) -> None:
        self.embedder = embedder
        self.spec = embedder.spec  # embedding[:<model>]

    async def score(self, explanation: str, examples: ExampleSet, *, role: ScoreRole = ScoreRole.OWN,
                    seed: int = 0) -> list[ScoreValue]:
        texts = [explanation] + [e.text for e in examples.activating] + [
            e.text for subset in ClassificationSubset for e in examples.negatives.get(subset, [])]
        vectors = await asyncio.to_thread(self.embedder.embed, texts)  # one encode pass for every new text
        similarity = dict(zip(texts[1:], (vectors[1:] @ vectors[0]).tolist()))
        positives = [similarity[e.text] for e in examples.activating]
        out = []
        for subset in ClassificationSubset:
            negatives = [similarity[e.text] for e in examples.negatives.get(subset, [])]
            details: dict[str, float] = {"n_positive": len(positives), "n_negative": len(negatives)}
            if subset in examples.missing:
                reason: str | None = examples.missing[subset]
            elif not positives:
                reason = "no activating examples to rank"
            elif not negatives:
                reason = f"no {subset} non-activating examples to rank"
            else:
                reason = None
            if reason is not None:
                out.append(ScoreValue(ScoreMethod.EMBEDDING_AUROC, None, reason, subset=subset, role=role,
                                      details=details))
                continue
            value, low, high = auroc(positives, negatives, seed=seed)
            details |= {"mean_similarity_positive": float(np.mean(positives)),
                        "mean_similarity_negative": float(np.mean(negatives))}
            out.append(ScoreValue(ScoreMethod.EMBEDDING_AUROC, value, subset=subset, role=role,
                                  n_records=len(positives) + len(negatives), ci_low=low, ci_high=high,
                                  details=details))
        return out
