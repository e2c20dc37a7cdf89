"""Small random cross-layer transcoders written in circuit-tracer's published format (what its
`CrossLayerTranscoder.to_safetensors` writes: W_enc_{i}.safetensors with W_enc_{i}, b_enc_{i}, b_dec_{i} and,
for JumpReLU, threshold_{i}; W_dec_{i}.safetensors with W_dec_{i} [d_transcoder, n_layers - i, d_model]; and
the config.yaml of its releases), for the tests that load them through autointerp."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file

N_LAYERS = 18  # gemma-3-270m
D_MODEL = 640
D_CLT = 8


def write_clt(folder: Path, *, n_layers: int = N_LAYERS, d_model: int = D_MODEL, d_clt: int = D_CLT,
              jumprelu: bool = False, input_hook: str | None = "hook_resid_mid",
              output_hook: str = "hook_mlp_out", seed: int = 0) -> Path:
    gen = torch.Generator().manual_seed(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n_layers):
        enc = {f"W_enc_{i}": torch.randn(d_clt, d_model, generator=gen) / d_model ** 0.5,
               f"b_enc_{i}": torch.randn(d_clt, generator=gen) * 0.3,
               f"b_dec_{i}": torch.randn(d_model, generator=gen) * 0.1}
        if jumprelu:
            enc[f"threshold_{i}"] = torch.rand(d_clt, generator=gen) * 0.5
        save_file(enc, str(folder / f"W_enc_{i}.safetensors"))
        save_file({f"W_dec_{i}": torch.randn(d_clt, n_layers - i, d_model, generator=gen) / d_model ** 0.5},
                  str(folder / f"W_dec_{i}.safetensors"))
    if input_hook is not None:
        (folder / "config.yaml").write_text(f'model_name: "google/gemma-3-270m"\nfeature_input_hook: "{input_hook}"\n'
                                            f"feature_output_hook: '{output_hook}'\n")
    return folder
