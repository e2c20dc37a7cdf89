"""Our own readers for the SAE formats SAELens does not read from disk, and for SAELens folders when SAELens is
not installed. Each checks the config's fields and the weights' shapes first; an error names the file and the
field or tensor.

- EleutherAI sparsify folder: cfg.json (d_in, k, num_latents or expansion_factor, transcode) + sae.safetensors
  (encoder.weight [d_sae, d_in], encoder.bias, W_dec, b_dec); TopK. The folder name is the hook point
  (`layers.6`, `layers.6.mlp`). As sparsify's own `encode`: an SAE subtracts b_dec from its input, a
  transcoder (`transcode: true`) does not, and reads the module's input (`layers.6.mlp`: the MLP input) and
  writes its output. (SAELens's sparsify loader ties the b_dec subtraction to normalize_decoder, puts every
  folder at resid_post and knows no transcoders, so these stay ours.)
- OpenAI sparse_autoencoder state dict (.pt): pre_bias, latent_bias, encoder.weight, activation "TopK"
  with activation_state_dict {k}; TopK autoencoders normalise their input per token (centre, divide by
  the unbiased std + 1e-5) as their `Autoencoder.preprocess` does. No hook in the file: the user names it.
- Gemma Scope params.npz (SAELens reads these only from the Hub): W_enc, b_enc, threshold, W_dec, b_dec;
  JumpReLU. The hook comes from the release path (`layer_6`, `...-res` / `...-mlp`) when present.
- A SAELens folder without SAELens: standard (ReLU), jumprelu and topk, encoded as SAELens encodes them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from activations.hooks import HookError, HookPoint, parse_hook
from activations.sae import Sae, SaeError

INSTALL = "pip install 'autointerp[saelens]'"
_OWN_SAELENS = {"standard": "relu", "relu": "relu", "jumprelu": "jumprelu", "topk": "topk"}


def read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise SaeError(f"SAE config {path} is unreadable: {exc}") from None
    if not isinstance(data, dict):
        raise SaeError(f"SAE config {path}: expected a JSON object, got {type(data).__name__}")
    return data


def check_fields(cfg: Mapping[str, Any], required: Sequence[str], file: Path, what: str) -> None:
    for key in required:
        if cfg.get(key) is None:
            raise SaeError(f"SAE config {file}: field {key!r} is missing ({what} needs {', '.join(required)})")


def safetensors_shapes(file: Path) -> dict[str, tuple[int, ...]]:
    """Each tensor's shape, read from the file's header (no weights loaded)."""
    from safetensors import safe_open

    try:
        with safe_open(str(file), framework="pt") as f:
            return {key: tuple(f.get_slice(key).get_shape()) for key in f.keys()}  # noqa: SIM118
    except Exception as exc:  # safetensors raises its own error types for a truncated or foreign file
        raise SaeError(f"SAE weights {file} are unreadable: {exc}") from None


def check_shapes(shapes: Mapping[str, tuple[int, ...]], expected: Mapping[str, tuple[int, ...]], file: Path,
                 basis: str) -> None:
    for key, want in expected.items():
        if key not in shapes:
            raise SaeError(f"SAE weights {file}: tensor {key!r} is missing (found {sorted(shapes)})")
        if tuple(shapes[key]) != tuple(want):
            raise SaeError(f"SAE weights {file}: tensor {key!r} has shape {list(shapes[key])}, but {basis} "
                           f"gives {list(want)}")


def _tensor(weights: Mapping[str, Any], key: str, path: Path) -> torch.Tensor:
    if key not in weights:
        raise SaeError(f"SAE {path}: weight {key!r} is missing (found {sorted(weights)})")
    value = weights[key]
    return value if isinstance(value, torch.Tensor) else torch.from_numpy(np.asarray(value))


def load_saelens_without_saelens(folder: Path) -> Sae:
    """A SAELens folder read by our code (SAELens not installed): standard, jumprelu and topk only."""
    from safetensors.torch import load_file

    cfg_file, weights_file = folder / "cfg.json", folder / "sae_weights.safetensors"
    cfg = read_json(cfg_file)
    named = str(cfg.get("architecture") or cfg.get("activation_fn_str") or "standard").lower()
    arch = _OWN_SAELENS.get(named)
    if arch is None:
        raise SaeError(f"SAE {folder}: architecture {named!r} needs SAELens, which is not installed: {INSTALL}")
    norm = cfg.get("normalize_activations") or "none"
    k = cfg.get("k") or (cfg.get("activation_fn_kwargs") or {}).get("k")
    if norm not in ("none", "constant_norm_rescale") or cfg.get("rescale_acts_by_decoder_norm"):
        raise SaeError(f"SAE {folder}: normalize_activations={norm!r} (or rescale_acts_by_decoder_norm) needs "
                       f"SAELens, which is not installed: {INSTALL}")
    check_fields({**cfg, "k": k}, ("d_in", "d_sae", "k") if arch == "topk" else ("d_in", "d_sae"), cfg_file,
                 f"a {named} SAE")
    d_in, d_sae = int(cfg["d_in"]), int(cfg["d_sae"])
    shapes = safetensors_shapes(weights_file)
    expected = {"W_enc": (d_in, d_sae), "b_enc": (d_sae,), "W_dec": (d_sae, d_in), "b_dec": (d_in,)}
    if arch == "jumprelu":
        expected["log_threshold" if "log_threshold" in shapes else "threshold"] = (d_sae,)
    check_shapes(shapes, expected, weights_file, f"cfg.json (d_in={d_in}, d_sae={d_sae})")
    weights = load_file(str(weights_file))
    threshold = None
    if arch == "jumprelu":
        threshold = weights["threshold"] if "threshold" in weights else weights["log_threshold"].exp()
    metadata = cfg.get("metadata") or {}
    hook_name = cfg.get("hook_name") or metadata.get("hook_name") or cfg.get("hook_point")
    return Sae(
        name=folder.name, path=str(folder), format="saelens", architecture=arch,
        W_enc=weights["W_enc"], b_enc=weights["b_enc"],
        pre_bias=weights["b_dec"] if cfg.get("apply_b_dec_to_input", True) else None,
        threshold=threshold, k=int(k) if arch == "topk" and k is not None else None, input_norm=norm,
        hook=hook_of(hook_name, cfg.get("hook_layer"), cfg_file) if hook_name else None, W_dec=weights["W_dec"],
    )


def hook_of(name: str, layer: int | None, cfg_file: Path, field: str = "hook_name") -> HookPoint:
    try:
        return parse_hook(name, layer)
    except (HookError, ValueError) as exc:
        raise SaeError(f"SAE config {cfg_file}: field {field!r} ({name!r}) is not a hook point autointerp reads: "
                       f"{exc}") from None


def _sparsify_hooks(folder: Path, transcode: bool) -> tuple[HookPoint | None, HookPoint | None]:
    """(input, output) hook points from the folder name; a transcoder reads the module's input and writes its
    output, an SAE reads and writes the module's output."""
    try:
        point = parse_hook(folder.name)
    except ValueError:
        if transcode:
            raise SaeError(f"sparsify transcoder {folder}: the folder name {folder.name!r} is not a hook point "
                           "(layers.L or layers.L.mlp)") from None
        return None, None
    if not transcode:
        return point, None
    inputs = {"mlp_out": "mlp_in", "resid_post": "resid_pre"}
    if point.site not in inputs:
        raise SaeError(f"sparsify transcoder {folder}: transcoders of {folder.name!r} are not supported "
                       "(layers.L.mlp: MLP input to MLP output; layers.L: layer input to layer output)")
    return HookPoint(point.layer, inputs[point.site]), point


