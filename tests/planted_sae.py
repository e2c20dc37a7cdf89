"""A planted SAE for gemma-3-270m, written to disk as SAELens reads it: latent 0's decoder row is the unembedding
direction of " Paris", latent 1's of " London", latent 2 a fixed random direction, latent 3 dead (all zero)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

LAYER = 12
HOOK = f"blocks.{LAYER}.hook_resid_post"
WORDS = (" Paris", " London")


def write_planted_sae(folder: Path, model: Any, tokenizer: Any) -> Path:
    """The SAE folder (cfg.json + sae_weights.safetensors): unit decoder rows, encoder = decoder transposed."""
    from safetensors.numpy import save_file

    unembed = model.get_output_embeddings().weight.detach().float().numpy()
    rows = [unembed[tokenizer(word, add_special_tokens=False).input_ids[0]] for word in WORDS]
    rows.append(np.random.default_rng(0).standard_normal(unembed.shape[1]))
    decoder = np.stack([r / np.linalg.norm(r) for r in rows] + [np.zeros(unembed.shape[1])]).astype(np.float32)
    folder.mkdir(parents=True, exist_ok=True)
    save_file({"W_enc": np.ascontiguousarray(decoder.T), "W_dec": decoder,
               "b_enc": np.zeros(len(decoder), np.float32), "b_dec": np.zeros(decoder.shape[1], np.float32)},
              str(folder / "sae_weights.safetensors"))
    (folder / "cfg.json").write_text(json.dumps({"architecture": "standard", "hook_name": HOOK,
                                                 "d_in": int(decoder.shape[1]), "d_sae": len(decoder)}))
    return folder
