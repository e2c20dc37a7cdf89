"""Attention masks for a batch that carries extra query tokens behind its records (tree attention): an extra
token sits at the end of its row but stands at another point of the record, seeing the prefix, the record up
to that point and itself, at the position id it would have there. One forward then gives, for every slot, the
model's view as if the extra token had been typed right after the slot.

The masks are built per attention kind against the cache's own key sizes: Gemma 3's sliding-window layers
keep only the last `window - 1` prefix tokens (a prompt is longer than the 512-token window), so their keys
start later and the window is applied here by position, not by row index (an extra token's row index is far
past its position). A transformers model takes a 4D mask as given; one with both kinds (`layer_types`) takes
a mask per kind.
"""

from __future__ import annotations

from typing import Any

import torch

from simulator.base import SimulationError


def _allowed(prefix_len: int, limits: torch.Tensor, positions: torch.Tensor, kv_length: int, kv_offset: int,
             window: int | None) -> torch.Tensor:
    """(batch, 1, queries, keys) bool: query q of a row sees key k when k is in the prefix or in the record up to
    `limits[row, q]`, or is q itself; within `window` positions when the layer slides."""
    queries = limits.shape[1]
    keys = torch.arange(kv_offset, kv_offset + kv_length, device=limits.device)
    own = torch.arange(prefix_len, prefix_len + queries, device=limits.device)
    allowed = (keys[None, None, :] <= prefix_len + limits[:, :, None]) | (keys[None, None, :] == own[None, :, None])
    if window is not None:
        allowed &= positions[:, :, None] - keys[None, None, :] < window
    return allowed[:, None]


def _in_format(allowed: torch.Tensor, implementation: str, dtype: torch.dtype) -> torch.Tensor:
    if implementation == "sdpa":
        return allowed
    if implementation == "eager":
        return torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill(~allowed,
                                                                                          torch.finfo(dtype).min)
    raise SimulationError(f"the simulator model uses attention {implementation!r}; the logprob simulator of a "
                          "tokenizer that splits \"10\" needs sdpa or eager attention (load it with one of those)")


def tree_attention_masks(model: Any, cache: Any, prefix_len: int, limits: torch.Tensor,
                         positions: torch.Tensor) -> torch.Tensor | dict[str, torch.Tensor]:
    """The `attention_mask` argument for a forward of `limits.shape[1]` query tokens per row behind a cached
    prefix of `prefix_len` tokens. `limits[row, q]`: the last record index query q may see (q itself for the
    record's own tokens); `positions`: the queries' position ids."""
    config = model.config
    layer_types = list(getattr(config, "layer_types", None) or ["full_attention"])
    masks = {}
    for kind in dict.fromkeys(layer_types):
        layer = layer_types.index(kind)
        kv_length, kv_offset = cache.get_mask_sizes(limits.shape[1], layer)
        window = getattr(cache.layers[layer], "sliding_window", None) if cache.is_sliding[layer] else None
        allowed = _allowed(prefix_len, limits, positions, kv_length, kv_offset, window)
        masks[kind] = _in_format(allowed, config._attn_implementation, model.dtype)
    return masks if len(masks) > 1 else next(iter(masks.values()))
