"""Load sparse autoencoders from the common release formats and encode activations into latents.

Formats (detected from the path):
- SAELens folder: cfg.json + sae_weights.safetensors (W_enc [d_in, d_sae], b_enc, W_dec, b_dec,
  threshold for JumpReLU); architectures standard (ReLU), jumprelu, topk.
- EleutherAI sparsify folder: cfg.json (d_in, k, ...) + sae.safetensors (encoder.weight [d_sae, d_in],
  encoder.bias, W_dec, b_dec); TopK. The folder name is the hook point (`layers.6`, `layers.6.mlp`).
- OpenAI sparse_autoencoder state dict (.pt): pre_bias, latent_bias, encoder.weight, activation "TopK"
  with activation_state_dict {k}; TopK autoencoders normalise their input per token (centre, divide by
  the unbiased std + 1e-5) as their `Autoencoder.preprocess` does. No hook in the file: the user names it.
- Gemma Scope params.npz: W_enc, b_enc, threshold, W_dec, b_dec; JumpReLU. The hook comes from the
  release path (`layer_6`, `...-res` / `...-mlp`) when present.
All encoders compute relu-family latents in float32 on the activations' device.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from activations.errors import UserError
from activations.hooks import HookPoint, parse_hook, parse_site

ARCHITECTURES = ("relu", "jumprelu", "topk")


class SaeError(UserError):
    """An SAE file is missing, malformed or unsupported; the message names the file and the problem."""


@dataclass(frozen=True)
class Sae:
    name: str
    path: str
    format: str  # saelens | sparsify | openai | gemma-scope
    architecture: str  # relu | jumprelu | topk
    W_enc: torch.Tensor  # [d_in, d_sae]
    b_enc: torch.Tensor  # [d_sae]
    pre_bias: torch.Tensor | None = None  # subtracted from the input before encoding
    threshold: torch.Tensor | None = None  # jumprelu
    k: int | None = None  # topk
    input_norm: str = "none"  # none | layer_norm (OpenAI) | constant_norm_rescale (SAELens)
    hook: HookPoint | None = None
    W_dec: torch.Tensor | None = None  # [d_sae, d_in]: each latent's output direction (neighbours, logit lens)

    @property
    def d_in(self) -> int:
        return int(self.W_enc.shape[0])

    @property
    def d_sae(self) -> int:
        return int(self.W_enc.shape[1])

    def to(self, device: str | torch.device) -> Sae:
        def move(t: torch.Tensor) -> torch.Tensor:
            return t.to(device=device, dtype=torch.float32)

        return replace(self, W_enc=move(self.W_enc), b_enc=move(self.b_enc),
                       pre_bias=None if self.pre_bias is None else move(self.pre_bias),
                       threshold=None if self.threshold is None else move(self.threshold))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """[..., d_in] activations -> [..., d_sae] latents."""
        x = x.float()
        if self.input_norm == "layer_norm":
            x = x - x.mean(dim=-1, keepdim=True)
            x = x / (x.std(dim=-1, keepdim=True) + 1e-5)
        elif self.input_norm == "constant_norm_rescale":
            x = x * (self.d_in ** 0.5) / x.norm(dim=-1, keepdim=True).clamp(min=1e-12)
        if self.pre_bias is not None:
            x = x - self.pre_bias
        pre = x @ self.W_enc + self.b_enc
        if self.architecture == "relu":
            return torch.relu(pre)
        if self.architecture == "jumprelu":
            assert self.threshold is not None, "a jumprelu SAE carries its threshold (every loader sets it)"
            return torch.relu(pre) * (pre > self.threshold)
        assert self.k is not None, "a topk SAE carries its k (every loader sets it)"
        top = pre.topk(self.k, dim=-1)
        return torch.zeros_like(pre).scatter_(-1, top.indices, torch.relu(top.values))


def _tensor(weights: dict, key: str, path: Path) -> torch.Tensor:
    if key not in weights:
        raise SaeError(f"SAE {path}: weight {key!r} is missing (found {sorted(weights)})")
    value = weights[key]
    return value if isinstance(value, torch.Tensor) else torch.from_numpy(np.asarray(value))


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise SaeError(f"SAE config {path} is unreadable: {exc}") from None


def _load_saelens(folder: Path) -> Sae:
    from safetensors.torch import load_file

    cfg = _read_json(folder / "cfg.json")
    weights = load_file(str(folder / "sae_weights.safetensors"))
    named = str(cfg.get("architecture") or cfg.get("activation_fn_str") or "standard").lower()
    arch = {"standard": "relu", "relu": "relu", "jumprelu": "jumprelu", "topk": "topk"}.get(named)
    if arch is None:
        raise SaeError(f"SAE {folder}: architecture {cfg.get('architecture')!r} is not supported; "
                       f"use one of {ARCHITECTURES}")
    norm = cfg.get("normalize_activations") or "none"
    if norm not in ("none", "constant_norm_rescale"):
        raise SaeError(f"SAE {folder}: normalize_activations={norm!r} is not supported (none, constant_norm_rescale)")
    threshold = None
    if arch == "jumprelu":
        if "threshold" in weights:
            threshold = _tensor(weights, "threshold", folder)
        else:
            threshold = _tensor(weights, "log_threshold", folder).exp()
    k = cfg.get("k") or (cfg.get("activation_fn_kwargs") or {}).get("k")
    if arch == "topk" and not k:
        raise SaeError(f"SAE {folder}: a topk SAE needs k in cfg.json (k or activation_fn_kwargs.k)")
    hook_name = cfg.get("hook_name") or (cfg.get("metadata") or {}).get("hook_name")
    return Sae(
        name=folder.name, path=str(folder), format="saelens", architecture=arch,
        W_enc=_tensor(weights, "W_enc", folder), b_enc=_tensor(weights, "b_enc", folder),
        pre_bias=_tensor(weights, "b_dec", folder) if cfg.get("apply_b_dec_to_input", True) else None,
        threshold=threshold, k=int(k) if arch == "topk" and k else None, input_norm=norm,
        hook=parse_hook(hook_name, cfg.get("hook_layer")) if hook_name else None,
        W_dec=weights.get("W_dec"),
    )


def _load_sparsify(folder: Path) -> Sae:
    from safetensors.torch import load_file

    cfg = _read_json(folder / "cfg.json")
    if cfg.get("activation", "topk") != "topk" or cfg.get("transcode"):
        raise SaeError(f"SAE {folder}: only TopK sparse autoencoders are supported "
                       f"(got activation={cfg.get('activation')!r}, transcode={cfg.get('transcode')})")
    weights = load_file(str(folder / "sae.safetensors"))
    try:
        hook = parse_hook(folder.name)
    except ValueError:
        hook = None
    return Sae(
        name=f"{folder.parent.name}/{folder.name}", path=str(folder), format="sparsify", architecture="topk",
        W_enc=_tensor(weights, "encoder.weight", folder).T, b_enc=_tensor(weights, "encoder.bias", folder),
        pre_bias=_tensor(weights, "b_dec", folder), k=int(cfg["k"]), hook=hook, W_dec=weights.get("W_dec"),
    )


def _load_openai(file: Path) -> Sae:
    state = torch.load(file, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or "encoder.weight" not in state:
        raise SaeError(f"SAE {file}: not an OpenAI sparse_autoencoder state dict (no 'encoder.weight')")
    activation = state.get("activation", "ReLU")
    if activation == "TopK":
        arch, k, norm = "topk", int(state["activation_state_dict"]["k"]), "layer_norm"
    elif activation == "ReLU":
        arch, k, norm = "relu", None, "none"
    else:
        raise SaeError(f"SAE {file}: activation {activation!r} is not supported (TopK, ReLU)")
    return Sae(
        name=file.stem, path=str(file), format="openai", architecture=arch,
        W_enc=_tensor(state, "encoder.weight", file).T, b_enc=_tensor(state, "latent_bias", file),
        pre_bias=_tensor(state, "pre_bias", file), k=k, input_norm=norm,
        W_dec=_tensor(state, "decoder.weight", file).T if "decoder.weight" in state else None,
    )


def _gemma_scope_hook(path: Path) -> HookPoint | None:
    text = str(path)
    layer = re.search(r"layer_(\d+)", text)
    site = re.search(r"-(res|mlp|att)(?:-|/|$)", text)
    if not layer or not site:
        return None
    if site.group(1) == "att":
        raise SaeError(f"SAE {path}: attention-output SAEs (-att) are not supported; use a -res or -mlp SAE")
    return HookPoint(int(layer.group(1)), "resid_post" if site.group(1) == "res" else "mlp_out")


def _load_gemma_scope(file: Path) -> Sae:
    with np.load(file) as params:
        weights = {key: params[key] for key in params.files}
    parts = list(file.parent.parts[-3:])
    return Sae(
        name="/".join(parts) or file.stem, path=str(file), format="gemma-scope", architecture="jumprelu",
        W_enc=_tensor(weights, "W_enc", file), b_enc=_tensor(weights, "b_enc", file),
        threshold=_tensor(weights, "threshold", file), hook=_gemma_scope_hook(file),
        W_dec=_tensor(weights, "W_dec", file) if "W_dec" in weights else None,
    )


def load_sae(path: str | Path, *, hook: str | None = None, layer: int | None = None, name: str | None = None) -> Sae:
    """Load an SAE (format detected from the path). `hook` overrides the file's hook point: a full name
    (`blocks.6.hook_resid_post`, `layers.6.mlp`) or a bare site (`resid_post`) at `layer`."""
    p = Path(path).expanduser()
    if p.is_dir() and (p / "sae_weights.safetensors").exists():
        sae = _load_saelens(p)
    elif p.is_dir() and (p / "sae.safetensors").exists():
        sae = _load_sparsify(p)
    elif p.is_dir() and (p / "params.npz").exists():
        sae = _load_gemma_scope(p / "params.npz")
    elif p.is_file() and p.suffix == ".npz":
        sae = _load_gemma_scope(p)
    elif p.is_file() and p.suffix in (".pt", ".pth"):
        sae = _load_openai(p)
    else:
        raise SaeError(
            f"SAE {p}: not found or not a known format. Expected a SAELens folder (cfg.json + "
            "sae_weights.safetensors), a sparsify folder (cfg.json + sae.safetensors), an OpenAI .pt "
            "state dict, or a Gemma Scope params.npz"
        )
    if hook is not None:
        sae = replace(sae, hook=_override_hook(hook, layer, sae.hook))
    elif sae.hook is None and layer is not None:
        sae = replace(sae, hook=HookPoint(layer, "resid_post"))
    if sae.hook is None:
        raise SaeError(f"SAE {p} does not say where it hooks the model; pass its hook (e.g. blocks.6.hook_resid_post)")
    if name:
        sae = replace(sae, name=name)
    return sae


def _override_hook(text: str, layer: int | None, current: HookPoint | None) -> HookPoint:
    if re.match(r"^[a-z_.]+$", text):  # a bare site: keep the layer we know
        at = layer if layer is not None else (current.layer if current else None)
        if at is None:
            raise SaeError(f"hook {text!r} names no layer and the SAE file gives none; pass a layer too")
        return HookPoint(at, parse_site(text))
    return parse_hook(text, layer)


def describe(sae: Sae) -> dict[str, Any]:
    """What storage keeps about an SAE."""
    return {"name": sae.name, "path": sae.path, "format": sae.format, "architecture": sae.architecture,
            "d_in": sae.d_in, "d_sae": sae.d_sae, "hook": str(sae.hook), "k": sae.k}
