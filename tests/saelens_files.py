"""Small random SAEs and transcoders written to disk by SAELens itself (its config classes and `save_model`),
for the tests that load them back through autointerp."""

from __future__ import annotations

from pathlib import Path

import torch

D_MODEL = 640  # gemma-3-270m's hidden size: its residual stream and its MLP input and output
D_SAE = 32
K = 4
SAE_ARCHITECTURES = ("standard", "gated", "jumprelu", "topk")
TRANSCODER_ARCHITECTURES = ("transcoder", "skip_transcoder", "jumprelu_transcoder")


def write_saelens(folder: Path, architecture: str, *, hook: str = "blocks.6.hook_resid_post",
                  hook_out: str | None = None, normalize: str = "none", seed: int = 0) -> Path:
    """A SAELens SAE of `architecture` with random weights (thresholds and biases too, so every branch of its
    encoder matters), saved by SAELens's `save_model`."""
    from sae_lens.registry import get_sae_class
    from sae_lens.saes.sae import SAEMetadata

    sae_class, cfg_class = get_sae_class(architecture)
    extra: dict = {"k": K} if architecture in ("topk", "abstopk") else {}
    if "transcoder" in architecture:
        extra |= {"d_out": D_MODEL, "apply_b_dec_to_input": False}
        hook_out = hook_out or hook.replace("mlp.hook_in", "hook_mlp_out")
    metadata = SAEMetadata(hook_name=hook, model_name="gemma-3-270m", **({"hook_name_out": hook_out} if hook_out else {}))
    sae = sae_class(cfg_class(d_in=D_MODEL, d_sae=D_SAE, normalize_activations=normalize, metadata=metadata, **extra))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in sae.named_parameters():
            noise = torch.randn(param.shape, generator=gen)
            if name in ("W_enc", "W_dec", "W_skip"):
                param.copy_(noise / D_MODEL ** 0.5)
            elif name == "threshold":
                param.copy_(noise.abs() * 0.5)
            else:  # biases and the gated SAE's r_mag
                param.copy_(noise * 0.3)
    sae.save_model(folder)
    return folder
