"""Weight-based evidence about each feature, read from the model and SAE at collection (no corpus needed).

- Nearest neighbours: the k features of the same target whose directions are most alike by cosine; for SAE
  latents the decoder rows, for MLP neurons their columns of the down projection (the neuron's output weights).
  A transcoder's decoder rows are directions at its output point (`Sae.output_hook`), not where it reads.
- Logit lens: a feature's output direction read through the final norm's scale and the unembedding, the tokens
  it promotes and suppresses most.

Both run in row blocks with torch on the model's device, so a 131k-latent SAE never builds an n x n (or
n x vocab) matrix at once. The stored shapes are contracts other parts read:
`{"index": int, "similarity": float}` per neighbour, most similar first, the feature itself excluded; and
`{"promoted": [[token, logit], ...], "suppressed": [[token, logit], ...]}`.
"""

from __future__ import annotations

import re
from typing import Any

import torch

from activations.collect_config import Target
from activations.hooks import HookError, decoder_layers, down_projection

N_NEIGHBOURS = 10
N_TOKENS = 10
_BLOCK_ELEMENTS = 2**25  # per block: rows x columns of the similarity or logit matrix (128 MiB in float32)


def neuron_output_directions(model: Any, layer: int) -> torch.Tensor:
    """[d_mlp, d_model]: each MLP neuron's column of the down projection (what it writes to the residual)."""
    down = down_projection(decoder_layers(model)[layer], model)
    weight = down.weight.detach()
    # nn.Linear stores [out=d_model, in=d_mlp]; GPT-2's Conv1D stores [in, out].
    return weight.T if isinstance(down, torch.nn.Linear) else weight


def feature_directions(model: Any, target: Target) -> torch.Tensor | None:
    """[n_features, width]: the directions whose cosines give neighbours (None when the SAE has no decoder)."""
    if target.sae is None:
        return neuron_output_directions(model, target.layer)
    return None if target.sae.W_dec is None else target.sae.W_dec.detach()


def residual_directions(model: Any, target: Target, directions: torch.Tensor) -> torch.Tensor:
    """[n_features, d_model]: what each feature (its `feature_directions`) writes to the residual stream. A
    decoder that writes MLP activations (output site mlp_act) has rows in neuron space: they go through the
    down projection of the output point's layer."""
    out = target.sae.output_hook if target.sae is not None else None
    if out is None or out.site != "mlp_act":
        return directions
    neurons = neuron_output_directions(model, out.layer)
    return directions.to(neurons.device, neurons.dtype) @ neurons


