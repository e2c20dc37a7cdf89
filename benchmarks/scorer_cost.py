"""What each scorer costs per feature: LLM requests and prompt tokens for simulation (OpenAI's method: the
all-at-once logprob simulator over the test split's top and random records), detection and fuzzing (the judge
reads 5 numbered examples per prompt), and embedding (no LLM), side by side on the same explanations.

50 synthetic features stored as a collection stores them (64-token windows; top 20, random 20 and 5 quantile bins
of 5, split train/valid/test by position; 10 nearest neighbours each), one explanation each, then one `rescore`
per scorer (the real pipeline path: autointerp.workflows.rescore_run.run_rescore) against the fake
OpenAI-compatible server running in this process. Tokens are what the server reports in its usage (its word
tokenizer), the same count for every method. The shuffled-explanation baseline is off (it doubles every method
alike).

The intervention scorer judges each feature's stored steering result: synthetic results are stored per feature
(storage.results.steering_store, under the default steering configuration, as `autointerp steer` stores them) and
it is measured through the same `rescore --scorer intervention`: --steering-prompts neutral prompts (default 12,
the default configuration's), each with one steered and --unsteered (default 3) unsteered continuations of
--continuation-tokens words (default 24), one judge request per prompt.

    .venv/bin/python benchmarks/scorer_cost.py [--features 50]

The steering scorer asks no LLM: it runs the subject model. Its cost is measured on gemma-3-270m itself (CPU
here, CUDA where present): `--steering-features` MLP neurons of layer 3 steered to the default target KL (the
strength search, then one steered continuation per neutral prompt; the unsteered continuations are made once per
run and reported apart), and the judge-free score of one explanation on each (`--steering-features 0` skips it).

Last line: {"tokens_per_feature_<method>", "requests_per_feature_<method>"} for simulation, detection, fuzzing,
embedding, intruder and intervention, and "detection_token_ratio" (detection's prompt tokens over simulation's); with
steering, "forward_passes_per_feature_steering" and "cpu_s_per_feature_steering" (steering one feature),
"forward_passes_unsteered_steering" and "cpu_s_unsteered_steering" (the shared unsteered continuations, once),
"forward_passes_per_explanation_steering" and "cpu_s_per_explanation_steering" (scoring one explanation).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import select

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from activations.importers import ImportedFeature  # noqa: E402
from activations.records import (  # noqa: E402
    ActivationRecord,
    FeatureId,
    FeatureRecords,
    FeatureStats,
    interleaved_data_split,
)
from activations.steering import SteeringConfig  # noqa: E402
from activations.steering_results import SteeringResult  # noqa: E402
from activations.vocab import ScorerName  # noqa: E402
from autointerp.workflows.options import RescoreOptions  # noqa: E402
from autointerp.workflows.rescore_run import run_rescore  # noqa: E402
from autointerp.workflows.steer_run import steering_config  # noqa: E402
from scorer.intervention import INTERVENTION_PROMPT_VERSION  # noqa: E402
from storage.core import repository as repo  # noqa: E402
from storage.core.db import Database  # noqa: E402
from storage.core.schema import Feature  # noqa: E402
from storage.records.import_store import save_imported_file  # noqa: E402
from storage.results.steering_store import save_steering  # noqa: E402
from tests.fake_openai import FakeOpenAI, judge_answer  # noqa: E402

MODEL, LAYER, WINDOW = "bench-model", 0, 64
WORDS = ("the of and to in a is that for it as was with be by on not he this are or his from at which but have "
         "an they you were her she there been one all we their has would when if so no will more can out who up "
         "river water sea bridge city year people first new after during between government history music").split()
NUMBERS = ("1", "2", "3", "7", "12", "40", "1932", "1950", "1999", "2004")


def window(rng: random.Random, fires: bool, sample: str, position: int) -> ActivationRecord:
    tokens = [(" " if i else "") + (rng.choice(NUMBERS) if rng.random() < 0.1 else rng.choice(WORDS))
              for i in range(WINDOW)]
    acts = [(2.0 + 3 * rng.random()) if fires and t.strip().isdigit() else 0.0 for t in tokens]
    if fires and max(acts) == 0:
        tokens[WINDOW // 2], acts[WINDOW // 2] = " 5", 2.5
    return ActivationRecord(tokens, acts, sample=sample, data_split=interleaved_data_split(position))


def fill(db: Database, n_features: int) -> None:
    rng = random.Random(0)
    samples = {"top": 20, "random": 20} | {f"quantile:{b}": 5 for b in range(5)}
    with db.session() as s, s.begin():
        for index in range(n_features):
            fid = FeatureId(MODEL, LAYER, "mlp_neuron", index)
            records = [window(rng, sample != "random", sample, p) for sample, n in samples.items() for p in range(n)]
            stats = FeatureStats(max_activation=5.0, mean=0.1, variance=0.2, firing_fraction=0.05, n_tokens=100_000)
            neighbours = [{"index": (index + k) % n_features, "similarity": 0.5} for k in range(1, 11)]
            save_imported_file(s, [ImportedFeature(FeatureRecords(fid, records, stats), fid,
                                                   extra={"neighbours": neighbours})], "bench")
            feature = repo.find_feature(s, fid)
            assert feature is not None  # just stored
            repo.add_explanation(s, feature, explainer="openai:fake-model", config={"bench": True},
                                 text="numbers and years written in digits", prompt_version="bench")


def measure(db: Database, fake: FakeOpenAI, scorer: ScorerName, n_features: int) -> dict:
    options = RescoreOptions(model=MODEL, layer=LAYER, shuffled_baseline=False, concurrency=16, device="cpu",
                             scorers=scorer.value, scorer_llm="openai:fake-model", scorer_base_url=fake.url,
                             simulator="logprob:openai:fake-model", simulator_base_url=fake.url)
    requests, tokens = fake.requests, fake.prompt_tokens
    start = time.perf_counter()
    run_rescore(db, options, show_progress=False)
    elapsed = time.perf_counter() - start
    return {"tokens_per_feature": (fake.prompt_tokens - tokens) / n_features,
            "requests_per_feature": (fake.requests - requests) / n_features, "seconds": round(elapsed, 2)}


def steering_result(rng: random.Random, n_prompts: int, n_unsteered: int, n_tokens: int) -> SteeringResult:
    """A synthetic steering result of one feature: what the judge reads is all that costs."""
    def text() -> str:
        return " " + " ".join(rng.choice(WORDS) for _ in range(n_tokens))

    prompts = tuple(" ".join(rng.choice(WORDS) for _ in range(5)).capitalize() for _ in range(n_prompts))
    return SteeringResult(strength=4.0, kl=0.5, target_kl=0.5, prompts=prompts,
                          steered=tuple(text() for _ in prompts),
                          unsteered=tuple(tuple(text() for _ in range(n_unsteered)) for _ in prompts))


def store_steering(db: Database, args: argparse.Namespace) -> None:
    """Every feature's synthetic steering, stored as `autointerp steer` stores it (the scorer reads it back)."""
    rng = random.Random(0)
    with db.session() as s, s.begin():
        for feature in s.scalars(select(Feature).order_by(Feature.index)):
            save_steering(s, feature, steering_config(feature, SteeringConfig()),
                          steering_result(rng, args.steering_prompts, args.unsteered, args.continuation_tokens),
                          run_id=None)


