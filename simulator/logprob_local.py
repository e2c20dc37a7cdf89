"""All-at-once logprob simulator on a local transformers model, with the shared prefix computed once.

The few-shot prefix and the explanation are the same for every record of a feature and are most of each
prompt, so their KV cache is computed once per explanation and each batch of records runs only its own
lines behind a copy of it. Only the rows of the digit tokens of the output head are applied at the slot
positions: renormalising over the digits cancels the softmax denominator, so the full-vocabulary logits
(262k rows on Gemma 3) are never needed. `reference_distributions` is the plain one-prompt-per-record
forward pass the fast path must match.
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
from simulator.base import MAX_VALUE, SequenceSimulation, SimulationError, Simulator, check_inputs, expected_value
from simulator.prompts import FEW_SHOT, FewShotExample, prefix_text, slot_line_head, slot_line_tail


@dataclass
class RecordIds:
    """One record's part of the prompt as token ids, and where in it each subject token's slot is read: the
    position of the TAB, whose next-token distribution is the activation digit's."""

    ids: list[int]
    slots: list[int]


def digit_token_ids(tokenizer, name: str) -> dict[int, int]:
    """Values 0..10 whose text is a single token. Tokenizers that split digits have no "10"; such a
    simulator's scale tops out at 9 (the correlation score is unaffected by the scale)."""
    out = {}
    for v in range(MAX_VALUE + 1):
        ids = tokenizer(str(v), add_special_tokens=False).input_ids
        if len(ids) == 1:
            out[v] = ids[0]
    if 0 not in out or 1 not in out:
        raise SimulationError(f"simulator model {name}: its tokenizer has no single-token digits, so it cannot give a "
                              "distribution over activation values; use another model or the json: simulator")
    return out


class LocalLogprobSimulator(Simulator):
    def __init__(self, loaded: LoadedModel, *, batch_size: int = 16,
                 examples: tuple[FewShotExample, ...] = FEW_SHOT) -> None:
        self.loaded = loaded
        self.spec = f"logprob:local:{loaded.name}"
        self.batch_size = batch_size
        self.examples = examples
        tok = loaded.tokenizer
        self.values = digit_token_ids(tok, loaded.name)
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

    def _digit_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        model = self.loaded.model
        head = model.get_output_embeddings()
        rows = torch.tensor(list(self.values.values()), device=hidden.device)
        bias = head.bias[rows] if getattr(head, "bias", None) is not None else None
        logits = torch.nn.functional.linear(hidden, head.weight[rows], bias)
        cap = getattr(model.config, "final_logit_softcapping", None)
        return torch.tanh(logits / cap) * cap if cap else logits

    def _to_distributions(self, digit_probs: torch.Tensor) -> list[list[float]]:
        """(n, len(values)) renormalised probabilities -> length-11 lists (0 for values with no token)."""
        full = torch.zeros(digit_probs.shape[0], MAX_VALUE + 1, dtype=torch.float64)
        full[:, list(self.values)] = digit_probs.double().cpu()
        return full.tolist()

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
                width = max(len(encoded[i].ids) for i in batch)
                ids = torch.full((len(batch), width), self._pad, dtype=torch.long)
                mask = torch.zeros((len(batch), len(prefix) + width), dtype=torch.long)
                mask[:, : len(prefix)] = 1
                for row, i in enumerate(batch):  # right padding: real tokens never attend to the pads after them
                    n = len(encoded[i].ids)
                    ids[row, :n] = torch.tensor(encoded[i].ids)
                    mask[row, len(prefix): len(prefix) + n] = 1
                positions = torch.arange(len(prefix), len(prefix) + width).expand(len(batch), -1)
                batch_cache = copy.deepcopy(cache)  # the forward appends to the cache; the prefix is reused
                batch_cache.batch_repeat_interleave(len(batch))
                hidden = base(input_ids=ids.to(device), attention_mask=mask.to(device),
                              position_ids=positions.to(device), use_cache=True,
                              **cache_kwarg(base, batch_cache)).last_hidden_state
                for row, i in enumerate(batch):
                    probs = torch.softmax(self._digit_logits(hidden[row, encoded[i].slots]).double(), dim=-1)
                    out[i] = self._to_distributions(probs)
        return out  # type: ignore[return-value]

    def reference_distributions(self, explanation: str, records: Sequence[Sequence[str]]) -> list[list[list[float]]]:
        """The plain way, for checking and benchmarking the fast path: one full prompt per record, a full
        forward pass with full-vocabulary logits, then the digit probabilities renormalised."""
        prefix = self.prefix_ids(explanation)
        rows = list(self.values.values())
        out = []
        with torch.inference_mode():
            for tokens in records:
                rec = self.record_ids(tokens)
                input_ids = torch.tensor([prefix + rec.ids], device=self.loaded.device)
                logits = self.loaded.model(input_ids=input_ids).logits[0]
                probs = torch.softmax(logits.float(), dim=-1)[[len(prefix) + s for s in rec.slots]][:, rows]
                out.append(self._to_distributions(probs / probs.sum(dim=-1, keepdim=True)))
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