def _rows_per_block(columns: int) -> int:
    return max(1, _BLOCK_ELEMENTS // max(columns, 1))


def nearest_neighbours(directions: torch.Tensor, k: int = N_NEIGHBOURS,
                       device: torch.device | str | None = None) -> list[list[dict[str, Any]]]:
    """Per row, the k other rows with the highest cosine similarity, most similar first (a zero row has
    cosine 0 with everything)."""
    n = directions.shape[0]
    k = min(k, n - 1)
    if k <= 0:
        return [[] for _ in range(n)]
    unit = directions.to(device or directions.device, torch.float32)
    unit = unit / unit.norm(dim=1, keepdim=True).clamp(min=1e-12)
    out: list[list[dict[str, Any]]] = []
    step = _rows_per_block(n)
    for start in range(0, n, step):
        sims = unit[start:start + step] @ unit.T
        rows = torch.arange(sims.shape[0], device=sims.device)
        sims[rows, rows + start] = -torch.inf  # the feature itself is not its own neighbour
        values, indices = sims.topk(k, dim=1)
        for vals, idxs in zip(values.tolist(), indices.tolist()):
            out.append([{"index": int(i), "similarity": round(float(v), 6)} for i, v in zip(idxs, vals)])
    return out


def final_norm(model: Any) -> torch.nn.Module:
    owners = (getattr(model, "model", None), getattr(model, "transformer", None), getattr(model, "base_model", None))
    for owner in (o for o in owners if o is not None):
        for name in ("norm", "ln_f", "final_layernorm"):
            module = getattr(owner, name, None)
            if isinstance(module, torch.nn.Module):
                return module
    raise HookError(f"{type(model).__name__}: no final norm (model.norm, transformer.ln_f) to read through")


def final_norm_scale(model: Any) -> torch.Tensor:
    """[d_model]: the per-dimension scale the final norm applies. Probed with a unit-RMS vector rather than
    read from `.weight`, since RMSNorm variants differ (Gemma multiplies by 1 + weight, Llama by weight)."""
    norm = final_norm(model)
    head = model.get_output_embeddings()
    if isinstance(norm, torch.nn.LayerNorm):
        return norm.weight.detach().float() if norm.weight is not None else torch.ones(head.weight.shape[1])
    probe = torch.ones(1, head.weight.shape[1], dtype=head.weight.dtype, device=head.weight.device)
    with torch.inference_mode():
        return norm(probe)[0].detach().float()


_PLACEHOLDER = re.compile(r"^<unused\d+>$|^\[unused\d+\]$")  # reserved vocabulary rows (Gemma, BERT-style)


def unreadable_tokens(tokenizer: Any, vocab_size: int) -> torch.Tensor:
    """[vocab] bool: special tokens and reserved placeholders (`<unused12>`), which no text contains and whose
    untrained output rows would otherwise crowd the logit lens."""
    mask = torch.zeros(vocab_size, dtype=torch.bool)
    special = [i for i in getattr(tokenizer, "all_special_ids", []) if 0 <= i < vocab_size]
    mask[special] = True
    pieces = tokenizer.convert_ids_to_tokens(list(range(min(vocab_size, len(tokenizer)))))
    mask[[i for i, piece in enumerate(pieces) if piece is not None and _PLACEHOLDER.match(piece)]] = True
    return mask


def logit_lens(model: Any, tokenizer: Any, directions: torch.Tensor, n_tokens: int = N_TOKENS
               ) -> list[dict[str, list[list[Any]]]]:
    """Per direction, the tokens whose logits it raises and lowers most: W_U (scale * d), with the final
    norm's scale (a LayerNorm also removes the mean); special and placeholder tokens are left out. Values are
    logits per unit of the direction as stored."""
    head = model.get_output_embeddings()
    if head is None:
        raise HookError(f"{type(model).__name__} has no output head to read directions through")
    unembed = head.weight.detach().float()  # [vocab, d_model]
    scale = final_norm_scale(model).to(unembed.device)
    directions = directions.to(unembed.device, torch.float32)
    if isinstance(final_norm(model), torch.nn.LayerNorm):
        directions = directions - directions.mean(dim=1, keepdim=True)
    scaled = directions * scale
    n_tokens = min(n_tokens, unembed.shape[0])
    excluded = unreadable_tokens(tokenizer, unembed.shape[0]).to(unembed.device)
    cache: dict[int, str] = {}

    def decoded(ids: list[int]) -> list[str]:
        return [cache.setdefault(i, tokenizer.decode([i])) for i in ids]

    out: list[dict[str, list[list[Any]]]] = []
    step = _rows_per_block(unembed.shape[0])
    for start in range(0, scaled.shape[0], step):
        logits = scaled[start:start + step] @ unembed.T
        top = logits.masked_fill(excluded, -torch.inf).topk(n_tokens, dim=1)
        bottom = logits.masked_fill(excluded, torch.inf).topk(n_tokens, dim=1, largest=False)
        for tv, ti, bv, bi in zip(top.values.tolist(), top.indices.tolist(), bottom.values.tolist(),
                                  bottom.indices.tolist()):
            out.append({"promoted": [[t, round(v, 4)] for t, v in zip(decoded(ti), tv)],
                        "suppressed": [[t, round(v, 4)] for t, v in zip(decoded(bi), bv)]})
    return out


def feature_evidence(model: Any, tokenizer: Any, target: Target, *, k: int = N_NEIGHBOURS,
                     n_tokens: int = N_TOKENS) -> dict[int, dict[str, Any]]:
    """Feature index -> {"neighbours": [...], "logits": {...}} for every feature of `target`; empty when
    the target has no weights to read (an SAE loaded without its decoder)."""
    with torch.inference_mode():
        directions = feature_directions(model, target)
        if directions is None:
            return {}
        device = model.get_output_embeddings().weight.device
        neighbours = nearest_neighbours(directions, k, device=device)
        logits = logit_lens(model, tokenizer, residual_directions(model, target, directions), n_tokens)
    return {i: {"neighbours": neighbours[i], "logits": logits[i]} for i in range(len(neighbours))}
