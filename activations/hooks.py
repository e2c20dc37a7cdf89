"""Hook points of HF decoder models: name them, find their modules, read their widths, capture them.

A hook point is (layer, site). Sites: `mlp_act` (the post-nonlinearity MLP activation, i.e. the input of
the down projection, gated MLPs included: one value per MLP neuron), `mlp_in` (the MLP module's input: the
residual stream after the pre-MLP norm, what a transcoder reads), `mlp_out` (the MLP module's output),
`resid_pre` (the residual stream entering the layer), `resid_mid` (after attention, entering the pre-MLP norm:
circuit-tracer's `hook_resid_mid`) and `resid_post` (leaving it). Names in the
TransformerLens/SAELens style (`blocks.6.hook_resid_post`) and sparsify style (`layers.6`, `layers.6.mlp`)
parse to the same points. For the MLP input, TransformerLens's `ln2.hook_normalized` (with the norm's
weight folded in, as TransformerLens loads models by default), TransformerBridge's `mlp.hook_in`, and
`hook_mlp_in`, the name SAELens's transcoder releases (Gemma Scope 2) give their input, all mean `mlp_in`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from activations.errors import UserError

SITES = ("mlp_act", "mlp_in", "mlp_out", "resid_pre", "resid_mid", "resid_post")
# Sites that are a module's input (read, or steered, before the module runs); the others are a module's output.
INPUT_SITES = ("mlp_act", "mlp_in", "resid_pre", "resid_mid")
_ALIASES = {
    "hook_resid_post": "resid_post", "hook_resid_pre": "resid_pre", "hook_mlp_out": "mlp_out",
    "mlp.hook_post": "mlp_act", "mlp_post_act": "mlp_act", "resid_post_mlp": "resid_post",
    "resid_delta_mlp": "mlp_out", "": "resid_post", "mlp": "mlp_out", "mlp.act": "mlp_act",
    "ln2.hook_normalized": "mlp_in", "mlp.hook_in": "mlp_in", "hook_mlp_in": "mlp_in",
    "hook_resid_mid": "resid_mid", "mlp.hook_out": "mlp_out",
}
_NAMES = {"mlp_act": "mlp.hook_post", "mlp_in": "mlp.hook_in"}  # the rest are hook_<site>
_NAME = re.compile(r"^(?:blocks|layers|model\.layers|h)\.(\d+)(?:\.(.+))?$")
_LAYER_LISTS = ("layers", "h", "blocks")  # Llama/Gemma/Mistral/NeoX, GPT-2, others
# The norm in front of the MLP, whose input is resid_mid (Gemma 2/3 name theirs pre_feedforward_layernorm and
# use post_attention_layernorm after attention, so that name is tried last).
_PRE_MLP_NORMS = ("pre_feedforward_layernorm", "ln_2", "post_attention_layernorm")
_DOWN_PROJ = ("down_proj", "c_proj", "dense_4h_to_h", "fc_out", "fc2")


class HookError(UserError):
    """A hook point name or a model's module layout is not understood; the message says what is supported."""


@dataclass(frozen=True)
class HookPoint:
    layer: int
    site: str

    def __post_init__(self) -> None:
        if self.site not in SITES:
            raise HookError(f"hook site {self.site!r} is not one of {SITES}")
        if self.layer < 0:
            raise HookError(f"hook layer must be >= 0 (got {self.layer})")

    def __str__(self) -> str:
        return f"blocks.{self.layer}.{_NAMES.get(self.site, 'hook_' + self.site)}"


def parse_site(text: str) -> str:
    site = _ALIASES.get(text, text)
    if site not in SITES:
        raise HookError(f"unknown hook site {text!r}; use one of {SITES} or a name like blocks.6.hook_resid_post")
    return site


