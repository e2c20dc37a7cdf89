"""`autointerp explain`, `rescore` and `compare`: the batch workflows."""

from __future__ import annotations

import json

import click

from autointerp.cli import summary
from autointerp.cli.errors import Command
from autointerp.cli.formatting import FORMATS, emit
from autointerp.cli.options import db_option
from autointerp.cli.run_exit import run_and_report
from autointerp.settings import get_settings
from autointerp.workflows.options import POLARITY_CHOICES, ExplainOptions, RescoreOptions
from explainer import EVIDENCE_CHOICES
from explainer import FORMATS as EXPLAIN_FORMATS
from explainer.contrast import DEFAULT_MODE, DEFAULT_NEGATIVES, MODES
from explainer.sampling import DEFAULT_SAMPLE, SAMPLES
from storage.core.db import Database
from storage.reads.queries import SCORE_METHODS, SUBSETS, check_method_subset, default_subset

feature_options = [
    click.option("--model", default="gemma-3-270m", show_default=True, help="Subject model whose features to use."),
    click.option("--layer", type=int, required=True, help="Layer index."),
    click.option("--sae", default=None, help="SAE id, for SAE latents (default: MLP neurons)."),
    click.option("--features", default="all", show_default=True, help="all, a range 0-99, or a list 1,5,9."),
]
simulator_options = [
    click.option("--simulator", default="embedding", show_default=True,
                 help="embedding[:model] | logprob:<llm spec> | json:<llm spec>."),
    click.option("--simulator-base-url", multiple=True,
                 help="Base URL for an openai: simulator (default: --base-url); repeat it for several replicas."),
    click.option("--concurrency", type=click.IntRange(1, 1024), default=4, show_default=True,
                 help="Features in flight."),
    click.option("--device", default="auto", show_default=True, help="auto | cpu | cuda for local models."),
    # --no-sanity: the old name, accepted for one release.
    click.option("--no-shuffled-baseline", "--no-sanity", "no_shuffled_baseline", is_flag=True,
                 help="Skip the shuffled-explanation baseline (--no-sanity: its old name, deprecated)."),
    click.option("--seed", type=int, default=0, show_default=True, help="Seed for bootstrap and shuffling."),
    click.option("--executor", type=click.Choice(["local", "ray"]), default="local", show_default=True,
                 help="local: this process; ray: --workers actors on a Ray cluster, sharing the database."),
    click.option("--ray-address", default="auto", show_default=True,
                 help="Ray cluster to join (auto: the running one, else start one on this machine)."),
    click.option("--workers", type=click.IntRange(1, 4096), default=2, show_default=True,
                 help="Worker actors with --executor ray."),
    click.option("--lease-seconds", type=click.FloatRange(1.0), default=120.0, show_default=True,
                 help="With --executor ray: a dead worker's features go back to the pool after this long."),
]


fail_fast_option = click.option(
    "--fail-fast", type=click.IntRange(0), default=5, show_default=True,
    help="Stop the run as failed (exit 4) when its first N features all fail the same way (0: never).")
calibrate_option = click.option(
    "--calibrate", is_flag=True,
    help="Fit a linear calibration of the simulation on the valid split and also store calibrated r² and absolute "
         "deviation explained (rsquared_calibrated, absolute_dev_explained_calibrated).")


def _urls(given: tuple[str, ...]) -> str | None:
    """Repeated --base-url values as one comma-separated list (the client splits it again); None when none."""
    return ",".join(given) if given else None


scorer_options = [
    click.option("--scorer", "scorers", default="simulation", show_default=True,
                 help="Comma-separated scorers: simulation, detection, fuzzing, embedding, intruder, steering, "
                      "intervention (see docs/scorers.md)."),
    click.option("--scorer-llm", default=None,
                 help="Judging LLM spec for detection/fuzzing/intruder/intervention (default: the explainer; "
                      "rescore: --explainer)."),
    click.option("--scorer-base-url", default=None, help="Base URL for an openai: judge (default: --base-url)."),
    click.option("--scorer-examples", type=click.IntRange(1, 50), default=5, show_default=True,
                 help="Examples per detection/fuzzing/intruder prompt (intruder: one of them is the intruder)."),
    click.option("--steering-target-kl", type=click.FloatRange(min=0.0, min_open=True), default=0.5,
                 show_default=True,
                 help="The steering stored by `autointerp steer --target-kl` of this value: what the steering and "
                      "intervention scorers score (features never steered so are steered first) and what "
                      "--evidence ...+steering shows."),
]


