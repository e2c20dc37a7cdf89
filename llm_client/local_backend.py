"""An in-process transformers model behind the LLMClient interface (`local:<name>`).

Generation uses the tokenizer's chat template when it has one (smollm2-135m) and a plain prompt otherwise
(gemma-3-270m); greedy unless a temperature is given. Torch work runs in worker threads behind one lock, so
the event loop stays free. `next_token_distributions` gives the full next-token distribution at chosen
prompt positions, for simulators that read true probabilities.

Generate requests are batched across the features in flight: a `MicroBatcher` gathers the requests that
arrive together (up to `max_batch`) and one worker thread decodes them as one batch (llm_client.local_batch,
which also keeps the shared few-shot prefix's KV cache). `max_batch=1` keeps the unbatched path: transformers'
`generate`, one request at a time.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar, cast

import torch
from transformers import DynamicCache, StoppingCriteria, StoppingCriteriaList

from llm_client.base import (
    Capabilities,
    Completion,
    LLMError,
    TokenLogprobs,
    Usage,
    check_messages,
    messages_to_prompt,
)
from llm_client.batching import MicroBatcher, compute_slot, thread_budget
from llm_client.core import ClientCore
from llm_client.local_batch import BatchDecoder, Generated, GenJob, finish_text, top_alternatives
from llm_client.local_models import LoadedModel, load_model
from llm_client.transformers_compat import cache_kwarg

T = TypeVar("T")

DEFAULT_MAX_BATCH = 4  # generate requests per batch; 1 = the unbatched path (one `generate` at a time)
MAX_BATCH = DEFAULT_MAX_BATCH  # what new clients use unless told otherwise (benchmarks switch it)


class _StopOnText(StoppingCriteria):
    """Stop once the generated text holds a stop string. transformers' own `stop_strings` precomputes a
    table over the whole vocabulary on every call (seconds for Gemma's 262k tokens); decoding the few
    generated tokens each step costs next to nothing."""

    def __init__(self, tokenizer: Any, stops: list[str], prompt_len: int) -> None:
        self.tokenizer, self.stops, self.prompt_len = tokenizer, stops, prompt_len

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: Any) -> torch.BoolTensor:
        done = [any(s in self.tokenizer.decode(row[self.prompt_len:], skip_special_tokens=True) for s in self.stops)
                for row in input_ids]
        # transformers annotates the legacy BoolTensor type; any bool tensor is what it takes.
        return cast(torch.BoolTensor, torch.tensor(done, dtype=torch.bool, device=input_ids.device))


class LocalClient(ClientCore):
    backend = "local"

    def __init__(self, name: str, *, device: str = "auto", cache_path: str | None = None,
                 max_batch: int | None = None) -> None:
        super().__init__(cache_path)
        self.model = name
        self.loaded: LoadedModel = load_model(name, device=device)
        self.capabilities = Capabilities(chat=bool(getattr(self.loaded.tokenizer, "chat_template", None)),
                                         prompt_logprobs=True, top_logprobs=True)
        self._lock = threading.Lock()
        self.max_batch = MAX_BATCH if max_batch is None else max_batch
        self._decoder = BatchDecoder(self.loaded, self._lock)
        self._batcher: MicroBatcher[GenJob, Generated] | None = None
        if self.max_batch > 1:
            self._batcher = MicroBatcher(self._decoder.run, max_batch=self.max_batch, name=f"generate-{name}")
            thread_budget()  # taken here, from torch's setting in the thread that builds the client

    @property
    def batch_sizes(self) -> list[int]:
        """Sizes of the generate batches run so far (empty on the unbatched path)."""
        return self._batcher.batch_sizes if self._batcher is not None else []

    def count_tokens(self, text: str) -> int:
        return len(self.loaded.tokenizer(text)["input_ids"])

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        batched = self._batcher is not None

        def locked() -> T:
            with self._lock, torch.inference_mode():
                if not batched:
                    return fn(*args)
                with compute_slot():
                    return fn(*args)

        return await asyncio.to_thread(locked)

    async def _generation(self, ids: list[int], max_tokens: int, temperature: float, top_k: int | None,
                          stop: list[str] | None, seed: int | None) -> Generated:
        if self._batcher is None:
            return await self._run(self._generate, ids, max_tokens, temperature, top_k, stop, seed)
        return await self._batcher.submit(GenJob(ids, max_tokens, temperature, top_k, stop, seed))

    async def aclose(self) -> None:
        if self._batcher is not None:
            await asyncio.to_thread(self._batcher.close)  # its model thread must not outlive the run
        await super().aclose()

    # --- the interface ---------------------------------------------------------------------------------
    async def chat(self, messages: list[dict], *, max_tokens: int = 256, temperature: float = 0.0,
                   top_logprobs: int | None = None, stop: list[str] | None = None,
                   seed: int | None = None) -> Completion:
        check_messages(messages)
        request = {"endpoint": "chat", "messages": messages, "max_tokens": max_tokens, "temperature": temperature,
                   "top_logprobs": top_logprobs, "stop": stop, "seed": seed}

        async def produce() -> Completion:
            self._ledger.attempt(retry=False)
            ids = self._chat_ids(messages)
            text, generated = await self._generation(ids, max_tokens, temperature, top_logprobs, stop, seed)
            return Completion(text=text, usage=self._usage(len(ids), generated),
                              generated_logprobs=generated if top_logprobs else None)

        return await self._call(request, produce)

    async def complete(self, prompt: str, *, max_tokens: int = 256, temperature: float = 0.0,
                       echo: bool = False, logprobs: int | None = None, stop: list[str] | None = None,
                       seed: int | None = None) -> Completion:
        request = {"endpoint": "completions", "prompt": prompt, "max_tokens": max_tokens, "temperature": temperature,
                   "echo": echo, "logprobs": logprobs, "stop": stop, "seed": seed}

        async def produce() -> Completion:
            self._ledger.attempt(retry=False)
            enc = self.loaded.tokenizer(prompt, return_offsets_mapping=True)
            ids = list(enc["input_ids"])
            text, generated = await self._generation(ids, max_tokens, temperature, logprobs, stop, seed)
            completion = Completion(text=text, usage=self._usage(len(ids), generated),
                                    generated_logprobs=generated if logprobs is not None else None)
            if echo and logprobs is not None:
                completion.prompt_logprobs = await self._run(self._prompt_logprobs, ids, logprobs)
                starts = [start for start, _ in enc["offset_mapping"]]
                completion.text_offsets = starts + self._generated_offsets(len(prompt), generated)
            return completion

        return await self._call(request, produce)

    async def choice_slots(self, messages: list[dict], *, choices: Sequence[str], n_slots: int, opener: str = "[",
                           separator: str = ",", closer: str = "]") -> Completion:
        """See llm_client.base.ChoiceSlotsClient: a teacher-forced list answer, one distribution per slot."""
        check_messages(messages)
        if n_slots < 1 or len(choices) < 2:
            raise ValueError(f"choice_slots needs n_slots >= 1 and at least two choices (got {n_slots}, {choices})")
        request = {"endpoint": "choice_slots", "messages": messages, "choices": list(choices), "n_slots": n_slots,
                   "opener": opener, "separator": separator, "closer": closer}

        async def produce() -> Completion:
            self._ledger.attempt(retry=False)
            ids = self._chat_ids(messages)
            return await self._run(self._choice_slots, ids, list(choices), n_slots, opener, separator, closer)

        return await self._call(request, produce)

    async def next_token_distributions(self, prompt_ids: list[int], positions: list[int]) -> torch.Tensor:
        """Probabilities over the vocabulary of the token after each of `positions` (float32, on CPU)."""
        bad = [p for p in positions if not 0 <= p < len(prompt_ids)]
        if bad:
            raise ValueError(f"positions {bad[:5]} are outside the prompt of {len(prompt_ids)} tokens")
        return await self._run(self._distributions, prompt_ids, positions)

    # --- torch work (worker thread, under the lock) -----------------------------------------------------
    def _chat_ids(self, messages: list[dict]) -> list[int]:
        tok = self.loaded.tokenizer
        if self.capabilities.chat:
            text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            return list(tok(text, add_special_tokens=False)["input_ids"])  # the template wrote BOS itself
        return list(tok(messages_to_prompt(messages))["input_ids"])

    def _logits(self, ids: list[int], keep: torch.Tensor | int = 0) -> torch.Tensor:
        input_ids = torch.tensor([ids], device=self.loaded.device)
        return self.loaded.model(input_ids=input_ids, logits_to_keep=keep).logits[0].float()

    def _distributions(self, ids: list[int], positions: list[int]) -> torch.Tensor:
        keep = torch.tensor(positions, device=self.loaded.device)
        return torch.softmax(self._logits(ids, keep), dim=-1).cpu()

    def _prompt_logprobs(self, ids: list[int], k: int) -> list[TokenLogprobs]:
        """Logprob of each prompt token given the ones before it (full logits: fine for record-sized prompts)."""
        logprobs = torch.log_softmax(self._logits(ids), dim=-1)
        decode = self.loaded.tokenizer.decode
        rows = [TokenLogprobs(token=decode([ids[0]]), logprob=None)]
        for pos in range(1, len(ids)):
            prev = logprobs[pos - 1]
            rows.append(TokenLogprobs(token=decode([ids[pos]]), logprob=float(prev[ids[pos]]),
                                      top=top_alternatives(self.loaded.tokenizer, prev, k)))
        return rows

    def _single_token(self, text: str) -> int:
        ids = self.loaded.tokenizer(text, add_special_tokens=False).input_ids
        if len(ids) != 1:
            raise LLMError(f"local model {self.model}: choice {text!r} is {len(ids)} tokens, not one; "
                           "slot answers need single-token choices", retryable=False)
        return int(ids[0])

    def _choice_slots(self, ids: list[int], choices: list[str], n_slots: int, opener: str, separator: str,
                      closer: str) -> Completion:
        """Prompt and opener in one forward pass, then per slot one step: the chosen token and the separator
        (the KV cache keeps the rest), so a slot costs a few tokens, not a prompt."""
        tok, model, device = self.loaded.tokenizer, self.loaded.model, self.loaded.device
        choice_ids = [self._single_token(c) for c in choices]
        separator_ids = list(tok(separator, add_special_tokens=False).input_ids)
        step = ids + list(tok(opener, add_special_tokens=False).input_ids)
        cache = DynamicCache(config=model.config)
        cache_arg = cache_kwarg(model, cache)
        rows: list[TokenLogprobs] = []
        fed = 0
        for slot in range(n_slots):
            logits = model(input_ids=torch.tensor([step], device=device), use_cache=True, logits_to_keep=1,
                           **cache_arg).logits[0, -1].float()
            fed += len(step)
            logprobs = torch.log_softmax(logits, dim=-1)
            values = {c: float(logprobs[i]) for c, i in zip(choices, choice_ids)}
            best = max(choices, key=lambda c: values[c])
            rows.append(TokenLogprobs(token=best, logprob=values[best], top=values))
            step = [choice_ids[choices.index(best)]] + (separator_ids if slot < n_slots - 1 else [])
        text = opener + separator.join(r.token for r in rows) + closer
        return Completion(text=text, usage=Usage(prompt_tokens=len(ids), completion_tokens=fed - len(ids) + 1,
                                                 cost_usd=0.0), generated_logprobs=rows)

    def _generate(self, ids: list[int], max_tokens: int, temperature: float, top_k: int | None,
                  stop: list[str] | None, seed: int | None) -> tuple[str, list[TokenLogprobs]]:
        if max_tokens <= 0:
            return "", []
        tok = self.loaded.tokenizer
        sample = temperature > 0
        if sample and seed is not None:
            torch.manual_seed(seed)  # safe: the lock makes this thread the only torch user
        kwargs: dict[str, Any] = {"do_sample": sample, "temperature": temperature if sample else None,
                                  "top_p": None, "top_k": None}
        if stop:
            kwargs["stopping_criteria"] = StoppingCriteriaList([_StopOnText(tok, stop, len(ids))])
        input_ids = torch.tensor([ids], device=self.loaded.device)
        out = self.loaded.model.generate(
            input_ids=input_ids, attention_mask=torch.ones_like(input_ids), max_new_tokens=max_tokens,
            pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id,
            return_dict_in_generate=True, output_logits=True, **kwargs,
        )
        new_ids = out.sequences[0, len(ids):].tolist()
        special = set(tok.all_special_ids)
        generated = []
        for step, token_id in enumerate(new_ids):
            if token_id in special:  # end-of-turn / eos: not part of the answer
                break
            logprobs = torch.log_softmax(out.logits[step][0].float(), dim=-1)
            generated.append(TokenLogprobs(token=tok.decode([token_id]), logprob=float(logprobs[token_id]),
                                           top=top_alternatives(tok, logprobs, top_k or 0)))
        return finish_text(tok, new_ids[: len(generated)], stop), generated

    @staticmethod
    def _generated_offsets(start: int, generated: list[TokenLogprobs]) -> list[int]:
        offsets = []
        for g in generated:
            offsets.append(start)
            start += len(g.token)
        return offsets

    @staticmethod
    def _usage(n_prompt: int, generated: list[TokenLogprobs]) -> Usage:
        # In-process compute is not billed: the cost is a true zero, not an unknown.
        return Usage(prompt_tokens=n_prompt, completion_tokens=len(generated), cost_usd=0.0)


