"""Steer a subject model along one feature at the hook point collection reads it from.

An MLP neuron (site mlp_act) is steered by adding `strength` to its activation (a forward pre-hook on the down
projection); an SAE latent by adding `strength * W_dec[i]` to the stream its SAE reconstructs. Every position is
steered, prompt and generated tokens alike. What a steering run is asked (`SteeringConfig`), the fixed neutral
prompts it runs on live here (what it returns, `SteeringResult` or `SteeringFailure`, in
`activations.steering_results`);
the strength search is in `activations.steering_strength`, the seeded generation in `activations.generation`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

import torch

from activations.errors import UserError
from activations.hooks import INPUT_SITES, HookPoint, hook_module, hook_width
from activations.sae import Sae

# Short generic openings that favour no topic: the strength is set, and the continuations made, on these.
# Changing the list changes every number: bump the version (it is in the stored configuration).
NEUTRAL_PROMPTS_VERSION = "neutral-v1"
NEUTRAL_PROMPTS: tuple[str, ...] = (
    "The", "I think that", "In the beginning,", "Once upon a time,", "Here is what happened:",
    "My favourite thing is", "Today, we", "It is important to", "The best way to", "She said that",
    "According to the", "We decided to",
)
# Bumped when how steering, the strength search or the generation work changes (it is in the configuration).
STEERING_VERSION = 1


class SteeringError(UserError):
    """A feature cannot be steered as asked (no decoder weights, an index out of range); the message says why."""


@dataclass(frozen=True)
class SteeringConfig:
    """Everything that changes a steering result; `as_config` is what storage hashes."""

    target_kl: float = 0.5  # most layer-6 MLP neurons of gemma-3-270m saturate below 1 nat (docs/steering.md)
    kl_tolerance: float = 0.1  # reached when |KL - target| <= kl_tolerance * target
    max_strength_ratio: float = 16.0  # the largest strength tried, in units of the stream's own norm
    tokens: int = 24  # new tokens per continuation
    n_unsteered: int = 3  # unsteered continuations per prompt, beside its one steered continuation
    temperature: float = 0.7
    seed: int = 0
    prompts: tuple[str, ...] = NEUTRAL_PROMPTS
    prompts_version: str = NEUTRAL_PROMPTS_VERSION

    def __post_init__(self) -> None:
        if self.target_kl <= 0:
            raise SteeringError(f"--target-kl must be > 0 (got {self.target_kl})")
        if self.tokens < 1 or self.n_unsteered < 1:
            raise SteeringError(f"--tokens and --unsteered must be >= 1 (got {self.tokens}, {self.n_unsteered})")
        if self.temperature <= 0:
            raise SteeringError(f"the sampling temperature must be > 0 (got {self.temperature})")

    def as_config(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("prompts")  # the version names them
        return {**out, "version": STEERING_VERSION}


@dataclass(frozen=True)
class SteeringVector:
    """What to add, and where: `direction` [width of the hook point], scaled by the strength."""

    hook: HookPoint
    direction: torch.Tensor

    @property
    def norm(self) -> float:
        return float(self.direction.float().norm())


def neuron_vector(model: Any, layer: int, index: int) -> SteeringVector:
    """MLP neuron `index` of `layer`: a one-hot direction on the down projection's input."""
    hook = HookPoint(layer, "mlp_act")
    width = hook_width(model, hook)
    if not 0 <= index < width:
        raise SteeringError(f"MLP neuron {index} does not exist: layer {layer} has neurons 0-{width - 1}")
    direction = torch.zeros(width)
    direction[index] = 1.0
    return SteeringVector(hook, direction)


def latent_vector(sae: Sae, index: int) -> SteeringVector:
    """SAE latent `index`: its decoder row, where the decoder writes (a transcoder's output point, else the SAE's
    hook point)."""
    if sae.W_dec is None or sae.output_hook is None:
        raise SteeringError(f"SAE {sae.name} ({sae.path}) has no decoder weights or no hook point: its latents "
                            "cannot be steered; use an SAE file with W_dec")
    if sae.out_layers:
        raise SteeringError(f"cross-layer transcoder {sae.name} ({sae.path}): its latents write to layers "
                            f"{sae.out_layers[0]}-{sae.out_layers[-1]} at once, and steering adds one vector at one "
                            "hook point, so CLT latents cannot be steered (autointerp steer, the steering and "
                            "intervention scorers and +steering evidence need one hook point)")
    if sae.output_hook.site == "resid_mid":
        raise SteeringError(f"SAE {sae.name} reads at {sae.hook}, the pre-MLP norm's input, which is not the "
                            "residual stream itself; steering there is not supported")
    if not 0 <= index < sae.d_sae:
        raise SteeringError(f"SAE {sae.name} has latents 0-{sae.d_sae - 1}, not {index}")
    return SteeringVector(sae.output_hook, sae.W_dec[index].detach().float().cpu())


def _model_param(model: Any) -> torch.Tensor:
    return next(model.parameters())


@contextmanager
def steered(model: Any, vector: SteeringVector, strength: float) -> Iterator[None]:
    """Within the block, every forward pass of `model` adds `strength * direction` at the vector's hook point,
    at every position. Strength 0 adds no hook at all (the unsteered model, bit for bit)."""
    if strength == 0:
        yield
        return
    param = _model_param(model)
    delta = (vector.direction.float() * strength).to(device=param.device, dtype=param.dtype)
    module = hook_module(model, vector.hook)
    if vector.hook.site in INPUT_SITES:
        def pre(_module: Any, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
            if args:
                return (args[0] + delta, *args[1:]), kwargs
            return args, {**kwargs, "hidden_states": kwargs["hidden_states"] + delta}

        handle = module.register_forward_pre_hook(pre, with_kwargs=True)
    else:
        def post(_module: Any, _args: Any, output: Any) -> Any:
            if isinstance(output, tuple):
                return (output[0] + delta, *output[1:])
            return output + delta

        handle = module.register_forward_hook(post)
    try:
        yield
    finally:
        handle.remove()