def load_sparsify(folder: Path) -> Sae:
    from safetensors.torch import load_file

    cfg_file, weights_file = folder / "cfg.json", folder / "sae.safetensors"
    cfg = read_json(cfg_file)
    if cfg.get("activation", "topk") != "topk":
        raise SaeError(f"SAE config {cfg_file}: field 'activation' is {cfg.get('activation')!r}; only TopK sparse "
                       "coders are supported")
    check_fields(cfg, ("d_in", "k"), cfg_file, "a sparsify sparse coder")
    d_in = int(cfg["d_in"])
    d_sae = int(cfg.get("num_latents") or 0) or d_in * int(cfg.get("expansion_factor") or 0)
    if d_sae <= 0:
        raise SaeError(f"SAE config {cfg_file}: field 'num_latents' (or 'expansion_factor') is missing")
    transcode = bool(cfg.get("transcode"))
    check_shapes(safetensors_shapes(weights_file),
                 {"encoder.weight": (d_sae, d_in), "encoder.bias": (d_sae,), "W_dec": (d_sae, d_in), "b_dec": (d_in,)},
                 weights_file, f"cfg.json (d_in={d_in}, {d_sae} latents)")
    weights = load_file(str(weights_file))
    hook, hook_out = _sparsify_hooks(folder, transcode)
    return Sae(
        name=f"{folder.parent.name}/{folder.name}", path=str(folder), format="sparsify",
        architecture="topk_transcoder" if transcode else "topk",
        W_enc=weights["encoder.weight"].T, b_enc=weights["encoder.bias"],
        pre_bias=None if transcode else weights["b_dec"], k=int(cfg["k"]), hook=hook, hook_out=hook_out,
        W_dec=weights["W_dec"],
    )


