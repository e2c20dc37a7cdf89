"""Explain features: records -> prompt -> LLM -> parsed explanation (or a failure that says why)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from activations.records import FeatureId, FeatureRecords
from activations.vocab import FailureKind, OutcomeStatus, Polarity
from explainer import formatting, sampling, snippets
from explainer.contrast import (
    Contrast,
    Negative,
    check_mode,
    choose_negatives,
    negative_text,
    no_negatives_reason,
    params_of,
)
from explainer.evidence import (
    STEERING_CHARS,
    STEERING_PROMPTS,
    EvidenceError,
    StoredSteering,
    logits_note,
    steering_note,
)
from explainer.fitting import Fit, PromptTooLong, Ranked, fit_prompt, rank_records, scale
from explainer.parsing import parse_explanation
from explainer.prompts import FEW_SHOTS, PROMPT_VERSIONS, SNIPPET_SHOTS, evidence_parts, prompt_version
from llm_client.base import LLMClient, LLMError, Usage, messages_to_prompt

FORMATS = tuple(PROMPT_VERSIONS)
POLARITIES: tuple[str, ...] = tuple(p.value for p in Polarity)
MAX_RECORDS = 20


@dataclass
class ExplanationResult:
    feature: FeatureId
    text: str | None  # None unless status is ok
    status: OutcomeStatus
    failure_reason: str | None
    raw_output: str | None  # the model's answer as it came, kept for failures too
    explainer: str  # the LLM spec
    prompt_version: str
    params: dict  # format, temperature, records shown and dropped, token counts, ...
    polarity: Polarity = Polarity.POSITIVE
    candidate: int = 0
    usage: Usage = field(default_factory=Usage)
    elapsed_s: float = 0.0
    failure_kind: FailureKind | None = None  # what a failure failed on (None when ok)

    @property
    def ok(self) -> bool:
        return self.status == OutcomeStatus.OK


def _check(fmt: str, n_candidates: int, polarity: str, temperature: float) -> None:
    if fmt not in FORMATS:
        raise ValueError(f"explainer format {fmt!r} is not one of {FORMATS}")
    if polarity not in POLARITIES:
        raise ValueError(f"polarity {polarity!r} is not one of {POLARITIES}")
    if n_candidates < 1:
        raise ValueError(f"n_candidates must be >= 1, got {n_candidates}")
    if n_candidates > 1 and temperature == 0:
        raise ValueError("n_candidates > 1 needs temperature > 0: greedy decoding gives n identical candidates")


def resolve_format(fmt: str, client: LLMClient) -> str:
    """"auto": OpenAI's token/activation pairs for chat models, snippets for base models, which copy the
    pairs prompt's first few-shot answer instead of explaining."""
    if fmt != "auto":
        return fmt
    return "token_activation_pairs" if client.capabilities.chat else "snippets"


def _few_shot_explanations(fmt: str) -> list[str]:
    return [shot.explanation for shot in (SNIPPET_SHOTS if fmt == "snippets" else FEW_SHOTS)]


@dataclass(frozen=True)
class _Settings:
    """explain()'s options, checked, with the defaults that depend on the candidates and the format filled in."""

    requested: str  # the format asked for ("auto" included)
    fmt: str  # the format the prompt is built in
    polarity: Polarity
    temperature: float
    n_few_shot: int
    max_records: int
    max_tokens: int


def _settings(client: LLMClient, fmt: str, n_candidates: int, polarity: str, temperature: float | None,
              max_tokens: int, max_records: int | None, n_few_shot: int | None, sample: str) -> _Settings:
    temperature = (0.0 if n_candidates == 1 else 1.0) if temperature is None else temperature
    _check(fmt, n_candidates, polarity, temperature)
    sampling.check_sample(sample)
    resolved = resolve_format(fmt, client)
    if max_records is None:
        max_records = snippets.MAX_RECORDS if resolved == "snippets" else MAX_RECORDS
    return _Settings(requested=fmt, fmt=resolved, polarity=Polarity(polarity), temperature=temperature,
                     n_few_shot=len(_few_shot_explanations(resolved)) if n_few_shot is None else n_few_shot,
                     max_records=max_records,
                     max_tokens=min(max_tokens, snippets.MAX_TOKENS) if resolved == "snippets" else max_tokens)


def _params(settings: _Settings, n_candidates: int, max_prompt_tokens: int, evidence: str, sample: str,
            sample_seed: int) -> dict:
    """The parameters every candidate stores; the fitted prompt's figures join them later."""
    params: dict = {"format": settings.fmt, "requested_format": settings.requested,
                    "temperature": settings.temperature, "max_tokens": settings.max_tokens,
                    "max_prompt_tokens": max_prompt_tokens, "n_candidates": n_candidates,
                    "evidence": evidence, "explainer_sample": sample}
    if evidence_parts(evidence)[1]:
        params["steering_shown"] = {"prompts": STEERING_PROMPTS, "chars": STEERING_CHARS}
    if sample in sampling.SEEDED_SAMPLES:
        params["sample_seed"] = sample_seed
    return params


