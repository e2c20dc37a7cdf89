"""All-at-once logprob simulator on an OpenAI-compatible `/v1/completions` endpoint (vLLM style): the whole
prompt is echoed back with the top logprobs of every prompt token, and the alternatives at each slot are the
model's distribution over the activation value there.

Every record's prompt is the explanation's prefix followed by that record's lines, so the prompts of one
simulation start identically (the server's prefix cache computes the prefix once). A client that speaks
`PromptRowsClient` (the OpenAI-compatible one) sends them as one request with a list of prompts where the
endpoint takes lists, else one request per record, and keeps only the slot rows; any other client gets one
`complete(echo=True)` per record, run concurrently. The distributions are the same either way.

Value 10 is read from a "10" alternative, which only a tokenizer with a single-token "10" has. The endpoint's
tokenizer is unknown, but every prompt shows it: the few-shot lines hold a `token<TAB>10` line, so one more
echoed row (no extra request) tells how this endpoint writes 10. Where it splits ("1" then "0": Gemma, Qwen,
Mistral, Llama 2), P("1") at a slot mixes values 1 and 10, and separating them would take a prompt per slot
with "1" typed there; the simulator fails with one error that points to json: rather than read 10 as 1."""

from __future__ import annotations

import asyncio
import bisect
from collections.abc import Sequence

import numpy as np

from activations.errors import UserError
from llm_client import ECHO_MAX_TOKENS, Completion, LLMClient, LLMError, PromptRowsClient
from simulator.base import MAX_VALUE, SequenceSimulation, SimulationError, Simulator, check_inputs
from simulator.prompts import FEW_SHOT, SLOT, FewShotExample, explanation_header, prefix_text, record_text
from simulator.values import distributions_from_tops

_VALUES = np.arange(MAX_VALUE + 1, dtype=np.float64)
# A server that cannot echo a prompt with its top logprobs fails every attempt alike, so a failed echo request
# says what the endpoint must do.
ECHO_HINT = ("; logprob: needs /v1/completions to echo the prompt with top logprobs (echo, logprobs, max_tokens=1; "
             "vLLM and llama.cpp do); if this endpoint cannot, simulate with json: instead")


def ten_is_one_token(completion: Completion, at: int) -> bool:
    """Whether the echoed token that holds the char `at` (the "1" of a "10" in the prompt) holds the "0" too."""
    rows, offsets = completion.prompt_logprobs or [], completion.text_offsets or []
    j = bisect.bisect_right(offsets[: len(rows)], at) - 1
    return j >= 0 and rows[j].token[at - offsets[j]:].startswith(str(MAX_VALUE))


def slot_tops(completion: Completion, slot_offsets: list[int], tokens: Sequence[str],
              where: str) -> list[dict[str, float]]:
    """Find the echoed token at each slot by its char offset and take its top alternatives. The server's
    tokenizer may merge the TAB into the slot token (fine: only whitespace precedes the slot inside it), but
    a token that starts inside the subject token's text cannot be aligned: that is a failure, not a guess."""
    rows, offsets = completion.prompt_logprobs, completion.text_offsets
    if not rows or offsets is None:
        raise SimulationError(f"{where}: the endpoint returned no prompt logprobs; logprob: needs a "
                              "/v1/completions endpoint that supports echo with logprobs (vLLM does); "
                              "for chat-only endpoints use json:")
    starts = offsets[: len(rows)]
    tops = []
    for n, (slot, token) in enumerate(zip(slot_offsets, tokens)):
        j = bisect.bisect_right(starts, slot) - 1
        inside = rows[j].token if j >= 0 else ""
        before, after = inside[: slot - starts[j]] if j >= 0 else "", inside[slot - starts[j]:] if j >= 0 else ""
        if j < 0 or before.strip() or not after or not (after.startswith(SLOT) or SLOT.startswith(after.rstrip())):
            raise SimulationError(f"{where}, token {n} ({token!r}): cannot find the activation slot among the "
                                  f"echoed tokens (the token there is {inside!r}); the endpoint's tokenizer merges "
                                  "it with its neighbours")
        if not rows[j].top:
            raise SimulationError(f"{where}, token {n} ({token!r}): the endpoint gave no top logprobs at the slot")
        tops.append(rows[j].top)
    return tops