def parse_hook(text: str, layer: int | None = None) -> HookPoint:
    """`blocks.6.hook_resid_post`, `layers.6.mlp`, `6:mlp_act`, or a bare site plus `layer`."""
    text = text.strip()
    if ":" in text:
        layer_text, site = text.split(":", 1)
        return HookPoint(int(layer_text), parse_site(site))
    match = _NAME.match(text)
    if match:
        return HookPoint(int(match.group(1)), parse_site(match.group(2) or ""))
    if layer is None:
        raise HookError(f"hook {text!r} names no layer; write it as blocks.L.hook_resid_post or L:{text}")
    return HookPoint(layer, parse_site(text))


def decoder_layers(model: Any) -> Any:
    """The list of decoder blocks of a causal LM (or of its base model)."""
    for owner in (model, getattr(model, "base_model", None), getattr(model, "model", None)):
        for name in _LAYER_LISTS:
            layers = getattr(owner, name, None) if owner is not None else None
            if isinstance(layers, torch.nn.ModuleList):
                return layers
    raise HookError(
        f"cannot find the decoder layers of {type(model).__name__}: supported layouts are model.layers "
        "(Llama, Gemma, Mistral, Qwen, GPT-NeoX) and transformer.h (GPT-2)"
    )


def _mlp_of(block: Any, model: Any) -> Any:
    mlp = getattr(block, "mlp", None)
    if mlp is None:
        raise HookError(f"{type(model).__name__}: decoder block {type(block).__name__} has no .mlp module")
    return mlp


def down_projection(block: Any, model: Any) -> Any:
    mlp = _mlp_of(block, model)
    for name in _DOWN_PROJ:
        module = getattr(mlp, name, None)
        if module is not None:
            return module
    raise HookError(
        f"{type(model).__name__}: MLP {type(mlp).__name__} has none of the down projections {_DOWN_PROJ}; "
        "cannot hook its neuron activations"
    )


def hook_module(model: Any, hook: HookPoint) -> Any:
    layers = decoder_layers(model)
    if hook.layer >= len(layers):
        raise HookError(f"layer {hook.layer} does not exist: {type(model).__name__} has layers 0-{len(layers) - 1}")
    block = layers[hook.layer]
    if hook.site == "mlp_act":
        return down_projection(block, model)
    if hook.site in ("mlp_in", "mlp_out"):
        return _mlp_of(block, model)
    if hook.site == "resid_mid":
        return _pre_mlp_norm(block, model)
    return block


def _pre_mlp_norm(block: Any, model: Any) -> Any:
    for name in _PRE_MLP_NORMS:
        module = getattr(block, name, None)
        if module is not None:
            return module
    raise HookError(f"{type(model).__name__}: decoder block {type(block).__name__} has none of the pre-MLP norms "
                    f"{_PRE_MLP_NORMS}; cannot hook resid_mid (the residual stream after attention)")


def hook_width(model: Any, hook: HookPoint) -> int:
    """How many values per token the hook point yields, read from module shapes (no forward pass)."""
    module = hook_module(model, hook)
    if hook.site == "mlp_act":
        if isinstance(module, torch.nn.Linear):
            return module.in_features
        return int(module.weight.shape[0])  # GPT-2 Conv1D stores weight as [in, out]
    return int(model.get_input_embeddings().embedding_dim)


def n_layers(model: Any) -> int:
    return len(decoder_layers(model))


def _first_tensor(value: Any) -> torch.Tensor:
    return value[0] if isinstance(value, (tuple, list)) else value


def attach(model: Any, hook: HookPoint, sink: Callable[[torch.Tensor], None]) -> Any:
    """Register a hook that passes the hook point's [batch, seq, width] tensor to `sink`; returns the handle."""
    module = hook_module(model, hook)
    if hook.site in INPUT_SITES:
        def pre(_module: Any, args: tuple, kwargs: dict) -> None:
            sink(args[0] if args else kwargs.get("hidden_states", next(iter(kwargs.values()))))

        return module.register_forward_pre_hook(pre, with_kwargs=True)

    def post(_module: Any, _args: Any, output: Any) -> None:
        sink(_first_tensor(output))

    return module.register_forward_hook(post)
