"""Sparse autoencoders and transcoders: what collection needs of one (its hook points, its encoder, its decoder
for weight evidence), and `load_sae`, which picks the loader from the path.

Loaders:
- SAELens folders (cfg.json + sae_weights.safetensors) and `saelens:RELEASE/SAE_ID` go through SAELens itself
  (`activations.sae_lens_loader`, the `saelens` extra): every architecture SAELens loads (standard, gated,
  jumprelu, topk, transcoders ...), encoded by SAELens's own `encode`. Without the package, a SAELens folder of
  a standard, jumprelu or topk SAE is read by our own code (`activations.sae_files`), which encodes the same.
- Cross-layer transcoders in circuit-tracer's format: `activations.clt_files` (one layer's latents per Sae).
- Formats SAELens does not read from disk stay ours (`activations.sae_files`): EleutherAI sparsify folders
  (SAEs and transcoders), OpenAI sparse_autoencoder .pt state dicts and Gemma Scope params.npz.

A transcoder reads its latents at `hook` (e.g. the MLP input) and writes at `hook_out` (the MLP output); its
decoder rows are directions at `hook_out`, which is what neighbours and the logit lens read. A cross-layer
transcoder (`activations.clt_files`) writes the outputs of several layers (`out_layers`, one decoder each in
`W_dec_layers`); its `W_dec` is their sum, the latent's whole direct write to the residual stream.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from activations.errors import UserError
from activations.hooks import HookPoint, parse_hook, parse_site

ARCHITECTURES = ("relu", "jumprelu", "topk")  # what our own encoder computes; SAELens brings the rest


# Architectures whose latents are signed (SAELens's AbsTopK keeps the k largest |pre-activations| with their sign):
# their collections keep the most negative records too, as `collect --signed` does.
SIGNED_ARCHITECTURES = ("abstopk",)


class SaeError(UserError):
    """An SAE file is missing, malformed or unsupported; the message names the file and the problem."""


@dataclass(frozen=True)
class Sae:
    name: str
    path: str
    format: str  # saelens | sparsify | openai | gemma-scope
    architecture: str  # ours: relu | jumprelu | topk; through SAELens: its architecture name (gated, transcoder ...)
    W_enc: torch.Tensor | None = None  # [d_in, d_sae] (our own encoder; None when `module` encodes)
    b_enc: torch.Tensor | None = None  # [d_sae]
    pre_bias: torch.Tensor | None = None  # subtracted from the input before encoding
    threshold: torch.Tensor | None = None  # jumprelu
    k: int | None = None  # topk
    input_norm: str = "none"  # none | layer_norm (OpenAI) | constant_norm_rescale (SAELens)
    hook: HookPoint | None = None  # where latents are read
    W_dec: torch.Tensor | None = None  # [d_sae, d_out]: each latent's output direction (neighbours, logit lens)
    hook_out: HookPoint | None = None  # a transcoder's output point (None: an SAE writes back where it reads)
    W_dec_layers: torch.Tensor | None = None  # a CLT's [d_sae, n_out, d_out]: one decoder per output layer
    out_layers: tuple[int, ...] = ()  # a CLT's output layers (its W_dec is the sum of their decoders)
    module: Any = None  # a SAELens SAE: its own `encode` gives the latents
    loader: str = "autointerp"  # what read the file and encodes (`sae_lens <version>`): stored with the SAE

    @property
    def d_in(self) -> int:
        if self.module is not None:
            return int(self.module.cfg.d_in)
        assert self.W_enc is not None, "an SAE without a SAELens module carries W_enc (every loader sets it)"
        return int(self.W_enc.shape[0])

    @property
    def d_sae(self) -> int:
        if self.module is not None:
            return int(self.module.cfg.d_sae)
        assert self.W_enc is not None, "an SAE without a SAELens module carries W_enc (every loader sets it)"
        return int(self.W_enc.shape[1])

    @property
    def output_hook(self) -> HookPoint | None:
        """Where the decoder writes: a transcoder's output point, else where the SAE reads."""
        return self.hook_out if self.hook_out is not None else self.hook

    def to(self, device: str | torch.device) -> Sae:
        if self.module is not None:
            return replace(self, module=self.module.to(device=device))

        def move(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.to(device=device, dtype=torch.float32)

        return replace(self, W_enc=move(self.W_enc), b_enc=move(self.b_enc), pre_bias=move(self.pre_bias),
                       threshold=move(self.threshold))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """[..., d_in] activations -> [..., d_sae] latents (float32)."""
        if self.module is not None:
            with torch.no_grad():
                out = self.module.encode(x)
            return (out.to_dense() if out.is_sparse else out).float()
        return self._encode_own(x.float())

    def _encode_own(self, x: torch.Tensor) -> torch.Tensor:
        assert self.W_enc is not None and self.b_enc is not None, "our own loaders set W_enc and b_enc"
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


SAELENS_PREFIX = "saelens:"


def load_sae(path: str | Path, *, hook: str | None = None, layer: int | None = None, name: str | None = None,
             hook_out: str | None = None) -> Sae:
    """Load an SAE or transcoder: `saelens:RELEASE/SAE_ID`, or a path (format detected). `hook` overrides
    the file's input hook point: a full name (`blocks.6.hook_resid_post`, `layers.6.mlp`) or a bare site
    (`resid_post`) at `layer`; `hook_out` likewise a transcoder's output point."""
    if isinstance(path, str) and path.startswith(SAELENS_PREFIX):
        from activations.sae_lens_loader import load_pretrained

        sae = load_pretrained(path[len(SAELENS_PREFIX):])
        shown = path
    else:
        p = Path(path).expanduser()
        sae = _load_path(p, layer)
        shown = str(p)
    if hook is not None:
        sae = replace(sae, hook=_override_hook(hook, layer, sae.hook))
    elif sae.hook is None and layer is not None:
        sae = replace(sae, hook=HookPoint(layer, "resid_post"))
    if hook_out is not None:
        sae = replace(sae, hook_out=_override_hook(hook_out, layer, sae.output_hook))
    if sae.hook is None:
        raise SaeError(f"SAE {shown} does not say where it hooks the model; pass its hook "
                       "(e.g. --sae-hook blocks.6.hook_resid_post)")
    return replace(sae, name=name) if name else sae


def _load_path(p: Path, layer: int | None) -> Sae:
    from activations import clt_files, sae_files, sae_lens_loader

    if clt_files.is_clt_folder(p):
        return clt_files.load_clt(p, layer)
    if p.is_dir() and (p / "sae_weights.safetensors").exists():
        if sae_lens_loader.available():
            return sae_lens_loader.load_folder(p)
        return sae_files.load_saelens_without_saelens(p)
    if p.is_dir() and (p / "sae.safetensors").exists():
        return sae_files.load_sparsify(p)
    if p.is_dir() and (p / "params.npz").exists():
        return sae_files.load_gemma_scope(p / "params.npz")
    if p.is_file() and p.suffix == ".npz":
        return sae_files.load_gemma_scope(p)
    if p.is_file() and p.suffix in (".pt", ".pth"):
        return sae_files.load_openai(p)
    raise SaeError(
        f"SAE {p}: not found or not a known format. Expected a SAELens folder (cfg.json + "
        "sae_weights.safetensors), saelens:RELEASE/SAE_ID, a sparsify folder (cfg.json + sae.safetensors), "
        "an OpenAI .pt state dict, a Gemma Scope params.npz, or a circuit-tracer CLT folder (W_enc_L.safetensors + "
        "W_dec_L.safetensors per layer)"
    )


def _override_hook(text: str, layer: int | None, current: HookPoint | None) -> HookPoint:
    if re.match(r"^[a-z_.]+$", text):  # a bare site: keep the layer we know
        at = layer if layer is not None else (current.layer if current else None)
        if at is None:
            raise SaeError(f"hook {text!r} names no layer and the SAE file gives none; pass a layer too")
        return HookPoint(at, parse_site(text))
    return parse_hook(text, layer)


def describe(sae: Sae) -> dict[str, Any]:
    """What storage keeps about an SAE (with the SAE row, and in the collection's run configuration)."""
    return {"name": sae.name, "path": sae.path, "format": sae.format, "architecture": sae.architecture,
            "d_in": sae.d_in, "d_sae": sae.d_sae, "hook": str(sae.hook), "k": sae.k,
            "hook_out": None if sae.hook_out is None else str(sae.hook_out),
            "d_out": None if sae.W_dec is None else int(sae.W_dec.shape[1]), "loader": sae.loader,
            **({"out_layers": list(sae.out_layers)} if sae.out_layers else {})}
