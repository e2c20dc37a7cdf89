"""What a collection is asked to do: its targets (MLP neurons of a layer, or latents of an SAE) and its
settings (window length, token budget, batch size, splits, sampler)."""

from __future__ import annotations

from dataclasses import dataclass, field

from activations.hooks import HookError, HookPoint
from activations.sae import Sae
from activations.sampling import SamplerConfig
from activations.splits import BALANCED_SPLIT_RULE


@dataclass(frozen=True)
class Target:
    """What to collect: every MLP neuron at `hook` (site mlp_act), or every latent of `sae`."""

    hook: HookPoint
    sae: Sae | None = None

    @property
    def kind(self) -> str:
        return "sae_latent" if self.sae is not None else "mlp_neuron"

    @property
    def layer(self) -> int:
        return self.hook.layer

    @property
    def sae_name(self) -> str | None:
        return self.sae.name if self.sae is not None else None

    def __str__(self) -> str:
        if self.sae is None:
            return f"layer {self.layer} MLP neurons"
        return f"layer {self.layer} {'transcoder' if self.sae.hook_out is not None else 'SAE'} {self.sae_name}"


def neuron_target(layer: int) -> Target:
    return Target(HookPoint(layer, "mlp_act"))


def sae_target(sae: Sae) -> Target:
    if sae.hook is None:
        raise HookError(f"SAE {sae.name} has no hook point")
    return Target(sae.hook, sae)


@dataclass(frozen=True)
class CollectConfig:
    ctx_len: int = 64
    max_tokens: int = 100_000
    batch_size: int = 16
    min_tail: int = 8
    data_split_fractions: tuple[float, float, float] = (0.6, 0.2, 0.2)  # train, valid, test
    # How records get their split; stored with the collection's run so a collection made under another rule
    # (before this field: a per-window hash alone) is recognisable.
    data_split_rule: str = BALANCED_SPLIT_RULE
    sampler: SamplerConfig = field(default_factory=SamplerConfig)

    def __post_init__(self) -> None:
        if self.data_split_rule != BALANCED_SPLIT_RULE:
            raise ValueError(f"data split rule {self.data_split_rule!r} is not one this version assigns "
                             f"(only {BALANCED_SPLIT_RULE!r}); leave data_split_rule at its default")
