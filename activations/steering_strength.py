"""Find, per feature, the steering strength at which the next-token distribution moves by a target KL.

The distribution is the model's next-token distribution at the last position of each neutral prompt (the
token it would write next, as delphi's intervention scorer measures it); the KL is KL(steered || unsteered),
averaged over the prompts. The search is deterministic: it starts at 1/32 of the stream's own norm (the mean
norm of the hook point's values at the prompts' last positions, over the direction's norm), doubles until the
KL passes the target, then bisects until the KL is within the tolerance. A feature whose KL stays under the
target at the largest strength allowed (`max_strength_ratio` times the stream's norm) is a failure with that
reason, never a silent value.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from activations.hooks import attach
from activations.steering import SteeringConfig, SteeringVector, steered
from activations.steering_results import SteeringFailure

START_FRACTION = 1 / 32  # the first strength tried, in units of the stream's norm
MAX_BISECTIONS = 24


@dataclass
class PromptBatch:
    """The neutral prompts, left padded, on the model's device."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor

    @property
    def position_ids(self) -> torch.Tensor:
        return (self.attention_mask.cumsum(-1) - 1).clamp(min=0)


def encode_prompts(tokenizer: Any, prompts: tuple[str, ...] | list[str], device: Any) -> PromptBatch:
    """Tokenize (with the tokenizer's own BOS) and left pad: every prompt's last token is at the last column."""
    rows = [tokenizer(p).input_ids for p in prompts]
    width = max(len(r) for r in rows)
    pad = next(c for c in (tokenizer.pad_token_id, tokenizer.eos_token_id, 0) if c is not None)
    ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows], device=device)
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows], device=device)
    return PromptBatch(ids, mask)


def next_token_logprobs(model: Any, batch: PromptBatch) -> torch.Tensor:
    """[prompts, vocab] float32 log-probabilities of the token after each prompt."""
    with torch.inference_mode():
        out = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                    position_ids=batch.position_ids, use_cache=False, logits_to_keep=1)
    return torch.log_softmax(out.logits[:, -1, :].float(), dim=-1)


def mean_kl(steered_lp: torch.Tensor, base_lp: torch.Tensor) -> float:
    """Mean over prompts of KL(steered || unsteered), in nats."""
    return float((steered_lp.exp() * (steered_lp - base_lp)).sum(-1).mean())


def stream_norm(model: Any, vector: SteeringVector, batch: PromptBatch) -> float:
    """The mean norm of the hook point's values at the prompts' last positions (unsteered)."""
    seen: list[torch.Tensor] = []
    handle = attach(model, vector.hook, lambda x: seen.append(x[:, -1, :].float().norm(dim=-1)))
    try:
        next_token_logprobs(model, batch)
    finally:
        handle.remove()
    return float(seen[0].mean())


@dataclass
class StrengthSearch:
    """How the search went: every (strength, KL) tried, in order, and the forward passes it cost."""

    tries: list[tuple[float, float]] = field(default_factory=list)

    @property
    def forward_passes(self) -> int:
        return len(self.tries)


def _within(kl: float, config: SteeringConfig) -> bool:
    return abs(kl - config.target_kl) <= config.kl_tolerance * config.target_kl


def search(measure: Callable[[float], float], scale: float, config: SteeringConfig,
           trace: StrengthSearch) -> tuple[float, float] | SteeringFailure:
    """(strength, KL) within the tolerance of the target, for a KL that grows with the strength; `scale` is the
    stream's norm in units of the direction."""
    def tried(strength: float) -> float:
        kl = measure(strength)
        trace.tries.append((strength, kl))
        return kl

    top = config.max_strength_ratio * scale
    low, high, strength = 0.0, None, START_FRACTION * scale
    while high is None:
        kl = tried(strength)
        if _within(kl, config):
            return strength, kl
        if kl > config.target_kl:
            high = strength
        elif strength >= top:
            return SteeringFailure(f"KL {kl:.3g} at the largest strength allowed ({strength:.4g}, "
                                   f"{config.max_strength_ratio:g} times the stream's norm) is below the target "
                                   f"{config.target_kl:g}: the feature barely moves the output", strength, kl)
        else:
            low, strength = strength, min(2 * strength, top)
    for _ in range(MAX_BISECTIONS):
        middle = (low + high) / 2
        kl = tried(middle)
        if _within(kl, config):
            return middle, kl
        low, high = (middle, high) if kl < config.target_kl else (low, middle)
    best = min(trace.tries, key=lambda t: abs(t[1] - config.target_kl))
    return SteeringFailure(f"the KL search did not converge to {config.target_kl:g} +- "
                           f"{config.kl_tolerance * config.target_kl:.3g} (closest: KL {best[1]:.3g} at strength "
                           f"{best[0]:.4g}): the KL jumps with the strength", best[0], best[1])


def find_strength(model: Any, batch: PromptBatch, base_lp: torch.Tensor, vector: SteeringVector,
                  config: SteeringConfig, trace: StrengthSearch) -> tuple[float, float] | SteeringFailure:
    """The strength that moves the prompts' next-token distributions by `config.target_kl` (see the module)."""
    if vector.norm == 0:
        return SteeringFailure("the feature's direction is zero (a dead decoder row): steering it changes nothing")
    scale = stream_norm(model, vector, batch) / vector.norm

    def measure(strength: float) -> float:
        with steered(model, vector, strength):
            return mean_kl(next_token_logprobs(model, batch), base_lp)

    return search(measure, scale, config, trace)
