"""The judge-free steering score: how much steering a feature raises the subject model's own belief in the
explanation, per unit of KL.

As delphi's intervention scorer (EleutherAI/delphi pull request #151, after Paulo et al. 2024, appendix G.1)
defines it: each continuation, prompt included, is framed as a passage followed by `The above passage contains
an amplified amount of "`, and the subject model (unsteered) gives the log-probability of the explanation and
its closing quote after it. Per prompt, the gain is that log-probability after the steered continuation minus its
mean after the prompt's unsteered continuations; the score is the mean gain over the prompts divided by the KL
the feature was steered to (nats of explanation per nat of KL). An explanation of what steering amplifies is more
likely after passages it amplified; one of something else gains nothing.
"""

from __future__ import annotations

from typing import Any

import torch

from activations.steering_results import SteeringResult
from activations.vocab import InterventionSubset, ScoreMethod, ScoreRole
from scorer.metrics import ScoreValue

FRAMING_VERSION = "amplified-passage-v1"
STEERING_SUBSET = InterventionSubset.NEUTRAL.value  # the one subset steering scores are stored on
BATCH = 16  # framed passages per forward pass


def framed(passage: str, explanation: str) -> tuple[str, str]:
    """(context, target): the log-probability of `target` after `context` is what is measured."""
    return f"<PASSAGE>\n{passage}\nThe above passage contains an amplified amount of \"", f"{explanation}\""


def explanation_logprobs(model: Any, tokenizer: Any, passages: list[str], explanation: str) -> list[float]:
    """Per passage, the summed log-probability of the framed explanation's tokens (the unsteered model). Rows are
    left padded, so the explanation is the last tokens of every row and only those positions' logits are made."""
    device = next(model.parameters()).device
    target = tokenizer(framed("", explanation)[1], add_special_tokens=False).input_ids
    if not target:
        raise ValueError("the explanation has no tokens")
    wanted = torch.tensor(target, device=device)
    out: list[float] = []
    for start in range(0, len(passages), BATCH):
        rows = [tokenizer(framed(p, explanation)[0]).input_ids + target for p in passages[start:start + BATCH]]
        width = max(len(r) for r in rows)
        ids = torch.tensor([[0] * (width - len(r)) + r for r in rows], device=device)
        mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows], device=device)
        with torch.inference_mode():
            logits = model(input_ids=ids, attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp(min=0),
                           use_cache=False, logits_to_keep=len(target) + 1).logits.float()
        # logits[:, j] predicts the token after kept position j: the last len(target) tokens are the explanation's.
        logprobs = torch.log_softmax(logits[:, :-1, :], dim=-1)
        out.extend(logprobs.gather(-1, wanted.expand(len(rows), -1).unsqueeze(-1)).squeeze(-1).sum(-1).tolist())
    return out


def steering_logprob_gain(model: Any, tokenizer: Any, result: SteeringResult, explanation: str,
                          role: ScoreRole = ScoreRole.OWN) -> ScoreValue:
    """The score of `explanation` on a feature's steering `result` (see the module); details keep the mean
    log-probabilities after steered and unsteered passages and the per-prompt gains."""
    n = len(result.unsteered[0]) if result.unsteered else 0
    passages = [p + s for p, s in zip(result.prompts, result.steered)]
    passages += [p + u for p, row in zip(result.prompts, result.unsteered) for u in row]
    if not explanation.strip():
        return ScoreValue(ScoreMethod.STEERING_LOGPROB_GAIN, None, "the explanation is empty",
                          subset=STEERING_SUBSET, role=role)
    logps = explanation_logprobs(model, tokenizer, passages, explanation)
    k = len(result.prompts)
    steered_lp, unsteered_lp = logps[:k], logps[k:]
    gains = [steered_lp[i] - sum(unsteered_lp[i * n:(i + 1) * n]) / n for i in range(k)]
    value = sum(gains) / k / result.kl
    details = {"steered_logprob": sum(steered_lp) / k, "unsteered_logprob": sum(unsteered_lp) / len(unsteered_lp),
               "gains": [round(g, 4) for g in gains], "kl": result.kl, "strength": result.strength,
               "framing": FRAMING_VERSION}
    return ScoreValue(ScoreMethod.STEERING_LOGPROB_GAIN, value, None, subset=STEERING_SUBSET, role=role,
                      n_records=k, details=details)
