"""Batched, seeded sampling of continuations from the subject model.

Every continuation has its own seed (from the run's seed, its prompt and its sample number), drawn from its own
CPU generator, so a rerun writes the same text byte for byte whatever else is in the batch, and a steered and an
unsteered continuation are made the same way (same temperature, same sampler), differing only by the steering
and their seeds. Prompts are left padded; the model's own `generate` runs the cache and the stopping, and a
logits processor does the sampling (it leaves one token possible, which greedy decoding then takes).
"""

from __future__ import annotations

from typing import Any

import torch

from activations.steering_strength import encode_prompts

STEERED_SAMPLE = 0  # the sample number of a prompt's steered continuation; unsteered ones are 1..n


def sample_seed(seed: int, prompt: int, sample: int) -> int:
    """A distinct 63-bit seed per (run seed, prompt, sample)."""
    return (seed * 1_000_003 + prompt * 10_007 + sample) % (2**63 - 1)


class SeededSampler:
    """A logits processor: per row, one token drawn at `temperature` with that row's own generator."""

    def __init__(self, seeds: list[int], temperature: float) -> None:
        self.generators = [torch.Generator().manual_seed(s) for s in seeds]
        self.temperature = temperature

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        probs = torch.softmax(scores.double() / self.temperature, dim=-1).cpu()
        draws = torch.stack([torch.rand((), dtype=torch.float64, generator=g) for g in self.generators])
        cdf = probs.cumsum(-1)
        chosen = torch.searchsorted(cdf, (draws * cdf[:, -1]).unsqueeze(-1)).clamp(max=probs.shape[-1] - 1)
        out = torch.full_like(scores, -torch.inf)
        return out.scatter_(-1, chosen.to(scores.device), 0.0)


def generate(model: Any, tokenizer: Any, prompts: list[str], seeds: list[int], *, tokens: int,
             temperature: float) -> list[str]:
    """One continuation per prompt (the text after it, special tokens dropped), each sampled with its seed."""
    from transformers import GenerationConfig, LogitsProcessorList

    batch = encode_prompts(tokenizer, prompts, next(model.parameters()).device)
    pad = int(batch.input_ids[0, 0]) if batch.attention_mask[0, 0] == 0 else tokenizer.pad_token_id
    config = GenerationConfig(max_new_tokens=tokens, do_sample=False, num_beams=1,
                              pad_token_id=pad if pad is not None else tokenizer.eos_token_id,
                              eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.bos_token_id)
    with torch.inference_mode():
        out = model.generate(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                             generation_config=config,
                             logits_processor=LogitsProcessorList([SeededSampler(seeds, temperature)]))
    new = out[:, batch.input_ids.shape[1]:]
    return [tokenizer.decode(row, skip_special_tokens=True) for row in new.tolist()]