def _apply(options):
    def wrap(fn):
        for option in reversed(options):
            fn = option(fn)
        return fn
    return wrap


@click.command("explain", cls=Command, short_help=summary("explain"))
@_apply(feature_options)
@click.option("--explainer", default="local:gemma-3-270m", show_default=True,
              help="LLM spec: local:<model> | openai:<model>.")
@click.option("--base-url", multiple=True,
              help="OpenAI-compatible base URL (default: $OPENAI_BASE_URL, comma-separated for several); repeat it "
                   "to spread requests over replicas.")
@click.option("--format", "fmt", type=click.Choice(list(EXPLAIN_FORMATS)), default="auto", show_default=True,
              help="Prompt format; auto: token_activation_pairs for chat models, snippets for base models.")
@click.option("--n-candidates", type=click.IntRange(1, 16), default=1, show_default=True,
              help="Explanations per feature; the best on the valid split is scored on the test split.")
@click.option("--polarity", type=click.Choice(list(POLARITY_CHOICES)), default="positive", show_default=True,
              help="Explain what drives the feature up (positive), down (negative: needs a `collect --signed` "
                   "layer), or both: two explanations per feature, each scored on its own side.")
@click.option("--budget-usd", type=float, default=None, help="Stop cleanly once this much has been spent.")
@click.option("--evidence", type=click.Choice(list(EVIDENCE_CHOICES)), default=EVIDENCE_CHOICES[0], show_default=True,
              help="What the explainer sees: the activation records, and also the tokens the feature promotes and "
                   "suppresses (+logits: its logit lens, stored by collect) and what the model writes when the "
                   "feature is turned up against what it normally writes (+steering: stored by `autointerp steer`).")
@click.option("--explainer-sample", type=click.Choice(list(SAMPLES)), default=DEFAULT_SAMPLE, show_default=True,
              help="Which train records the explainer sees: top (the collected top windows), quantiles (equal "
                   "from each activation bin), random, mixed (half top, half quantiles); seeded by --seed. See "
                   "docs/explaining-and-scoring.md.")
@click.option("--explainer-mode", type=click.Choice(list(MODES)), default=DEFAULT_MODE, show_default=True,
              help="plain: the explainer sees where the feature fires; contrastive: also counterexamples where it "
                   "stays quiet (its neighbours' train top windows, then its own random train windows). See "
                   "docs/explaining-and-scoring.md.")
@click.option("--explainer-negatives", type=click.IntRange(1, 50), default=DEFAULT_NEGATIVES, show_default=True,
              help="Counterexamples a contrastive prompt shows.")
@calibrate_option
@click.option("--request-timeout", type=click.FloatRange(0.1), default=60.0, show_default=True,
              help="Seconds before an explainer request is abandoned (and retried).")
@click.option("--dry-run", is_flag=True, help="Estimate requests, tokens and cost; call nothing.")
@click.option("--retry-failed", is_flag=True,
              help="Redo every feature recorded as failed under this configuration (those that failed on the "
                   "endpoint are redone without it).")
