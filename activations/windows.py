"""Cut corpus documents into context windows and batch them for the subject model.

A window holds `ctx_len` consecutive tokens of ONE document (documents are never concatenated); a
document's short tail is padded (and masked) when it has at least `min_tail` tokens, else dropped.
Windows are numbered in corpus order, so the same corpus, tokenizer and settings give the same window ids:
the collector rebuilds selected windows from their ids instead of keeping every window in memory.
When the tokenizer adds a BOS token itself, the model expects it: each window is fed as BOS + tokens, and
the BOS position (an attention sink with extreme activations) is never scored.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import torch

from activations.corpus import Corpus


@dataclass(frozen=True)
class Window:
    id: int
    document: str
    offset: int  # token offset of the window's first token within its document
    token_ids: tuple[int, ...]


@dataclass
class WindowBatch:
    windows: list[Window]
    window_ids: torch.Tensor  # [batch] int64, on the target device
    input_ids: torch.Tensor  # [batch, prefix + ctx_len], on the target device
    attention_mask: torch.Tensor  # [batch, prefix + ctx_len]
    valid: torch.Tensor  # [batch, ctx_len]: real (non-pad) scored tokens
    prefix: int  # 1 when a BOS leads every row, else 0
    n_tokens: int  # scored tokens in the batch (known on the host; no device sync needed)


def bos_prefix(tokenizer: Any) -> list[int]:
    """[bos_id] when the tokenizer adds BOS on its own (so the model was trained with it), else []."""
    bos = tokenizer.bos_token_id
    if bos is None:
        return []
    probe = tokenizer("a").input_ids
    return [bos] if probe and probe[0] == bos else []


def iter_windows(
    corpus: Corpus, tokenizer: Any, ctx_len: int, max_tokens: int | None = None, min_tail: int = 8
) -> Iterator[Window]:
    """Windows in corpus order until `max_tokens` scored tokens have been produced."""
    if ctx_len < 1:
        raise ValueError(f"ctx_len must be >= 1 (got {ctx_len})")
    produced = 0
    next_id = 0
    for doc in corpus.documents():
        ids = tokenizer(doc.text, add_special_tokens=False).input_ids
        for start in range(0, len(ids), ctx_len):
            chunk = ids[start:start + ctx_len]
            if len(chunk) < min(min_tail, ctx_len):
                break
            if max_tokens is not None:
                chunk = chunk[: max_tokens - produced]
            yield Window(id=next_id, document=doc.id, offset=start, token_ids=tuple(chunk))
            next_id += 1
            produced += len(chunk)
            if max_tokens is not None and produced >= max_tokens:
                return


def make_batch(windows: list[Window], ctx_len: int, prefix_ids: list[int], pad_id: int,
               device: str | torch.device) -> WindowBatch:
    prefix = len(prefix_ids)
    ids = torch.full((len(windows), prefix + ctx_len), pad_id, dtype=torch.long)
    mask = torch.zeros((len(windows), prefix + ctx_len), dtype=torch.long)
    for row, window in enumerate(windows):
        n = prefix + len(window.token_ids)
        ids[row, :n] = torch.tensor(prefix_ids + list(window.token_ids))
        mask[row, :n] = 1
    # Built on the host then moved once per batch: the window layout is known without asking the device.
    return WindowBatch(
        windows=windows, window_ids=torch.tensor([w.id for w in windows]).to(device, non_blocking=True),
        input_ids=ids.to(device, non_blocking=True), attention_mask=mask.to(device, non_blocking=True),
        valid=mask[:, prefix:].bool().to(device, non_blocking=True), prefix=prefix,
        n_tokens=sum(len(w.token_ids) for w in windows),
    )


def iter_batches(
    windows: Iterable[Window], batch_size: int, ctx_len: int, prefix_ids: list[int], pad_id: int,
    device: str | torch.device,
) -> Iterator[WindowBatch]:
    pending: list[Window] = []
    for window in windows:
        pending.append(window)
        if len(pending) == batch_size:
            yield make_batch(pending, ctx_len, prefix_ids, pad_id, device)
            pending = []
    if pending:
        yield make_batch(pending, ctx_len, prefix_ids, pad_id, device)


def pad_id_of(tokenizer: Any) -> int:
    # Pad positions are masked out of attention and scoring, so any id works; prefer the declared ones.
    return int(next(c for c in (tokenizer.pad_token_id, tokenizer.eos_token_id, 0) if c is not None))
