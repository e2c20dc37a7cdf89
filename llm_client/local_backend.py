"""An in-process transformers model behind the LLMClient interface (`local:<name>`).

Generation uses the tokenizer's chat template when it has one (smollm2-135m) and a plain prompt otherwise
(gemma-3-270m); greedy unless a temperature is given. Torch work runs in a worker thread behind one lock,
so the event loop stays free and the model sees one request at a time. `next_token_distributions` gives
the full next-token distribution at chosen prompt positions, for simulators that read true probabilities.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any, TypeVar, cast

import torch
from transformers import StoppingCriteria, StoppingCriteriaList

from llm_client.base import Capabilities, Completion, TokenLogprobs, Usage, check_messages, messages_to_prompt
from llm_client.core import ClientCore
from llm_client.local_models import LoadedModel, load_model

T = TypeVar("T")


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

    def __init__(self, name: str, *, device: str = "auto", cache_path: str | None = None) -> None:
        super().__init__(cache_path)
        self.model = name
        self.loaded: LoadedModel = load_model(name, device=device)
        self.capabilities = Capabilities(chat=bool(getattr(self.loaded.tokenizer, "chat_template", None)),
                                         prompt_logprobs=True, top_logprobs=True)
        self._lock = threading.Lock()

    def count_tokens(self, text: str) -> int:
        return len(self.loaded.tokenizer(text)["input_ids"])

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        def locked() -> T:
            with self._lock, torch.inference_mode():
                return fn(*args)

        return await asyncio.to_thread(locked)

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
            text, generated = await self._run(self._generate, ids, max_tokens, temperature, top_logprobs, stop, seed)
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
            text, generated = await self._run(self._generate, ids, max_tokens, temperature, logprobs, stop, seed)
            completion = Completion(text=text, usage=self._usage(len(ids), generated),
                                    generated_logprobs=generated if logprobs is not None else None)
            if echo and logprobs is not None:
                completion.prompt_logprobs = await self._run(self._prompt_logprobs, ids, logprobs)
                starts = [start for start, _ in enc["offset_mapping"]]
                completion.text_offsets = starts + self._generated_offsets(len(prompt), generated)
            return completion

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

    def _top(self, logprobs: torch.Tensor, k: int) -> dict[str, float]:
        if k <= 0:
            return {}
        values, indices = logprobs.topk(k)
        decode = self.loaded.tokenizer.decode
        return {decode([int(i)]): float(v) for v, i in zip(values, indices)}

    def _prompt_logprobs(self, ids: list[int], k: int) -> list[TokenLogprobs]:
        """Logprob of each prompt token given the ones before it (full logits: fine for record-sized prompts)."""
        logprobs = torch.log_softmax(self._logits(ids), dim=-1)
        decode = self.loaded.tokenizer.decode
        rows = [TokenLogprobs(token=decode([ids[0]]), logprob=None)]
        for pos in range(1, len(ids)):
            prev = logprobs[pos - 1]
            rows.append(TokenLogprobs(token=decode([ids[pos]]), logprob=float(prev[ids[pos]]), top=self._top(prev, k)))
        return rows

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
                                           top=self._top(logprobs, top_k or 0)))
        text = tok.decode(new_ids[: len(generated)], skip_special_tokens=True)
        for s in stop or []:  # OpenAI semantics: the stop string itself is not returned
            if s in text:
                text = text[: text.index(s)]
        return text, generated

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