def load_openai(file: Path) -> Sae:
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
    W_enc = _tensor(state, "encoder.weight", file).T
    d_in, d_sae = W_enc.shape
    expected: dict[str, tuple[int, ...]] = {"latent_bias": (d_sae,), "pre_bias": (d_in,)}
    if "decoder.weight" in state:
        expected["decoder.weight"] = (d_in, d_sae)
    check_shapes({key: tuple(v.shape) for key, v in state.items() if isinstance(v, torch.Tensor)}, expected, file,
                 f"encoder.weight ({d_sae} latents x {d_in})")
    return Sae(
        name=file.stem, path=str(file), format="openai", architecture=arch,
        W_enc=W_enc, b_enc=state["latent_bias"], pre_bias=state["pre_bias"], k=k, input_norm=norm,
        W_dec=state["decoder.weight"].T if "decoder.weight" in state else None,
    )


def _gemma_scope_hooks(path: Path) -> tuple[HookPoint | None, HookPoint | None]:
    """(input, output) from the release path; Gemma Scope's transcoders read the MLP input and write its output."""
    text = str(path)
    layer = re.search(r"layer_(\d+)", text)
    site = re.search(r"-(res|mlp|att|transcoders)(?:-|/|$)", text)
    if not layer or not site:
        return None, None
    at = int(layer.group(1))
    if site.group(1) == "att":
        raise SaeError(f"SAE {path}: attention-output SAEs (-att) are not supported; use a -res or -mlp SAE")
    if site.group(1) == "transcoders":
        return HookPoint(at, "mlp_in"), HookPoint(at, "mlp_out")
    return HookPoint(at, "resid_post" if site.group(1) == "res" else "mlp_out"), None


def load_gemma_scope(file: Path) -> Sae:
    with np.load(file) as params:
        weights = {key: params[key] for key in params.files}
    W_enc = _tensor(weights, "W_enc", file)
    d_in, d_sae = W_enc.shape
    expected: dict[str, tuple[int, ...]] = {"b_enc": (d_sae,), "threshold": (d_sae,)}
    if "W_dec" in weights:
        expected["W_dec"] = (d_sae, d_in)
    check_shapes({key: tuple(v.shape) for key, v in weights.items()}, expected, file, f"W_enc ({d_in} x {d_sae})")
    parts = list(file.parent.parts[-3:])
    hook, hook_out = _gemma_scope_hooks(file)
    return Sae(
        name="/".join(parts) or file.stem, path=str(file), format="gemma-scope",
        architecture="jumprelu" if hook_out is None else "jumprelu_transcoder",
        W_enc=W_enc, b_enc=_tensor(weights, "b_enc", file), threshold=_tensor(weights, "threshold", file),
        hook=hook, hook_out=hook_out, W_dec=_tensor(weights, "W_dec", file) if "W_dec" in weights else None,
    )