class RemoteLogprobSimulator(Simulator):
    def __init__(self, client: LLMClient, *, top_k: int = 20, examples: tuple[FewShotExample, ...] = FEW_SHOT) -> None:
        if not client.capabilities.prompt_logprobs:
            raise UserError(f"simulator logprob:{client.spec}: this LLM cannot return prompt logprobs (echo); "
                             f"use json:{client.spec} instead")
        self.client = client
        self.spec = f"logprob:{client.spec}"
        self.top_k = top_k
        self.examples = examples
        self._rows_client = client if isinstance(client, PromptRowsClient) else None
        few_shot = prefix_text("x", examples)
        # the "1" of the first value 10 in the few-shot lines (ahead of the explanation, so the same in every prompt)
        self._ten_at = few_shot.find(f"\t{MAX_VALUE}\n") + 1
        if not 0 < self._ten_at < few_shot.rindex(explanation_header(len(examples) + 1, "x")):
            raise ValueError(f"simulator {self.spec}: the few-shot examples show no activation {MAX_VALUE}; the "
                             f"simulator reads from one how the endpoint writes {MAX_VALUE}")

    async def _one(self, prompt: str, index: int) -> Completion:
        try:
            return await self.client.complete(prompt, max_tokens=ECHO_MAX_TOKENS, echo=True, logprobs=self.top_k)
        except LLMError as exc:
            raise SimulationError(f"record {index}: the LLM call failed: {exc.reason}{ECHO_HINT}") from exc

    async def _completions(self, prompts: list[str], slots: list[list[int]]) -> list[Completion]:
        if self._rows_client is None:
            return list(await asyncio.gather(*(self._one(p, i) for i, p in enumerate(prompts))))
        try:  # the first prompt's "10" row tells how the endpoint writes 10 (_check_ten)
            return await self._rows_client.prompt_rows(prompts, top_logprobs=self.top_k,
                                                       rows_at=[[self._ten_at, *slots[0]], *slots[1:]])
        except LLMError as exc:
            where = "record 0" if len(prompts) == 1 else f"records 0-{len(prompts) - 1}"
            raise SimulationError(f"{where}: the LLM call failed: {exc.reason}{ECHO_HINT}") from exc

    def _check_ten(self, completion: Completion) -> None:
        if not ten_is_one_token(completion, self._ten_at):
            raise SimulationError(f"{self.spec}: the endpoint's tokenizer writes \"10\" as \"1\" then \"0\" (as Gemma, "
                                  "Qwen, Mistral and Llama 2 do), so its top logprobs at a slot cannot tell activation "
                                  f"10 from 1; simulate with json:{self.client.spec} instead, or with "
                                  "logprob:local:<model>, which reads 10 from \"1\" then \"0\"")

    async def simulate(self, explanation: str, records: Sequence[Sequence[str]]) -> list[SequenceSimulation]:
        check_inputs(explanation, records)
        prefix = prefix_text(explanation, self.examples)
        prompts, slots = [], []
        for tokens in records:
            text, offsets = record_text(list(tokens))
            prompts.append(prefix + text)
            slots.append([len(prefix) + s for s in offsets])
        completions = await self._completions(prompts, slots)
        # Every record's slots are read in one pass: numpy's fixed cost per call is paid once per simulation.
        tops = [top for i, (tokens, completion, at) in enumerate(zip(records, completions, slots))
                for top in slot_tops(completion, at, tokens, f"record {i}")]
        self._check_ten(completions[0])
        firsts = np.cumsum([0] + [len(t) for t in records])

        def where(flat: int) -> str:
            i = int(np.searchsorted(firsts, flat, side="right")) - 1
            n = flat - int(firsts[i])
            return f"record {i}, token {n} ({records[i][n]!r}), top {self.top_k} alternatives"

        dists = distributions_from_tops(tops, where)
        expected = (dists @ _VALUES).tolist()
        return [SequenceSimulation(list(tokens), expected[firsts[i]:firsts[i + 1]], dists[firsts[i]:firsts[i + 1]])
                for i, tokens in enumerate(records)]