@fail_fast_option
@_apply(scorer_options)
@_apply(simulator_options)
@db_option
def explain(model, layer, sae, features, explainer, base_url, fmt, n_candidates, polarity, budget_usd, request_timeout,
            dry_run, retry_failed, fail_fast, simulator, simulator_base_url, concurrency, device,
            no_shuffled_baseline, seed, executor, ray_address, workers, lease_seconds, db_url, evidence="activations",
            calibrate=False, explainer_sample=DEFAULT_SAMPLE, scorers="simulation", scorer_llm=None,
            scorer_base_url=None, scorer_examples=5, explainer_mode=DEFAULT_MODE,
            explainer_negatives=DEFAULT_NEGATIVES, steering_target_kl=0.5) -> None:
    """Explain, simulate and score every selected feature of a layer, as one resumable run.

    Each feature is explained from its train records, the best of --n-candidates is chosen on the valid
    split, and it is simulated and scored on the held-out test split (top-and-random and random-only),
    plus a shuffled-explanation baseline. Each feature commits on its own: rerunning the same
    command skips finished features without calling the LLM.

    \b
    Examples:
      autointerp explain --model gemma-3-270m --layer 6 --features 0-9 --explainer local:gemma-3-270m \\
          --simulator embedding
      autointerp explain --layer 6 --explainer openai:gpt-4o-mini --simulator logprob:openai:llama-3-8b \\
          --simulator-base-url http://localhost:8000/v1 --concurrency 32 --budget-usd 5
      autointerp explain --layer 6 --explainer openai:gpt-4o-mini --dry-run
      autointerp explain --layer 6 --features 0-9 --explainer-mode contrastive
      autointerp explain --layer 6 --features 0-9 --evidence activations+steering   (after autointerp steer)
      autointerp explain --layer 6 --features 630 --polarity both     (a layer collected with --signed)
    """
    from autointerp.workflows.dry_run import estimate
    from autointerp.workflows.explain_run import run_explain

    opts = ExplainOptions(model=model, layer=layer, sae=sae, features=features, explainer=explainer,
                          base_url=_urls(base_url) or get_settings().openai_base_url,
                          fmt=fmt, n_candidates=n_candidates, polarity=polarity, budget_usd=budget_usd,
                          request_timeout_s=request_timeout, retry_failed=retry_failed, dry_run=dry_run,
                          simulator=simulator, simulator_base_url=_urls(simulator_base_url), concurrency=concurrency,
                          device=device, shuffled_baseline=not no_shuffled_baseline, seed=seed, evidence=evidence,
                          calibrate=calibrate, fail_fast=fail_fast, explainer_sample=explainer_sample,
                          explainer_mode=explainer_mode, explainer_negatives=explainer_negatives,
                          steering_target_kl=steering_target_kl)
    opts.scorers, opts.scorer_llm, opts.scorer_examples = scorers, scorer_llm, scorer_examples
    opts.scorer_base_url = scorer_base_url or opts.base_url
    opts.judge_spec()  # an unknown scorer name is an error before any work
    opts.sides()  # so is a sample the polarity cannot use
    db = Database(db_url)
    if dry_run:
        click.echo(json.dumps(estimate(db, opts), indent=2))
        return
    if executor == "ray":
        from autointerp.executors.ray_batch import RayJob, run_explain_on_ray

        run_and_report(db, lambda: run_explain_on_ray(db, opts, RayJob(ray_address, workers, lease_seconds),
                                                      show_progress=True))
    else:
        run_and_report(db, lambda: run_explain(db, opts, show_progress=True))


@click.command("rescore", cls=Command, short_help=summary("rescore"))
@_apply(feature_options)
@click.option("--explainer", default=None, help="Only explanations by this explainer spec.")
@calibrate_option
@fail_fast_option
@_apply(scorer_options)
@_apply(simulator_options)
@db_option
def rescore(model, layer, sae, features, explainer, simulator, simulator_base_url, concurrency, device,
            no_shuffled_baseline, seed, executor, ray_address, workers, lease_seconds, db_url, calibrate=False,
            scorers="simulation", scorer_llm=None, scorer_base_url=None, scorer_examples=5, fail_fast=5,
            steering_target_kl=0.5) -> None:
    """Score existing explanations of a layer with another simulator or other scorers; old scores stay beside the
    new ones. With --scorer, only explanations lacking that scorer's scores are scored.

    \b
    Examples:
      autointerp rescore --model gemma-3-270m --layer 6 --simulator embedding
      autointerp rescore --layer 6 --scorer detection,fuzzing,embedding --scorer-llm openai:gpt-4o-mini
      autointerp rescore --layer 6 --explainer openai:gpt-4o-mini --simulator logprob:local:gemma-3-270m
    """
    from autointerp.workflows.rescore_run import run_rescore

    opts = RescoreOptions(model=model, layer=layer, sae=sae, features=features, explainer=explainer,
                          simulator=simulator,
                          simulator_base_url=_urls(simulator_base_url) or get_settings().openai_base_url,
                          concurrency=concurrency, device=device, shuffled_baseline=not no_shuffled_baseline,
                          seed=seed, calibrate=calibrate, fail_fast=fail_fast)
    opts.scorers, opts.scorer_llm, opts.scorer_examples = scorers, scorer_llm, scorer_examples
    opts.scorer_base_url = scorer_base_url or get_settings().openai_base_url
    opts.steering_target_kl = steering_target_kl
    opts.judge_spec()  # an unknown scorer, or detection/fuzzing without a judge, is an error before any work
    db = Database(db_url)
    if executor == "ray":
        from autointerp.executors.ray_batch import RayJob, run_rescore_on_ray

        run_and_report(db, lambda: run_rescore_on_ray(db, opts, RayJob(ray_address, workers, lease_seconds),
                                                      show_progress=True))
    else:
        run_and_report(db, lambda: run_rescore(db, opts, show_progress=True))


