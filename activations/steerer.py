"""Steer features of one subject model one after another: the neutral prompts are encoded, their unsteered
next-token distributions read and their unsteered continuations sampled once, then reused for every feature."""

from __future__ import annotations

from typing import Any

from activations.generation import STEERED_SAMPLE, generate, sample_seed
from activations.steering import SteeringConfig, SteeringVector, steered
from activations.steering_results import SteeringFailure, SteeringResult
from activations.steering_strength import StrengthSearch, encode_prompts, find_strength, next_token_logprobs


class Steerer:
    """`steer(vector)` for each feature; `forward_passes` counts the subject model's forward passes so far (a
    generated token costs one pass over the batch, the prompt's prefill another)."""

    def __init__(self, model: Any, tokenizer: Any, config: SteeringConfig) -> None:
        self.model, self.tokenizer, self.config = model, tokenizer, config
        self.batch = encode_prompts(tokenizer, config.prompts, next(model.parameters()).device)
        self.base = next_token_logprobs(model, self.batch)
        self.forward_passes = 1
        self._unsteered: tuple[tuple[str, ...], ...] | None = None

    def _generate(self, sample: int | list[int]) -> list[str]:
        """One continuation per prompt for `sample` (a list: per prompt, every sample in it)."""
        samples = sample if isinstance(sample, list) else [sample]
        prompts = [p for p in self.config.prompts for _ in samples]
        seeds = [sample_seed(self.config.seed, i, s) for i in range(len(self.config.prompts)) for s in samples]
        self.forward_passes += self.config.tokens
        return generate(self.model, self.tokenizer, prompts, seeds, tokens=self.config.tokens,
                        temperature=self.config.temperature)

    def unsteered(self) -> tuple[tuple[str, ...], ...]:
        """Per prompt, its `n_unsteered` unsteered continuations (samples 1..n): made once, shared by every
        feature of the model."""
        if self._unsteered is None:
            n = self.config.n_unsteered
            texts = self._generate(list(range(STEERED_SAMPLE + 1, STEERED_SAMPLE + 1 + n)))
            self._unsteered = tuple(tuple(texts[i * n:(i + 1) * n]) for i in range(len(self.config.prompts)))
        return self._unsteered

    def steer(self, vector: SteeringVector) -> tuple[SteeringResult | SteeringFailure, StrengthSearch]:
        """The feature steered to the target KL with its continuations, or why it could not be; and the search."""
        trace = StrengthSearch()
        found = find_strength(self.model, self.batch, self.base, vector, self.config, trace)
        self.forward_passes += trace.forward_passes + (0 if vector.norm == 0 else 1)  # + the stream's norm
        if isinstance(found, SteeringFailure):
            return found, trace
        strength, kl = found
        unsteered = self.unsteered()
        with steered(self.model, vector, strength):
            texts = self._generate(STEERED_SAMPLE)
        return SteeringResult(strength=strength, kl=kl, target_kl=self.config.target_kl,
                              prompts=tuple(self.config.prompts), steered=tuple(texts), unsteered=unsteered), trace
