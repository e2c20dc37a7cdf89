"""Cross-layer transcoders (CLTs) in circuit-tracer's published format, read from a folder on disk.

The format (circuit-tracer's `CrossLayerTranscoder.to_safetensors` / `load_clt`, the files of the mntss CLT
releases SAELens's `mntss_clt_layer_transcoder` loader reads): for each layer i of an N-layer model,
- `W_enc_{i}.safetensors`: `W_enc_{i}` [d_transcoder, d_model], `b_enc_{i}` [d_transcoder], `b_dec_{i}` [d_model]
  and, for JumpReLU CLTs, `threshold_{i}` [d_transcoder] (ReLU otherwise);
- `W_dec_{i}.safetensors`: `W_dec_{i}` [d_transcoder, N - i, d_model]: layer i's latents write to the outputs of
  layers i .. N-1 (row j is the direction at layer i + j);
- optional `config.yaml`: `feature_input_hook` (default `hook_resid_mid`) and `feature_output_hook` (default
  `hook_mlp_out`), hook sites without a layer, as circuit-tracer names them.
N is the number of `W_enc_*` files. One Sae holds one layer's latents (collection is per layer): read at the
input hook of that layer, with one decoder per output layer (`Sae.out_layers`, `Sae.W_dec_layers`). Its
`W_dec` is their sum: the latent's whole direct write to the residual stream, since every output layer's MLP
output is added to the same stream; neighbours and the logit lens read that.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from activations.hooks import HookError, HookPoint, parse_site
from activations.sae import Sae, SaeError
from activations.sae_files import check_shapes, safetensors_shapes

DEFAULT_INPUT, DEFAULT_OUTPUT = "hook_resid_mid", "hook_mlp_out"  # circuit-tracer's load_clt defaults


def is_clt_folder(folder: Path) -> bool:
    return folder.is_dir() and any(folder.glob("W_enc_*.safetensors"))


def _config(folder: Path) -> dict[str, Any]:
    import yaml

    file = folder / "config.yaml"
    if not file.exists():
        return {}
    try:
        data = yaml.safe_load(file.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise SaeError(f"CLT config {file} is unreadable: {exc}") from None
    if not isinstance(data, dict):
        raise SaeError(f"CLT config {file}: expected a YAML mapping, got {type(data).__name__}")
    return data


def _site(cfg: dict[str, Any], field: str, default: str, folder: Path) -> str:
    text = cfg.get(field) or default
    try:
        return parse_site(str(text))
    except HookError as exc:
        raise SaeError(f"CLT config {folder / 'config.yaml'}: field {field!r} ({text!r}) is not a hook site "
                       f"autointerp reads: {exc}") from None


def _n_layers(folder: Path) -> int:
    layers = sorted(int(f.name[len("W_enc_"):-len(".safetensors")]) for f in folder.glob("W_enc_*.safetensors")
                    if f.name[len("W_enc_"):-len(".safetensors")].isdigit())
    if layers != list(range(len(layers))):
        missing = sorted(set(range(max(layers) + 1)) - set(layers))
        raise SaeError(f"CLT {folder}: encoder files W_enc_0 .. W_enc_{max(layers)}.safetensors must all be there "
                       f"(missing W_enc_{missing[0]}.safetensors)")
    return len(layers)


def load_clt(folder: Path, layer: int | None) -> Sae:
    """Layer `layer`'s latents of the CLT in `folder`; shapes are checked against each other before any weight
    is read, and every error names the file and the tensor or field."""
    from safetensors.torch import load_file

    if layer is None:
        raise SaeError(f"CLT {folder}: a cross-layer transcoder has latents at every layer; pick one with --layers L")
    n = _n_layers(folder)
    if not 0 <= layer < n:
        raise SaeError(f"CLT {folder}: it has layers 0-{n - 1} (W_enc_*.safetensors), not layer {layer}")
    cfg = _config(folder)
    site_in = _site(cfg, "feature_input_hook", DEFAULT_INPUT, folder)
    site_out = _site(cfg, "feature_output_hook", DEFAULT_OUTPUT, folder)
    enc_file, dec_file = folder / f"W_enc_{layer}.safetensors", folder / f"W_dec_{layer}.safetensors"
    if not dec_file.exists():
        raise SaeError(f"CLT {folder}: decoder file {dec_file.name} is missing (layer {layer}'s latents need it)")
    enc_shapes = safetensors_shapes(enc_file)
    W_enc_key = f"W_enc_{layer}"
    if W_enc_key not in enc_shapes or len(enc_shapes[W_enc_key]) != 2:
        got = list(enc_shapes[W_enc_key]) if W_enc_key in enc_shapes else f"missing (found {sorted(enc_shapes)})"
        raise SaeError(f"CLT weights {enc_file}: tensor {W_enc_key!r} must be [d_transcoder, d_model], got {got}")
    d_sae, d_model = enc_shapes[W_enc_key]
    basis = f"{W_enc_key} ({d_sae} latents x d_model {d_model})"
    expected = {f"b_enc_{layer}": (d_sae,), f"b_dec_{layer}": (d_model,)}
    jump = f"threshold_{layer}" in enc_shapes
    if jump:
        expected[f"threshold_{layer}"] = (d_sae,)
    check_shapes(enc_shapes, expected, enc_file, basis)
    check_shapes(safetensors_shapes(dec_file), {f"W_dec_{layer}": (d_sae, n - layer, d_model)}, dec_file,
                 f"the CLT's shape ({d_sae} latents, {n} layers: layer {layer} writes layers {layer}-{n - 1})")
    enc, dec = load_file(str(enc_file)), load_file(str(dec_file))[f"W_dec_{layer}"].float()
    threshold = enc[f"threshold_{layer}"].float() if jump else None
    if threshold is not None and bool((threshold < 0).any()):
        # circuit-tracer's JumpReLU keeps pre * (pre > threshold); with a negative threshold that passes
        # negative values, which our JumpReLU (relu first) would not reproduce.
        raise SaeError(f"CLT weights {enc_file}: tensor 'threshold_{layer}' has negative entries; a JumpReLU "
                       "threshold must be >= 0")
    return Sae(
        name=f"{folder.name}/layer_{layer}", path=str(folder), format="circuit-tracer-clt",
        architecture="jumprelu" if jump else "relu", W_enc=enc[W_enc_key].float().T,
        b_enc=enc[f"b_enc_{layer}"].float(),
        threshold=threshold, hook=HookPoint(layer, site_in), hook_out=HookPoint(layer, site_out),
        W_dec=dec.sum(dim=1), W_dec_layers=dec, out_layers=tuple(range(layer, n)),
    )