def _evidence(output_logits: Mapping[str, Any] | None, output_steering: StoredSteering | None,
              negative: bool) -> str | None:
    """The output-side evidence lines the prompt shows (None: only activations); EvidenceError saying what to do."""
    lines = []
    if output_logits is not None:
        try:
            lines.append(logits_note(output_logits, negative=negative))
        except EvidenceError as exc:
            raise EvidenceError(f"{exc}: recollect the layer (autointerp collect ... --overwrite) to store it, or "
                                "explain without logits in --evidence") from None
    if output_steering is not None:
        try:
            lines.append(steering_note(output_steering.result, negative=negative))
        except EvidenceError as exc:
            raise EvidenceError(f"{exc}: steer the feature (autointerp steer ...) to store it, or explain without "
                                "steering in --evidence") from None
    return "\n".join(lines) or None


def _failed_all(result: Callable[..., ExplanationResult], n_candidates: int, started: float,
                reason: str) -> list[ExplanationResult]:
    """Every candidate failed on its input, before any LLM call."""
    return [result(text=None, status=OutcomeStatus.FAILED, failure_reason=reason, raw_output=None, candidate=c,
                   elapsed_s=time.perf_counter() - started, failure_kind=FailureKind.INPUT)
            for c in range(n_candidates)]


@dataclass(frozen=True)
class _Prompt:
    """The prompt fitted to the budget, how it is sent, and what its answers are checked against."""

    fit: Fit
    records_shown: list[str]
    chat: bool  # sent to the chat endpoint, else completed as text
    stop: list[str] | None
    echo_checks: Mapping[str, Sequence[str]]  # parse_explanation's few_shots and snippets: an answer copying one fails


def _quiet_texts(fmt: str, negatives: Sequence[Negative] | None) -> list[str] | None:
    """The counterexamples as the format shows them: cut as snippets, or whole spans of text."""
    if negatives is None:
        return None
    if fmt == "snippets":
        return [snippets.quiet_line(n.tokens, n.anchor) for n in negatives]
    return [negative_text(n.tokens) for n in negatives]


def _fitted_prompt(client: LLMClient, settings: _Settings, ranked: Ranked, evidence: str | None, show_values: bool,
                   max_prompt_tokens: int, negatives: Sequence[Negative] | None = None) -> _Prompt:
    """The ranked records on the 0..10 scale (and the contrastive mode's counterexamples, always all of them),
    built into the format's prompt and fitted to the token budget by dropping records (raises PromptTooLong when
    even the smallest prompt does not fit)."""
    fmt, negative = settings.fmt, settings.polarity == Polarity.NEGATIVE
    quiet = _quiet_texts(fmt, negatives)
    builders: dict[str, Callable[..., list[dict]]] = {
        "token_activation_pairs": formatting.token_activation_pairs, "snippets": snippets.snippets,
        "highlight": partial(formatting.highlight, with_values=show_values)}
    build = builders[fmt]
    # Snippets is a document to continue, so it always goes to the completion endpoint.
    chat = client.capabilities.chat and fmt != "snippets"
    render = messages_to_prompt if chat or fmt == "snippets" else partial(formatting.render_plain, fmt=fmt)
    labels = [r.label or f"#{i}" for i, r in enumerate(ranked.records)]
    scaled = scale(ranked)
    fit = fit_prompt(scaled, labels,
                     build=lambda recs, k: build(recs, n_few_shot=k, negative=negative, evidence=evidence,
                                                 quiet=quiet),
                     render=render, count_tokens=client.count_tokens, budget=max_prompt_tokens,
                     n_few_shot=settings.n_few_shot)
    echo_checks = {"few_shots": _few_shot_explanations(fmt)[:fit.n_few_shot],
                   "snippets": [*snippets.snippet_lines(scaled[:fit.n_records]), *(quiet or ())]
                   if fmt == "snippets" else ()}
    return _Prompt(fit=fit, records_shown=labels[:fit.n_records], chat=chat,
                   stop=snippets.STOP if fmt == "snippets" else None, echo_checks=echo_checks)


async def _candidate(client: LLMClient, prompt: _Prompt, settings: _Settings, result: Callable[..., ExplanationResult],
                     candidate: int, n_candidates: int) -> ExplanationResult:
    """One candidate: the LLM's answer to the prompt, parsed; a failed call or an unusable answer fails it."""
    seed = candidate if n_candidates > 1 else None
    t0 = time.perf_counter()
    try:
        if prompt.chat:
            completion = await client.chat(prompt.fit.messages, max_tokens=settings.max_tokens,
                                           temperature=settings.temperature, seed=seed)
        else:
            completion = await client.complete(prompt.fit.prompt, max_tokens=settings.max_tokens,
                                               temperature=settings.temperature, stop=prompt.stop, seed=seed)
    except LLMError as exc:
        return result(text=None, status=OutcomeStatus.FAILED, failure_reason=f"LLM call failed: {exc.reason}",
                      raw_output=None, candidate=candidate, elapsed_s=time.perf_counter() - t0,
                      failure_kind=FailureKind.ENDPOINT if exc.endpoint else FailureKind.ANSWER)
    parsed = parse_explanation(completion.text, settings.fmt, **prompt.echo_checks)
    return result(text=parsed.text, status=OutcomeStatus.OK if parsed.text is not None else OutcomeStatus.FAILED,
                  failure_reason=parsed.failure_reason, raw_output=completion.text, candidate=candidate,
                  usage=completion.usage, elapsed_s=time.perf_counter() - t0,
                  failure_kind=None if parsed.text is not None else FailureKind.ANSWER)


