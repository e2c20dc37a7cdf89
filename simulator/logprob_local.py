"""All-at-once logprob simulator on a local transformers model, with the shared prefix computed once.

The few-shot prefix and the explanation are the same for every record of a feature and are most of each
prompt, so their KV cache is computed once per explanation and each batch of records runs only its own
lines behind a copy of it. Only the rows of the digit tokens of the output head are applied at the slot
positions: renormalising over the digits cancels the softmax denominator, so the full-vocabulary logits
(262k rows on Gemma 3) are never needed at the slots.

A tokenizer that splits "10" into "1" "0" (Gemma 3) needs, per slot, the distribution after a "1" typed there
(split_ten.py): each row carries one extra "1" per slot behind its record, seen through tree attention
(tree_attention.py) in the same forward; only there is the full-vocabulary softmax needed (P("0" | "1") is
absolute). `reference_distributions` is the plain one-prompt-per-record (and per-slot) pass the fast path
must match.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from llm_client.batching import compute_slot
from llm_client.local_models import LoadedModel
from llm_client.transformers_compat import cache_kwarg, returned_cache
from simulator.base import SequenceSimulation, SimulationError, Simulator, check_inputs, expected_value
from simulator.prompts import FEW_SHOT, FewShotExample, prefix_text, slot_line_head, slot_line_tail
from simulator.split_ten import value_tokens, with_split_ten
from simulator.tree_attention import tree_attention_masks

_VOCAB_CHUNK = 64  # extra tokens per full-vocabulary head product (64 x 262k floats on Gemma 3: 67 MB)


@dataclass
class RecordIds:
    """One record's part of the prompt as token ids, and where in it each subject token's slot is read: the
    position of the TAB, whose next-token distribution is the activation digit's."""

    ids: list[int]
    slots: list[int]


