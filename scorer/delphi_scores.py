"""Scores of a delphi classifier score file (per-example judge results), under this project's method names where
delphi's definition is this project's (docs/scorers.md, "How each score relates to delphi's"):

- balanced accuracy: (TPR + TNR) / 2 of the judge's predictions, examples whose answer failed (prediction null)
  left out and counted, as delphi's `compute_confusion` / `compute_classification_metrics` do;
- AUROC: of P(1) against the true label over the examples with a probability, as delphi's `compute_auc`
  (`roc_auc_score`); undefined with its reason when the run kept no probabilities (log_probs off).

Which subset a file scores follows from how delphi built its negatives: detection against random windows ->
`random`, against neighbours' windows -> `neighbours`; fuzzing with `fuzz_type="active"` (wrong marks on the
activating examples) -> `random`, default fuzzing on neighbours' windows -> `neighbours`. delphi's other settings
(FAISS negatives; default fuzzing on random text) match no method here, so they are not imported as scores.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from activations.importers.delphi_run import DelphiExample
from activations.vocab import ClassificationSubset
from scorer.binary_metrics import auroc, balanced_accuracy
from scorer.classification import METHODS
from scorer.metrics import ScoreValue

_KIND = {"detection": "detection", "fuzz": "fuzzing"}  # delphi's scorer name -> this project's


def delphi_subset(scorer: str, run_config: dict[str, Any]) -> tuple[str, ClassificationSubset] | str:
    """(our scorer kind, subset) that delphi's scorer under this run's settings measures, or why none does."""
    kind = _KIND.get(scorer)
    if kind is None:
        return f"delphi's {scorer!r} scorer has no per-example classifier results to score here"
    source = (run_config.get("constructor_cfg") or {}).get("non_activating_source", "random")
    if kind == "fuzzing" and run_config.get("fuzz_type", "default") == "active":
        return kind, ClassificationSubset.RANDOM
    if source == "neighbours":
        return kind, ClassificationSubset.NEIGHBOURS
    if source == "FAISS":
        return "negatives chosen by FAISS similarity (non_activating_source=FAISS) match no subset here"
    if kind == "fuzzing":
        return ("default fuzzing on random non-activating text (fuzz_type=default, non_activating_source=random) "
                "matches no method here: the text alone gives the answer away")
    return kind, ClassificationSubset.RANDOM


def delphi_scorer_config(scorer: str, run_config: dict[str, Any]) -> dict[str, Any]:
    """The run settings that change a delphi classifier score: its configuration, stored with its hash."""
    keys = ("explainer_model", "explainer_provider", "num_examples_per_scorer_prompt", "log_probs", "seed")
    return {"source": "delphi", "scorer": scorer, **{k: run_config.get(k) for k in keys},
            "fuzz_type": run_config.get("fuzz_type", "default") if scorer == "fuzz" else None,
            "constructor_cfg": run_config.get("constructor_cfg"), "sampler_cfg": run_config.get("sampler_cfg")}


def delphi_scores(kind: str, subset: ClassificationSubset, examples: Sequence[DelphiExample], *,
                  seed: int = 0) -> list[ScoreValue]:
    """Balanced accuracy and AUROC of one score file's examples (both undefined, with why, when a class is empty)."""
    ba_method, auroc_method = METHODS[kind]
    pos = [e for e in examples if e.activating and e.prediction is not None]
    neg = [e for e in examples if not e.activating and e.prediction is not None]
    failed = sum(e.prediction is None for e in examples)
    details: dict[str, Any] = {"n_items": len(examples), "n_positive": len(pos), "n_negative": len(neg),
                               "n_failed": failed}

    def score(method: str, value: float | None, reason: str | None = None,
              ci: tuple[float | None, float | None] = (None, None), **extra: Any) -> ScoreValue:
        return ScoreValue(method, value, reason, subset=subset, n_records=len(examples), ci_low=ci[0],
                          ci_high=ci[1], details={**details, **extra})

    if not pos or not neg:
        which = "activating" if not pos else "non-activating"
        reason = f"no {which} example with a readable answer in the file ({failed} of {len(examples)} failed)"
        return [score(ba_method, None, reason), score(auroc_method, None, reason)]
    value, low, high = balanced_accuracy([bool(e.prediction) for e in pos], [bool(e.prediction) for e in neg],
                                         seed=seed)
    out = [score(ba_method, value, ci=(low, high),
                 true_positive_rate=sum(bool(e.prediction) for e in pos) / len(pos),
                 true_negative_rate=sum(not e.prediction for e in neg) / len(neg))]
    p_pos = [e.probability for e in pos if e.probability is not None]
    p_neg = [e.probability for e in neg if e.probability is not None]
    if not p_pos or not p_neg:
        out.append(score(auroc_method, None, "the delphi run kept no probabilities for this class (log_probs off, "
                                             "or the endpoint gave no logprobs)"))
    else:
        value, low, high = auroc(p_pos, p_neg, seed=seed)
        out.append(score(auroc_method, value, ci=(low, high)))
    return out