def _negatives(contrast: Contrast | None, feature_records: FeatureRecords, ranked: Ranked,
               negative: bool) -> list[Negative] | None:
    """The contrastive mode's counterexamples on the prompt's scale (None in the plain mode)."""
    if contrast is None:
        return None
    return choose_negatives(contrast, feature_records.records, negative=negative, max_activation=ranked.max_activation)


async def explain(client: LLMClient, feature_records: FeatureRecords, *, fmt: str = "auto",
                  n_candidates: int = 1, polarity: str = Polarity.POSITIVE, max_prompt_tokens: int = 3000,
                  max_tokens: int = 60, temperature: float | None = None, max_records: int | None = None,
                  n_few_shot: int | None = None, show_values: bool = True,
                  output_logits: Mapping[str, Any] | None = None, sample: str = sampling.DEFAULT_SAMPLE,
                  sample_seed: int = 0, contrast: Contrast | None = None,
                  output_steering: StoredSteering | None = None) -> list[ExplanationResult]:
    """n candidate explanations of one feature from its train-split records, one result per candidate.

    temperature defaults to 0 for one candidate and 1.0 for several (each candidate sends its index as
    the seed, so candidates differ and each is cached apart). n_few_shot defaults to all of the format's
    examples, max_records to 20 (snippets: snippets.MAX_RECORDS); the snippets format answers in one line
    of at most snippets.MAX_TOKENS tokens. `output_logits` (the feature's stored logit lens; {} when asked for
    but not stored) adds a line naming the tokens it promotes and suppresses, and the prompt version says so;
    unusable evidence fails every candidate with the reason, without a call. `sample` chooses which train records
    the prompt shows (explainer.sampling; `sample_seed` seeds the draws of all but "top"). `contrast` (the
    contrastive mode, explainer.contrast) adds counterexamples where the feature stays quiet, under the format's
    contrastive prompt version; a feature with none fails every candidate with the reason, without a call.
    `output_steering` (the feature's stored steering, its result None when not stored) adds its steered beside
    its unsteered continuations, as the logit lens is added."""
    settings = _settings(client, fmt, n_candidates, polarity, temperature, max_tokens, max_records, n_few_shot,
                         sample)
    if contrast is not None:
        check_mode("contrastive", contrast.n_negatives)
    negative = settings.polarity == Polarity.NEGATIVE
    started = time.perf_counter()
    evidence_name = "+".join(["activations", *(["logits"] if output_logits is not None else []),
                              *(["steering"] if output_steering is not None else [])])
    params = _params(settings, n_candidates, max_prompt_tokens, evidence_name, sample, sample_seed)
    version = prompt_version(settings.fmt, params["evidence"], sample, "plain" if contrast is None else "contrastive")
    result = partial(ExplanationResult, feature=feature_records.feature, explainer=client.spec,
                     prompt_version=version, params=params, polarity=settings.polarity)
    failed_all = partial(_failed_all, result, n_candidates, started)
    try:
        evidence = _evidence(output_logits, output_steering, negative)
    except EvidenceError as exc:
        return failed_all(str(exc))
    ranked = rank_records(feature_records, polarity=settings.polarity, max_records=settings.max_records,
                          sample=sample, seed=sample_seed)
    if not ranked.records:
        side = "below zero" if negative else "above zero"
        return failed_all(f"no train-split record where the feature goes {side} in the {sample!r} explainer sample: "
                          "nothing to explain")
    negatives = _negatives(contrast, feature_records, ranked, negative)
    if contrast is not None:
        params.update(params_of(contrast, negatives or []))
        if not negatives:
            return failed_all(no_negatives_reason(contrast))
    try:
        prompt = _fitted_prompt(client, settings, ranked, evidence, show_values, max_prompt_tokens, negatives)
    except PromptTooLong as exc:
        return failed_all(str(exc))
    params.update(records_shown=prompt.records_shown, records_dropped=prompt.fit.dropped,
                  n_few_shot=prompt.fit.n_few_shot, prompt_tokens_estimate=prompt.fit.prompt_tokens,
                  max_activation=ranked.max_activation, chat=prompt.chat)
    return list(await asyncio.gather(*(_candidate(client, prompt, settings, result, c, n_candidates)
                                       for c in range(n_candidates))))