class LocalLogprobSimulator(Simulator):
    def __init__(self, loaded: LoadedModel, *, batch_size: int = 16,
                 examples: tuple[FewShotExample, ...] = FEW_SHOT) -> None:
        self.loaded = loaded
        self.spec = f"logprob:local:{loaded.name}"
        self.batch_size = batch_size
        self.examples = examples
        tok = loaded.tokenizer
        self.values = value_tokens(tok, loaded.name)
        self._tail = tok(slot_line_tail(), add_special_tokens=False).input_ids
        self._heads: dict[str, list[int]] = {}
        self._pad = tok.pad_token_id if tok.pad_token_id is not None else (tok.eos_token_id or 0)
        self._max_len = getattr(loaded.model.config, "max_position_embeddings", None)

    def prefix_ids(self, explanation: str) -> list[int]:
        return self.loaded.tokenizer(prefix_text(explanation, self.examples)).input_ids

    def record_ids(self, tokens: Sequence[str]) -> RecordIds:
        """Each line is tokenized as head (token + TAB) and tail ("unknown" + newline), so a token boundary
        sits exactly at every slot whatever the subject token is: splits and merges of the subject token by
        this tokenizer stay inside its own line."""
        ids: list[int] = []
        slots: list[int] = []
        for token in tokens:
            head = self._heads.get(token)
            if head is None:
                head = self.loaded.tokenizer(slot_line_head(token), add_special_tokens=False).input_ids
                self._heads[token] = head
            ids.extend(head)
            slots.append(len(ids) - 1)
            ids.extend(self._tail)
        return RecordIds(ids, slots)

    def _head_logits(self, hidden: torch.Tensor, rows: list[int] | None) -> torch.Tensor:
        """Output-head logits of `hidden` for the token ids `rows`, or for the whole vocabulary (None)."""
        model = self.loaded.model
        head = model.get_output_embeddings()
        if rows is None:
            logits = head(hidden)
        else:
            picked = torch.tensor(rows, device=hidden.device)
            bias = head.bias[picked] if getattr(head, "bias", None) is not None else None
            logits = torch.nn.functional.linear(hidden, head.weight[picked], bias)
        cap = getattr(model.config, "final_logit_softcapping", None)
        return torch.tanh(logits / cap) * cap if cap else logits

    def _slot_probs(self, hidden: torch.Tensor) -> torch.Tensor:
        """Probabilities of the value tokens at the slots, renormalised over them."""
        return torch.softmax(self._head_logits(hidden, self.values.ids).double(), dim=-1)

    def _digits_after_one(self, hidden: torch.Tensor) -> torch.Tensor:
        """Full-vocabulary probabilities of digits 0..9 at the extra "1" tokens: the denominator is needed here,
        in chunks so the (tokens x vocabulary) logits never exist at once."""
        digits = self._head_logits(hidden, self.values.ids[:10]).double()
        norm = torch.cat([torch.logsumexp(self._head_logits(chunk, None).float(), dim=-1).double()
                          for chunk in hidden.split(_VOCAB_CHUNK)])
        return torch.exp(digits - norm[:, None])

    def _to_distributions(self, slot_probs: torch.Tensor, after_one: torch.Tensor | None) -> list[list[float]]:
        """Length-11 lists per slot: the value tokens' probabilities, with 10 read from "1" "0" when it splits."""
        probs = slot_probs if after_one is None else with_split_ten(slot_probs, after_one)
        return probs.double().cpu().tolist()

    def _batch_inputs(self, prefix_len: int, batch: list[RecordIds]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Token ids, position ids and per-query visibility limits (see tree_attention) of one batch: records
        right-padded to one width, then (when "10" splits) a "1" per slot at the position right after it."""
        width = max(len(rec.ids) for rec in batch)
        one = self.values.one
        extra = max(len(rec.slots) for rec in batch) if one is not None else 0
        ids = torch.full((len(batch), width + extra), self._pad, dtype=torch.long)
        limits = torch.arange(width + extra).repeat(len(batch), 1)
        for row, rec in enumerate(batch):  # right padding: real tokens never attend to the pads after them
            ids[row, : len(rec.ids)] = torch.tensor(rec.ids)
            if one is not None:
                ids[row, width: width + len(rec.slots)] = one
                limits[row, width: width + len(rec.slots)] = torch.tensor(rec.slots)
        column = torch.arange(width + extra)
        positions = prefix_len + torch.where(column < width, column, limits + 1)  # an extra: right after its slot
        return ids, positions, limits

    def _batch_mask(self, cache, prefix_len: int, batch: list[RecordIds], limits: torch.Tensor,
                    positions: torch.Tensor) -> torch.Tensor | dict[str, torch.Tensor]:
        """Without extra tokens a 2D padding mask (the model makes the causal, sliding masks from it); with them
        the tree-attention masks."""
        device = self.loaded.device
        if self.values.splits_ten:
            return tree_attention_masks(self.loaded.model, cache, prefix_len, limits.to(device), positions.to(device))
        lengths = torch.tensor([[len(rec.ids)] for rec in batch])
        return torch.cat([torch.ones((len(batch), prefix_len), dtype=torch.long), (limits < lengths).long()],
                         dim=1).to(device)

    def distributions(self, explanation: str, records: Sequence[Sequence[str]]) -> list[list[list[float]]]:
        """Per record, per token: P(value) for 0..10. The fast path: prefix once, records batched behind it."""
        prefix = self.prefix_ids(explanation)
        encoded = [self.record_ids(tokens) for tokens in records]
        for i, rec in enumerate(encoded):
            if self._max_len and len(prefix) + len(rec.ids) > self._max_len:
                raise SimulationError(f"record {i}: prompt of {len(prefix) + len(rec.ids)} tokens exceeds the "
                                      f"simulator's context of {self._max_len}; use shorter records")
        model, device = self.loaded.model, self.loaded.device
        base = model.base_model
        out: list[list[list[float]] | None] = [None] * len(encoded)
        # Similar lengths share a batch, so little of each batch is padding.
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i].ids))
        with torch.inference_mode():
            cache = returned_cache(base(input_ids=torch.tensor([prefix], device=device), use_cache=True))
            for start in range(0, len(order), self.batch_size):
                batch = order[start:start + self.batch_size]
                ids, positions, limits = self._batch_inputs(len(prefix), [encoded[i] for i in batch])
                width = max(len(encoded[i].ids) for i in batch)
                batch_cache = copy.deepcopy(cache)  # the forward appends to the cache; the prefix is reused
                batch_cache.batch_repeat_interleave(len(batch))
                mask = self._batch_mask(batch_cache, len(prefix), [encoded[i] for i in batch], limits, positions)
                hidden = base(input_ids=ids.to(device), attention_mask=mask, position_ids=positions.to(device),
                              use_cache=True, **cache_kwarg(base, batch_cache)).last_hidden_state
                for row, i in enumerate(batch):
                    slots = encoded[i].slots
                    after = self._digits_after_one(hidden[row, width: width + len(slots)]) \
                        if self.values.splits_ten else None
                    out[i] = self._to_distributions(self._slot_probs(hidden[row, slots]), after)
        return out  # type: ignore[return-value]

    def _full_probs(self, ids: list[int], at: list[int]) -> torch.Tensor:
        """Full-vocabulary next-token probabilities at positions `at` of one plain forward of `ids`."""
        logits = self.loaded.model(input_ids=torch.tensor([ids], device=self.loaded.device)).logits[0]
        return torch.softmax(logits[at].double(), dim=-1)

    def reference_distributions(self, explanation: str, records: Sequence[Sequence[str]]) -> list[list[list[float]]]:
        """The plain way, for checking and benchmarking the fast path: one full prompt per record, a full
        forward pass with full-vocabulary logits, then the value tokens' probabilities renormalised; when "10"
        splits, one more prompt per slot, cut after the slot's TAB with "1" typed there."""
        prefix = self.prefix_ids(explanation)
        out = []
        with torch.inference_mode():
            for tokens in records:
                rec = self.record_ids(tokens)
                probs = self._full_probs(prefix + rec.ids, [len(prefix) + s for s in rec.slots])[:, self.values.ids]
                after = None
                if (one := self.values.one) is not None:
                    after = torch.stack([self._full_probs(prefix + rec.ids[: s + 1] + [one], [-1])[0]
                                         for s in rec.slots])[:, self.values.ids[:10]]
                out.append(self._to_distributions(probs / probs.sum(dim=-1, keepdim=True), after))
        return out

    def _simulate_sync(self, explanation: str, records: Sequence[Sequence[str]]) -> list[SequenceSimulation]:
        check_inputs(explanation, records)
        dists = self.distributions(explanation, records)
        return [SequenceSimulation(list(tokens), [expected_value(d) for d in per_token], per_token)
                for tokens, per_token in zip(records, dists)]

    async def simulate(self, explanation: str, records: Sequence[Sequence[str]]) -> list[SequenceSimulation]:
        # A worker thread keeps the event loop free for other features' LLM calls while torch runs; as a model
        # worker it shares the torch threads with the others running (a local explainer's batches, say).
        def run() -> list[SequenceSimulation]:
            with compute_slot():
                return self._simulate_sync(explanation, records)

        return await asyncio.to_thread(run)
