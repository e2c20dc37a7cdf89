"""Batched generation for the in-process backend: the generate requests that arrive together decode as one batch
on the batch worker thread. Their prompts usually share a long beginning (the explainer's few-shot header), so that
prefix runs once and its KV cache is kept for later batches; each row's own part is padded on the left, in front
of the shared prefix, so no padding ever sits between a row's real tokens (sliding-window layers see exactly what
they would unbatched). Greedy decoding picks the same tokens as one request at a time up to float rounding;
sampling uses a generator per request seeded with its seed."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer, DynamicSlidingWindowLayer

from llm_client.base import TokenLogprobs
from llm_client.batching import share_threads
from llm_client.local_models import LoadedModel
from llm_client.transformers_compat import cache_kwarg

Generated = tuple[str, list[TokenLogprobs]]
MIN_SHARED_PREFIX = 16  # tokens: a shorter common beginning is not worth a separate prefix pass
PREFIX_CACHE_SIZE = 4  # shared prefixes kept between batches (a few explainer formats at once)


@dataclass
class GenJob:
    """One generate request as the batch worker sees it."""

    ids: list[int]
    max_tokens: int
    temperature: float
    top_k: int | None  # top alternatives per generated token
    stop: list[str] | None
    seed: int | None


def top_alternatives(tokenizer: Any, logprobs: torch.Tensor, k: int) -> dict[str, float]:
    """The k most likely next tokens (as the tokenizer decodes them) and their logprobs."""
    if k <= 0:
        return {}
    values, indices = logprobs.topk(k)
    return {tokenizer.decode([int(i)]): float(v) for v, i in zip(values, indices)}


def finish_text(tokenizer: Any, new_ids: list[int], stop: list[str] | None) -> str:
    """The generated text, cut before the first stop string (OpenAI semantics: the stop itself is not returned)."""
    text = tokenizer.decode(new_ids, skip_special_tokens=True)
    for s in stop or []:
        if s in text:
            text = text[: text.index(s)]
    return text


class BatchDecoder:
    """Decodes batches of generate jobs on one loaded model, keeping shared-prefix KV caches between batches.
    `run` takes `lock` (the model's lock) for its torch work."""

    def __init__(self, loaded: LoadedModel, lock: threading.Lock) -> None:
        self.loaded, self.lock = loaded, lock
        tok = loaded.tokenizer
        self._pad = tok.pad_token_id if tok.pad_token_id is not None else (tok.eos_token_id or 0)
        self._special = set(tok.all_special_ids)
        config = loaded.model.config
        text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
        # A shared prefix must fit in the sliding window, whose cache layers keep only the last window - 1 tokens.
        window = getattr(text_config, "sliding_window", None)
        self.max_prefix: int | None = window - 1 if isinstance(window, int) and window > 1 else None
        self.prefixes: OrderedDict[tuple[int, ...], list[tuple[torch.Tensor, torch.Tensor]]] = OrderedDict()

    def run(self, jobs: list[GenJob]) -> list[Generated | BaseException]:
        """Decode the jobs of one batch. Prompts of very different lengths go in separate groups, so padding
        stays a small part of each forward pass; a failing group fails only its own jobs."""
        out: list[Generated | BaseException | None] = [None] * len(jobs)
        todo = []
        for i, job in enumerate(jobs):
            if job.max_tokens <= 0:
                out[i] = ("", [])
            else:
                todo.append(i)
        with self.lock, torch.inference_mode():
            for group in _length_groups([len(jobs[i].ids) for i in todo]):
                members = [todo[g] for g in group]
                try:
                    results: Sequence[Generated | BaseException] = self._decode([jobs[i] for i in members])
                except Exception as exc:  # reported to the callers of this group
                    results = [exc] * len(members)
                for i, result in zip(members, results):
                    out[i] = result
        return cast(list[Generated | BaseException], out)

    def _shared_prefix(self, prompts: list[list[int]]) -> tuple[int, list[tuple[torch.Tensor, torch.Tensor]] | None]:
        """The beginning all prompts share whose KV cache is computed once: a kept one from an earlier batch
        when it covers nearly all of the common beginning, else the common beginning of these prompts (kept
        for later batches). (0, None) when they share too little."""
        limit = min(len(p) for p in prompts) - 1  # every row keeps at least one token of its own
        if self.max_prefix is not None:
            limit = min(limit, self.max_prefix)
        common = limit
        if len(prompts) > 1:
            first = prompts[0]
            common = next((i for i in range(limit) if any(p[i] != first[i] for p in prompts[1:])), limit)
        best: tuple[int, ...] | None = None
        for key in self.prefixes:
            if len(key) <= limit and (best is None or len(key) > len(best)) \
                    and all(tuple(p[:len(key)]) == key for p in prompts):
                best = key
        if best is not None and (len(prompts) == 1 or len(best) >= common - MIN_SHARED_PREFIX):
            self.prefixes.move_to_end(best)
            return len(best), self.prefixes[best]
        if len(prompts) == 1 or common < MIN_SHARED_PREFIX:
            return 0, None
        key = tuple(prompts[0][:common])
        cache = DynamicCache(config=self.loaded.model.config)
        self.loaded.model(input_ids=torch.tensor([key], device=self.loaded.device), use_cache=True, logits_to_keep=1,
                          **cache_kwarg(self.loaded.model, cache))
        if not all(type(layer) in (DynamicLayer, DynamicSlidingWindowLayer) for layer in cache.layers):
            self.max_prefix = 0  # a cache of another kind (linear attention, ...): no prefix sharing for it
            return 0, None
        kv = [(cast(torch.Tensor, layer.keys), cast(torch.Tensor, layer.values))
              for layer in cast(list[DynamicLayer], cache.layers)]
        self.prefixes[key] = kv
        while len(self.prefixes) > PREFIX_CACHE_SIZE:
            self.prefixes.popitem(last=False)
        return common, kv

    def _decode(self, jobs: list[GenJob]) -> list[Generated]:
        """One group: the shared prefix from its cache, every row's own tokens in one padded forward pass,
        then one batched step per generated token; rows leave the batch as they finish.

        Layout: all rows end at the same index; row b's real tokens are its last n_b slots and padding fills
        the slots in front of them. The cache part (the first P slots) of row b is the shared prefix shifted
        right by its padding, so the last few prefix tokens of a short row are recomputed in the input part."""
        model, device = self.loaded.model, self.loaded.device
        prompts = [job.ids for job in jobs]
        share_threads()
        prefix_len, kv = self._shared_prefix(prompts)
        ids, positions, mask, starts = _padded_rows(prompts, prefix_len, self._pad)
        cache = DynamicCache(config=model.config) if kv is None else _rows_cache(kv, starts, prefix_len, model.config)
        mask = mask.to(device)
        logits = model(input_ids=ids.to(device), attention_mask=mask, position_ids=positions.to(device),
                       use_cache=True, logits_to_keep=1, **cache_kwarg(model, cache)).logits[:, -1].float()
        return self._generate(jobs, logits, cache, mask)

    def _generate(self, jobs: list[GenJob], logits: torch.Tensor, cache: DynamicCache,
                  mask: torch.Tensor) -> list[Generated]:
        """From the prompt pass's last logits, one batched forward step per generated token; the rows that
        finish leave the cache and the mask, so later steps compute only the rows still generating."""
        tok, model, device = self.loaded.tokenizer, self.loaded.model, self.loaded.device
        answers = _Answers(jobs, device)
        next_pos = torch.tensor([len(job.ids) for job in jobs], device=device)
        while True:
            keep, next_tokens = answers.step(tok, self._special, logits)
            if not keep:
                break
            if len(keep) < len(answers.active):
                index = torch.tensor(keep, device=device)
                cache.batch_select_indices(index)
                mask, next_pos = mask[index], next_pos[index]
                answers.active = [answers.active[row] for row in keep]
            mask = torch.cat([mask, mask.new_ones((len(answers.active), 1))], dim=1)
            share_threads()
            logits = model(input_ids=torch.tensor(next_tokens, device=device)[:, None], attention_mask=mask,
                           position_ids=next_pos[:, None], use_cache=True,
                           **cache_kwarg(model, cache)).logits[:, -1].float()
            next_pos = next_pos + 1
        return answers.results(tok)


def _padded_rows(prompts: list[list[int]], prefix_len: int,
                 pad: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[int]]:
    """The input part of the first forward pass, every row ending at the same index: token ids and positions
    (the slots after the shared prefix), the attention mask over all slots, and each row's first real slot."""
    lengths = [len(p) for p in prompts]
    total = max(lengths)
    width = total - prefix_len
    ids = torch.full((len(prompts), width), pad, dtype=torch.long)
    positions = torch.zeros((len(prompts), width), dtype=torch.long)
    mask = torch.zeros((len(prompts), total), dtype=torch.long)
    starts = [total - n for n in lengths]  # index of each row's first real token
    for row, (prompt, start) in enumerate(zip(prompts, starts)):
        mask[row, start:] = 1
        first = max(start, prefix_len)  # first real token in the input part
        ids[row, first - prefix_len:] = torch.tensor(prompt[first - start:])
        positions[row, first - prefix_len:] = torch.arange(first - start, len(prompt))
    return ids, positions, mask, starts


def _rows_cache(kv: list[tuple[torch.Tensor, torch.Tensor]], starts: list[int], prefix_len: int,
                config: Any) -> DynamicCache:
    """A cache holding the shared prefix once per row, shifted right by the row's padding (its prefix tokens
    that the shift pushes past the cache part are recomputed in the input part)."""
    shifted = []
    for keys, values in kv:
        rows_k = keys.new_zeros((len(starts), *keys.shape[1:]))
        rows_v = values.new_zeros((len(starts), *values.shape[1:]))
        for row, start in enumerate(starts):
            shift = min(start, prefix_len)
            rows_k[row, :, shift:] = keys[0, :, :prefix_len - shift]
            rows_v[row, :, shift:] = values[0, :, :prefix_len - shift]
        shifted.append((rows_k, rows_v))
    return DynamicCache(ddp_cache_data=shifted, config=config)


def _seeded_generator(job: GenJob, device: Any) -> torch.Generator | None:
    """A sampling job's own generator, so its draws depend on its seed only, not on the batch it is in."""
    if job.temperature <= 0 or job.seed is None:
        return None
    gen = torch.Generator(device=device)
    gen.manual_seed(job.seed)
    return gen


class _Answers:
    """What each job of a group has generated so far, and which jobs' rows are still in the batch."""

    def __init__(self, jobs: list[GenJob], device: Any) -> None:
        self.jobs = jobs
        self.generators = [_seeded_generator(job, device) for job in jobs]
        self.new_ids: list[list[int]] = [[] for _ in jobs]
        self.generated: list[list[TokenLogprobs]] = [[] for _ in jobs]
        self.active = list(range(len(jobs)))  # job index of each row still in the batch

    def step(self, tok: Any, special: set[int], logits: torch.Tensor) -> tuple[list[int], list[int]]:
        """Pick and record each active row's next token. The rows (indices into `active`) that go on generating,
        and the tokens they feed to the next step; a row ends on a special token, max_tokens or a stop string."""
        logprobs = torch.log_softmax(logits, dim=-1)
        greedy = logits.argmax(dim=-1).tolist()  # as transformers' greedy search picks
        keep, next_tokens = [], []
        for row, b in enumerate(self.active):
            job = self.jobs[b]
            if job.temperature > 0:
                probs = torch.softmax(logits[row] / job.temperature, dim=-1)
                token = int(torch.multinomial(probs, 1, generator=self.generators[b]))
            else:
                token = greedy[row]
            if token in special:  # end-of-turn / eos: not part of the answer
                continue
            self.new_ids[b].append(token)
            self.generated[b].append(TokenLogprobs(token=tok.decode([token]), logprob=float(logprobs[row, token]),
                                                   top=top_alternatives(tok, logprobs[row], job.top_k or 0)))
            if len(self.new_ids[b]) >= job.max_tokens or (
                    job.stop and any(s in tok.decode(self.new_ids[b], skip_special_tokens=True) for s in job.stop)):
                continue
            keep.append(row)
            next_tokens.append(token)
        return keep, next_tokens

    def results(self, tok: Any) -> list[Generated]:
        return [(finish_text(tok, ids, job.stop), generated)
                for ids, generated, job in zip(self.new_ids, self.generated, self.jobs)]


def _length_groups(lengths: list[int], slack: float = 0.25, min_slack: int = 64) -> list[list[int]]:
    """Indices into `lengths`, grouped so that within a group the longest prompt is at most `slack` (or
    `min_slack` tokens) longer than the shortest: padding stays a small part of each forward pass."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    groups: list[list[int]] = []
    for i in order:
        if groups and lengths[i] - lengths[groups[-1][0]] <= max(min_slack, slack * lengths[i]):
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups
