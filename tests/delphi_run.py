"""A delphi run's explanation and score files in delphi's published format (delphi/__main__.py: run_config.json via
RunConfig.save_json; explanations/<module>_latent<i>.txt and scores/<scorer>/<module>_latent<i>.txt via
orjson.dumps of the explanation string and of the list of ClassifierOutput dataclasses), written by hand to that
format: delphi itself needs a GPU-sized stack (vllm or an OpenRouter key) to produce them. The examples are windows
of the cached sequences of tests/test_delphi_import.py with the planted latents' real values; the judge's answers
and probabilities are chosen so the scores are known: see EXPECTED."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

HOOK = "layers.3.mlp"
EXAMPLE_CTX = 32  # delphi's constructor_cfg.example_ctx_len
EXPLANATIONS = {2: "a few words in a story about a mill town, strongest in the middle of a sentence",
                5: 'the word " children"'}
# Per latent and delphi scorer: (activating predictions, non-activating predictions, P(1) of each in the same
# order). None: the judge's answer failed for that example (prediction and probability null).
ANSWERS: dict[tuple[int, str], tuple[list, list, list]] = {
    (5, "detection"): ([1, 1, 1, 0, None], [0, 0, 1, 0], [0.9, 0.8, 0.6, 0.3, None, 0.1, 0.2, 0.7, 0.4]),
    (5, "fuzz"): ([1, 1, 1, 1], [0, 1, 0, 0], [0.95, 0.9, 0.85, 0.8, 0.1, 0.88, 0.2, 0.3]),
    (2, "fuzz"): ([1, 0, 1], [0, 0, 1], [0.7, 0.4, 0.9, 0.2, 0.1, 0.6]),
}
# (latent, method) -> value on subset `random`, for the answers above: balanced accuracy by hand, the failed
# answer left out; AUROC counted pair by pair (no ties).
EXPECTED = {
    (5, "detection_balanced_accuracy"): (3 / 4 + 3 / 4) / 2,
    (5, "detection_auroc"): 13 / 16,  # .9 and .8 beat all 4 negatives, .6 beats 3, .3 beats 2
    (5, "fuzzing_balanced_accuracy"): (4 / 4 + 3 / 4) / 2,
    (5, "fuzzing_auroc"): 14 / 16,  # .95 and .9 beat all 4, .85 and .8 lose to .88 only
    (2, "fuzzing_balanced_accuracy"): (2 / 3 + 2 / 3) / 2,
    (2, "fuzzing_auroc"): 8 / 9,  # .7 and .9 beat all 3, .4 loses to .6
}


def run_config() -> dict[str, Any]:
    """delphi's RunConfig as save_json writes it (every field, in its order), for a small run."""
    return {
        "cache_cfg": {"dataset_repo": "EleutherAI/SmolLM2-135M-10B", "dataset_split": "train[:1%]",
                      "dataset_name": "", "dataset_column": "text", "batch_size": 8, "cache_ctx_len": 128,
                      "n_tokens": 5120, "n_splits": 2},
        "constructor_cfg": {"faiss_embedding_model": "sentence-transformers/all-MiniLM-L6-v2",
                            "faiss_embedding_cache_dir": ".embedding_cache", "faiss_embedding_cache_enabled": True,
                            "example_ctx_len": EXAMPLE_CTX, "min_examples": 3, "n_non_activating": 4,
                            "center_examples": True, "non_activating_source": "random",
                            "neighbours_type": "co-occurrence"},
        "sampler_cfg": {"n_examples_train": 10, "n_examples_test": 5, "n_quantiles": 2, "train_type": "quantiles",
                        "test_type": "quantiles", "ratio_top": 0.2},
        "model": "HuggingFaceTB/SmolLM2-135M", "sparse_model": "EleutherAI/sae-SmolLM2-135M-64x",
        "hookpoints": [HOOK], "explainer_model": "hugging-quants/Meta-Llama-3.1-70B-Instruct-AWQ-INT4",
        "explainer_model_max_len": 5120, "explainer_provider": "offline", "explainer": "default",
        "scorers": ["fuzz", "detection"], "fuzz_type": "active", "name": "delphi", "max_latents": 8,
        "filter_bos": True, "log_probs": True, "load_in_8bit": False, "hf_token": None, "pipeline_num_proc": 1,
        "num_gpus": 1, "max_memory": 0.7, "seed": 22, "verbose": True, "num_examples_per_scorer_prompt": 5,
        "overwrite": [],
    }


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)  # as orjson.dumps writes it


def _window(tokens: np.ndarray, acts: dict[tuple[int, int], float], seq: int, pos: int) -> tuple[list[int], list]:
    """delphi's centred example: the activating token at ctx - ctx // 4 of a window of EXAMPLE_CTX tokens."""
    start = min(max(0, pos - (EXAMPLE_CTX - EXAMPLE_CTX // 4)), tokens.shape[1] - EXAMPLE_CTX)
    span = range(start, start + EXAMPLE_CTX)
    return [int(tokens[seq, p]) for p in span], [acts.get((seq, p), 0.0) for p in span]


def _examples(tokens: np.ndarray, acts: dict[tuple[int, int], float], scorer: str, answers: tuple[list, list, list],
              decode: Any) -> list[dict]:
    """ClassifierOutput dicts: activating windows at the latent's strongest locations, then the negatives
    (detection: random windows where it never fires; active fuzzing: the same activating windows again)."""
    positive, negative, probabilities = answers
    peaks = sorted(acts, key=lambda k: (-acts[k], k))[:len(positive)]
    windows: list[tuple[list[int], list, bool, float]] = [(*_window(tokens, acts, s, p), True, 1) for s, p in peaks]
    if scorer == "fuzz":
        windows += [(ids, values, False, -1) for ids, values, _, _ in windows[:len(negative)]]
    else:
        # delphi's random negatives: windows where the latent never fires, activations all zero
        quiet = [(s, start) for s in range(tokens.shape[0]) for start in range(0, tokens.shape[1], EXAMPLE_CTX)
                 if not any(k[0] == s and start <= k[1] < start + EXAMPLE_CTX for k in acts)]
        windows += [([int(t) for t in tokens[s, start:start + EXAMPLE_CTX]], [0.0] * EXAMPLE_CTX, False, -1.0)
                    for s, start in quiet[:len(negative)]]
    out = []
    for (ids, values, activating, distance), prediction, probability in zip(
            windows, positive + negative, probabilities, strict=True):
        out.append({"str_tokens": [decode([t]) for t in ids], "activations": values, "distance": distance,
                    "activating": activating, "prediction": None if prediction is None else bool(prediction),
                    "probability": probability,
                    "correct": None if prediction is None else bool(prediction) == activating})
    return out


def write_run(root: Path, tokens: np.ndarray, latents: dict[int, dict[tuple[int, int], float]], decode: Any) -> Path:
    """run_config.json, explanations/ and scores/ of a delphi run over `tokens` (the cache's), into `root`."""
    (root / "explanations").mkdir(parents=True, exist_ok=True)
    (root / "run_config.json").write_text(json.dumps(run_config(), indent=4))
    for index, text in EXPLANATIONS.items():
        (root / "explanations" / f"{HOOK}_latent{index}.txt").write_text(_dumps(text))
    for (index, scorer), answers in ANSWERS.items():
        (root / "scores" / scorer).mkdir(parents=True, exist_ok=True)
        examples = _examples(tokens, latents[index], scorer, answers, decode)
        (root / "scores" / scorer / f"{HOOK}_latent{index}.txt").write_text(_dumps(examples))
    return root