def answer(says_yes: Callable[[str], bool]) -> Callable[[str, dict], str]:
    """The judges' answers: a list for detection and fuzzing, a number for the intruder and intervention judges."""
    lists = judge_answer(says_yes)

    def answer_for(endpoint: str, body: dict) -> str:
        picks = endpoint == "chat" and "Write only the list." not in body["messages"][-1]["content"]
        return "1" if picks else lists(endpoint, body)

    return answer_for


def report(figures: dict[str, float], scorer: str, result: dict) -> None:
    print(f"{scorer:>12}: {result['tokens_per_feature']:8.0f} prompt tokens and "
          f"{result['requests_per_feature']:5.2f} requests per feature ({result['seconds']} s)")
    figures[f"tokens_per_feature_{scorer}"] = round(result["tokens_per_feature"], 1)
    figures[f"requests_per_feature_{scorer}"] = round(result["requests_per_feature"], 2)


def measure_steering(n_features: int) -> dict[str, float]:
    """Forward passes and CPU seconds of the subject model for steering features and scoring explanations."""
    from activations.steerer import Steerer
    from activations.steering import SteeringConfig, neuron_vector
    from activations.steering_results import SteeringResult
    from llm_client.local_models import load_model
    from scorer.steering_gain import BATCH, steering_logprob_gain

    loaded = load_model("gemma-3-270m")
    steerer = Steerer(loaded.model, loaded.tokenizer, SteeringConfig())
    start, passes = time.process_time(), steerer.forward_passes
    steerer.unsteered()
    shared = {"forward_passes_unsteered_steering": steerer.forward_passes - passes,
              "cpu_s_unsteered_steering": round(time.process_time() - start, 2)}
    start, passes, results = time.process_time(), steerer.forward_passes, []
    for index in range(0, 2048, 2048 // n_features)[:n_features]:
        result, _ = steerer.steer(neuron_vector(loaded.model, 3, index))
        results.append(result)
    steer_cpu, steer_passes = time.process_time() - start, steerer.forward_passes - passes
    scored = [r for r in results if isinstance(r, SteeringResult)]
    start = time.process_time()
    for result in scored:
        steering_logprob_gain(loaded.model, loaded.tokenizer, result, "the word Paris")
    rows = len(scored[0].prompts) * (1 + len(scored[0].unsteered[0])) if scored else 0
    print(f"  steering: {len(scored)} of {n_features} neurons reached the target KL on {loaded.device}")
    return {**shared, "forward_passes_per_feature_steering": round(steer_passes / n_features, 1),
            "cpu_s_per_feature_steering": round(steer_cpu / n_features, 2),
            "forward_passes_per_explanation_steering": -(-rows // BATCH),
            "cpu_s_per_explanation_steering": round((time.process_time() - start) / max(len(scored), 1), 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--features", type=int, default=50)
    parser.add_argument("--steering-prompts", type=int, default=12, help="intervention: neutral prompts per feature")
    parser.add_argument("--unsteered", type=int, default=3, help="intervention: unsteered continuations per prompt")
    parser.add_argument("--continuation-tokens", type=int, default=24, help="intervention: words per continuation")
    parser.add_argument("--steering-features", type=int, default=4, help="steering: neurons steered on gemma-3-270m")
    args = parser.parse_args()
    fake = FakeOpenAI(answer=answer(lambda text: any(c.isdigit() for c in text))).start()
    os.environ["OPENAI_API_KEY"] = "sk-bench"
    figures: dict[str, float] = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            db = Database(f"sqlite:///{tmp}/bench.db")
            fill(db, args.features)
            for scorer in (s for s in ScorerName if s not in (ScorerName.INTERVENTION, ScorerName.STEERING)):
                report(figures, scorer.value, measure(db, fake, scorer, args.features))
            store_steering(db, args)
            report(figures, ScorerName.INTERVENTION.value, measure(db, fake, ScorerName.INTERVENTION, args.features))
        print(f"  (intervention: {INTERVENTION_PROMPT_VERSION}, {args.steering_prompts} prompts x "
              f"{args.unsteered + 1} continuations of {args.continuation_tokens} words)")
    finally:
        fake.stop()
    figures["detection_token_ratio"] = round(
        figures["tokens_per_feature_detection"] / figures["tokens_per_feature_simulation"], 4)
    if args.steering_features > 0:
        figures |= measure_steering(args.steering_features)
        print(f"  steering: {figures['forward_passes_per_feature_steering']} forward passes and "
              f"{figures['cpu_s_per_feature_steering']} CPU s per feature; scoring an explanation "
              f"{figures['cpu_s_per_explanation_steering']} CPU s")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
