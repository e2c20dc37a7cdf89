"""`explain --dry-run`: walk the explain step of every pending feature with a recording client (real
prompts, real token counts, nothing sent) and estimate what the run would cost."""

from __future__ import annotations

import asyncio

from activations.records import FeatureRecords
from activations.vocab import DataSplit, ScorerName
from autointerp.workflows.example_scoring import walk_judge_prompts
from autointerp.workflows.explain_run import FeatureInput, check_bottom_records, check_logits_stored, load_inputs
from autointerp.workflows.intervention_scoring import estimated_input, walk_intervention_prompts
from autointerp.workflows.options import ExplainOptions
from autointerp.workflows.selection import select_features
from autointerp.workflows.steering_evidence import check_steering_stored
from explainer import explain
from explainer.contrast import Contrast
from llm_client import LLMClient, make_client
from llm_client.dry_run import RecordingClient
from scorer import ExampleSet
from scorer.example_sets import example_input
from scorer.scored_set import side_sample
from storage.core import repository as repo
from storage.core.db import Database
from storage.core.schema import Feature
from storage.reads.scoring_inputs import neighbour_windows
from storage.results import already_done

# Per feature, an LLM simulator is called once per candidate on the valid split (when choosing among
# several), once on the test split, once for the shuffled baseline, and with --calibrate once more on valid.
LLM_SIMULATORS = ("logprob:openai:", "json:")


def _walk_explainer(recorder: RecordingClient, opts: ExplainOptions, pending: list[Feature],
                    inputs: dict[int, FeatureInput]) -> None:
    """Every pending feature's explain prompts, recorded: records, logit lens, steering and counterexamples as a run
    has them."""
    async def walk() -> None:
        try:
            for feature in pending:
                fr, windows, steering = inputs[feature.id]
                train = FeatureRecords(fr.feature, fr.select(data_splits=[DataSplit.TRAIN]), fr.stats)
                await explain(recorder, train, fmt=opts.fmt, n_candidates=opts.n_candidates, polarity=opts.polarity,
                              temperature=opts.effective_temperature, max_tokens=opts.max_explanation_tokens,
                              output_logits=(feature.extra or {}).get("logits", {}) if opts.with_logits() else None,
                              sample=opts.explainer_sample, sample_seed=opts.seed,
                              contrast=Contrast(opts.explainer_negatives, windows) if opts.contrastive() else None,
                              output_steering=steering)
        finally:
            await recorder.aclose()

    asyncio.run(walk())


def estimate(db: Database, opts: ExplainOptions) -> dict:
    """What the run would send; with --polarity both, each side's estimate and their sums (each side is explained,
    simulated and scored on its own)."""
    sides = opts.sides()
    if len(sides) == 1:
        return _estimate_side(db, sides[0])
    each = {side.polarity: _estimate_side(db, side) for side in sides}
    first = next(iter(each.values()))
    total: dict = {"polarity": opts.polarity, "features_selected": first["features_selected"],
                   "features_pending": sum(e["features_pending"] for e in each.values())}
    for part in ("explainer", "simulator", "judge"):
        if part in first:
            total[part] = {key: (sum(e[part][key] or 0 for e in each.values())
                                 if isinstance(value, (int, float)) and value is not None else value)
                           for key, value in first[part].items()}
    return {**total, "note": first["note"], "sides": each}


def _walk_judge(db: Database, opts: ExplainOptions, judge_spec: str, explainer: LLMClient,
                examples: list[ExampleSet], pending: list[Feature]) -> dict:
    """The judge's real prompts, with an explanation as long as the explainer may write one (an upper bound); the
    intervention scorer's on each pending feature's stored steering (the neutral prompts where it has none)."""
    recorder = RecordingClient(explainer if judge_spec == opts.explainer else make_client(
        judge_spec, base_url=opts.scorer_base_url or opts.base_url, device=opts.device))
    filler = " ".join(["word"] * opts.max_explanation_tokens)
    names = opts.scorer_names()
    rounds = 1 + int(opts.shuffled_baseline)
    steered = [estimated_input(db, f, opts.steering()) for f in pending] \
        if ScorerName.INTERVENTION in names else []

    async def walk() -> None:
        try:
            await walk_judge_prompts(recorder, names, examples, explanation=filler, per_prompt=opts.scorer_examples,
                                     seed=opts.seed, rounds=rounds)
            await walk_intervention_prompts(recorder, steered, explanation=filler, seed=opts.seed, rounds=rounds)
        finally:
            await recorder.aclose()

    asyncio.run(walk())
    return {"spec": judge_spec, **recorder.estimate(4 * opts.scorer_examples + 8)}


def _estimate_side(db: Database, opts: ExplainOptions) -> dict:
    config = opts.explain_config()
    with db.session() as session:
        features = select_features(session, opts.model, opts.layer, opts.sae, opts.features)
        check_bottom_records(session, opts, features)
        finished = already_done.finished_features(session, [f.id for f in features],
                                                  config_hash=repo.config_hash(config))
        pending = [f for f in features if f.id not in finished or finished[f.id].redo(opts.retry_failed)]
        check_logits_stored(opts, pending)
        check_steering_stored(session, opts, pending)
        # Read as the run reads them: the contrastive prompt's counterexamples count too.
        inputs = load_inputs(session, pending, opts)
        judge_spec = opts.judge_spec()
        examples = [example_input(inputs[f.id][0], opts.polarity,
                                  neighbour_windows(session, f, sample=side_sample(opts.polarity)))
                    for f in pending] if judge_spec else []
    real = make_client(opts.explainer, base_url=opts.base_url, device=opts.device)
    recorder = RecordingClient(real)
    _walk_explainer(recorder, opts, pending, inputs)
    judge = _walk_judge(db, opts, judge_spec, real, examples, pending) if judge_spec else None
    # --calibrate simulates the valid split once more to fit its line.
    sims_per_feature = ((opts.n_candidates if opts.n_candidates > 1 else 0) + 1 + int(opts.shuffled_baseline)
                        + int(opts.calibrate))
    llm_simulator = opts.simulator.startswith(LLM_SIMULATORS)
    return {
        "features_selected": len(features),
        "features_pending": len(pending),
        "explainer": {"spec": opts.explainer, **recorder.estimate(opts.max_explanation_tokens)},
        "simulator": {"spec": opts.simulator,
                      "requests": len(pending) * sims_per_feature if llm_simulator else 0,
                      "note": "LLM simulator: one request per simulated data split" if llm_simulator
                      else "runs locally: no requests, no cost"},
        "note": "explainer tokens are counted on the real prompts; completion tokens and cost are upper bounds",
        **({"judge": judge} if judge else {}),
    }
