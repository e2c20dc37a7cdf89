"""Values 0..10 on tokenizers with and without a single-token "10", on tiny random transformers models built
here (word-level tokenizers, nothing downloaded): the fast path (prefix cache, records batched, a "1" per slot
through tree attention) against the plain one-prompt-per-slot pass, sliding-window layers included."""

from __future__ import annotations

import re
from typing import Any

import pytest
import torch
from tokenizers import Regex, Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from llm_client.local_models import LoadedModel
from simulator import SimulationError
from simulator.logprob_local import LocalLogprobSimulator
from simulator.prompts import FEW_SHOT, prefix_text, record_text
from simulator.split_ten import value_tokens, with_split_ten

RECORDS = [[" The", " fire", " of", " 1932", "\t", " burned", "."], [" 10"], [" smoke", " rose", " over", " 7", " hills"]]
_WORDS = r"\w+|\s|[^\w\s]"


def word_tokenizer(split_digits: bool) -> PreTrainedTokenizerFast:
    """Every word, space and sign of the prompts is a token; digits are one token each when `split_digits`
    (as Gemma's), else numbers are whole words and "10" is in the vocabulary."""
    pattern = r"\d|" + _WORDS if split_digits else _WORDS
    text = prefix_text("fire and smoke") + "".join(record_text(r)[0] for r in RECORDS)
    words = sorted(set(re.findall(pattern, text)) | {str(v) for v in range(10 if split_digits else 11)})
    vocab = {w: i for i, w in enumerate(["[UNK]", "[PAD]", *words])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(pattern), behavior="isolated")
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]")


def tiny_model(kind: str, vocab_size: int, attention: str):
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    small: dict[str, Any] = {"vocab_size": vocab_size, "hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 4,
             "num_key_value_heads": 2, "head_dim": 16, "max_position_embeddings": 4096}
    if kind == "gemma3":  # a 16-token window: the prompts run far past it, as Gemma 3's do past 512
        config = Gemma3TextConfig(**small, num_hidden_layers=3, sliding_window=16,
                                  layer_types=["sliding_attention", "full_attention", "sliding_attention"])
        model: Any = Gemma3ForCausalLM(config)
    else:
        model = LlamaForCausalLM(LlamaConfig(**small, num_hidden_layers=2))
    model.set_attn_implementation(attention)
    return model.eval()


def tiny_simulator(kind: str, split_digits: bool, attention: str = "sdpa") -> LocalLogprobSimulator:
    tok = word_tokenizer(split_digits)
    model = tiny_model(kind, len(tok), attention)
    # One few-shot example: the prompts (~400 tokens) still run far past the window.
    return LocalLogprobSimulator(LoadedModel(f"tiny-{kind}", model, tok, "cpu", torch.float32), batch_size=2,
                                 examples=FEW_SHOT[:1])


def max_diff(a: list, b: list) -> float:
    return max(abs(x - y) for ra, rb in zip(a, b) for da, db in zip(ra, rb) for x, y in zip(da, db))


@pytest.mark.parametrize("kind, split_digits, attention", [
    ("gemma3", True, "sdpa"), ("gemma3", True, "eager"), ("llama", True, "sdpa"),
    ("llama", False, "sdpa"), ("gemma3", False, "sdpa"),
])
def test_fast_path_equals_one_prompt_per_slot(kind, split_digits, attention):
    sim = tiny_simulator(kind, split_digits, attention)
    assert sim.values.splits_ten == split_digits
    fast = sim.distributions("fire and smoke", RECORDS)
    plain = sim.reference_distributions("fire and smoke", RECORDS)
    assert [len(r) for r in fast] == [len(r) for r in RECORDS]
    assert max_diff(fast, plain) <= 1e-6
    for dist in (d for r in fast for d in r):
        assert len(dist) == 11 and abs(sum(dist) - 1) < 1e-9
        assert dist[10] > 0  # a random model puts some weight on "10" (or "1" then "0")


def test_split_ten_reads_ten_from_one_then_zero():
    slot = torch.tensor([[0.5, 0.3, 0.2] + [0.0] * 7])
    after_one = torch.tensor([[0.6, 0.1] + [0.0] * 8])  # "10" 0.6, "11" 0.1, "1" then no digit 0.3
    (dist,) = with_split_ten(slot, after_one).tolist()
    kept = 0.5 + 0.3 * 0.3 + 0.2 + 0.3 * 0.6
    assert dist[10] == pytest.approx(0.3 * 0.6 / kept) and dist[1] == pytest.approx(0.3 * 0.3 / kept)
    assert dist[0] == pytest.approx(0.5 / kept) and sum(dist) == pytest.approx(1)


def test_value_tokens_of_both_kinds_of_tokenizer():
    whole, split = word_tokenizer(False), word_tokenizer(True)
    assert value_tokens(whole, "w").ids == [whole.convert_tokens_to_ids(str(v)) for v in range(11)]
    assert value_tokens(whole, "w").one is None
    assert value_tokens(split, "s").ids == [split.convert_tokens_to_ids(str(v)) for v in range(10)]
    assert value_tokens(split, "s").one == split.convert_tokens_to_ids("1")


def test_tokenizer_without_digit_tokens_is_refused_with_the_way_out():
    tok = Tokenizer(models.WordLevel({"[UNK]": 0, "a": 1}, unk_token="[UNK]"))
    with pytest.raises(SimulationError, match=r"simulator model m: .*no single token for each digit.*json:"):
        value_tokens(PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]"), "m")
