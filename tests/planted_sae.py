"""A planted SAE for gemma-3-270m, written to disk as SAELens reads it: latent 0's decoder row is the unembedding
direction of " Paris", latent 1's of " London", latent 2 a fixed random direction, latent 3 dead (all zero). The
encoder reads fixed random directions (so latents 0-2 fire on about half the tokens and collection finds records);
steering reads the decoder only."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

LAYER = 12
HOOK = f"blocks.{LAYER}.hook_resid_post"
WORDS = (" Paris", " London")


def write_planted_sae(folder: Path, model: Any, tokenizer: Any) -> Path:
    """The SAE folder (cfg.json + sae_weights.safetensors): unit decoder rows, random encoder columns."""
    from safetensors.numpy import save_file

    unembed = model.get_output_embeddings().weight.detach().float().numpy()
    rows = [unembed[tokenizer(word, add_special_tokens=False).input_ids[0]] for word in WORDS]
    rng = np.random.default_rng(0)
    rows.append(rng.standard_normal(unembed.shape[1]))
    decoder = np.stack([r / np.linalg.norm(r) for r in rows] + [np.zeros(unembed.shape[1])]).astype(np.float32)
    encoder = (rng.standard_normal(decoder.shape) * (decoder.any(axis=1, keepdims=True))).astype(np.float32)
    folder.mkdir(parents=True, exist_ok=True)
    save_file({"W_enc": np.ascontiguousarray(encoder.T), "W_dec": decoder,
               "b_enc": np.zeros(len(decoder), np.float32), "b_dec": np.zeros(decoder.shape[1], np.float32)},
              str(folder / "sae_weights.safetensors"))
    (folder / "cfg.json").write_text(json.dumps({"architecture": "standard", "hook_name": HOOK,
                                                 "d_in": int(decoder.shape[1]), "d_sae": len(decoder)}))
    return folder