@click.command("compare", cls=Command, short_help=summary("compare"))
@click.option("--layer", type=int, required=True, help="Layer index.")
@click.option("--explainer", "explainers", multiple=True,
              help="Give exactly two: A then B. With --methods, at most one: only its explanations.")
@click.option("--model", default=None, help="Subject model name.")
@click.option("--method", type=click.Choice(SCORE_METHODS), default="ev_correlation", show_default=True)
@click.option("--subset", default=None,
              help=f"{', '.join(SUBSETS)}, or quantile:<i> for ev_correlation. Default: the method's first subset.")
@click.option("--methods", default=None,
              help="Compare score methods instead: comma-separated, each optionally method:subset; prints the Spearman "
                   "agreement of every pair over the features that have both.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True)
@db_option
def compare(layer, explainers, model, method, subset, methods, fmt, db_url) -> None:
    """Compare two explainers feature by feature: best scores side by side, wins, and the paired
    difference (B - A) with a bootstrap 95% confidence interval. With --methods, compare score methods:
    do the scorers rank the features alike?

    \b
    Examples:
      autointerp compare --layer 6 --explainer local:gemma-3-270m --explainer openai:gpt-4o-mini
      autointerp compare --layer 6 --methods ev_correlation,detection_balanced_accuracy,fuzzing_auroc,embedding_auroc
    """
    from autointerp.cli.comparisons import compare_explainers, compare_methods, parse_method_list  # scipy

    if methods is not None:
        if len(explainers) > 1:
            raise click.UsageError("with --methods, give --explainer at most once")
        rows = compare_methods(Database(db_url), layer=layer, methods=parse_method_list(methods), model=model,
                               explainer=explainers[0] if explainers else None)
        emit(rows, fmt, ("method_a", "method_b", "n_features", "spearman"),
             title=f"Spearman agreement between methods, layer {layer}")
        return
    if len(explainers) != 2:
        raise click.UsageError(f"give --explainer exactly twice (A and B); got {len(explainers)}")
    subset = subset or default_subset(method)
    check_method_subset(method, subset)
    result = compare_explainers(Database(db_url), layer=layer, a=explainers[0], b=explainers[1], model=model,
                                method=method, subset=subset)
    if fmt == "json":
        click.echo(json.dumps({"summary": result.summary, "features": result.rows}))
        return
    emit(result.rows, fmt, ("index", "score_a", "score_b", "diff", "explanation_a", "explanation_b"),
         title=f"A = {explainers[0]}   B = {explainers[1]}")
    if fmt == "table":
        s = result.summary
        click.echo(f"paired features: {s['paired']}  wins A/B/ties: {s['wins_a']}/{s['wins_b']}/{s['ties']}")
        for key in ("score_a", "score_b"):
            click.echo(f"{key}: n={s[key]['n']} mean={s[key]['mean']} median={s[key]['median']}")
        click.echo(f"mean difference B - A: {s['mean_diff_b_minus_a']}  95% CI: {s['diff_ci95']}")


COMMANDS = [explain, rescore, compare]
