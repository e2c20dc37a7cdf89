"""Value 10 on tokenizers that split digits (Gemma, Qwen, Mistral, Llama 2): they write "10" as "1" then "0",
so the next-token distribution at a slot cannot tell value 1 from value 10 by itself. The slot gives P("1");
the distribution after a "1" appended at the slot tells which value that "1" starts:

    P(10) = P("1") · P("0" | "1")        P(1) = P("1") · P(no digit | "1")

"1" followed by another digit (11..19, off the scale) is dropped and the values renormalised, as a tokenizer
with single-token numbers drops its "11" token. Tokenizers with a single-token "10" read it directly.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from simulator.base import MAX_VALUE, SimulationError


@dataclass(frozen=True)
class ValueTokens:
    """Token ids of the value digits. `ids[v]` is the single token of value v (0..9, and 10 unless it splits);
    `one` is the id of "1" when "10" is written "1" "0", else None."""

    ids: list[int]
    one: int | None

    @property
    def splits_ten(self) -> bool:
        return self.one is not None


def value_tokens(tokenizer, name: str) -> ValueTokens:
    """Read how `tokenizer` writes 0..10; SimulationError when it cannot give a distribution over them."""
    def encode(text: str) -> list[int]:
        return list(tokenizer(text, add_special_tokens=False).input_ids)

    digits = [encode(str(v)) for v in range(MAX_VALUE)]
    if any(len(ids) != 1 for ids in digits) or len({ids[0] for ids in digits}) < MAX_VALUE:  # unknown-token ids
        raise SimulationError(f"simulator model {name}: its tokenizer has no single token for each digit 0..9, so it "
                              "cannot give a distribution over activation values; use another model or json:")
    ids = [d[0] for d in digits]
    ten = encode(str(MAX_VALUE))
    if len(ten) == 1:
        return ValueTokens(ids + ten, None)
    if ten == [ids[1], ids[0]]:
        return ValueTokens(ids, ids[1])
    raise SimulationError(f"simulator model {name}: its tokenizer writes \"10\" as tokens {ten}, neither one token "
                          "nor \"1\" then \"0\"; use another model or the json: simulator")


def with_split_ten(slot_probs: torch.Tensor, after_one: torch.Tensor) -> torch.Tensor:
    """(n, 10) probabilities of digits 0..9 at the slots and (n, 10) full-vocabulary probabilities of digits
    0..9 right after a "1" there -> (n, 11) distributions over values 0..10 (float64, rows summing to 1)."""
    slot, after = slot_probs.double(), after_one.double()
    out = torch.zeros(slot.shape[0], MAX_VALUE + 1, dtype=torch.float64, device=slot.device)
    out[:, :MAX_VALUE] = slot
    out[:, 1] = slot[:, 1] * (1 - after.sum(dim=-1)).clamp(min=0)
    out[:, MAX_VALUE] = slot[:, 1] * after[:, 0]
    return out / out.sum(dim=-1, keepdim=True)
