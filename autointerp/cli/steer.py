"""`autointerp steer`: steer a layer's features (MLP neurons or SAE latents) to a target KL on the neutral prompts
and store the steered and unsteered continuations (autointerp.workflows.steer_run)."""

from __future__ import annotations

import json

import click

from autointerp.cli import summary
from autointerp.cli.errors import Command
from autointerp.cli.options import db_option
from storage.core.db import Database


def _summary_rows(db: Database, opts: object) -> list[dict]:
    """Per selected feature, its stored steering under the run's configuration: status, strength, KL, the first
    prompt's steered continuation or the failure's reason."""
    from activations.steering_results import SteeringResult
    from autointerp.workflows.selection import select_features
    from autointerp.workflows.steer_run import SteerOptions, steering_config
    from storage.results.steering_store import steering_result

    assert isinstance(opts, SteerOptions)
    rows = []
    with db.session() as session:
        for feature in select_features(session, opts.model, opts.layer, opts.sae, opts.features):
            result = steering_result(session, feature.id, steering_config(feature, opts.steering))
            if result is None:
                continue
            row: dict[str, object] = {"index": feature.index, "strength": result.strength, "kl": result.kl}
            if isinstance(result, SteeringResult):
                row |= {"status": "ok", "first_prompt": result.prompts[0], "steered": result.steered[0]}
            else:
                row |= {"status": "failed", "failure_reason": result.reason}
            rows.append(row)
    return rows


def _print(rows: list[dict], fmt: str) -> None:
    if fmt == "json":
        click.echo(json.dumps(rows))
        return
    for row in rows:
        head = f"feature {row['index']}: "
        if row["status"] != "ok":
            click.echo(head + f"failed: {row['failure_reason']}")
            continue
        click.echo(head + f"strength {row['strength']:.4g}, KL {row['kl']:.3f}")
        click.echo(f"  {row['first_prompt']!r} -> {row['steered']!r}")


@click.command("steer", cls=Command, short_help=summary("steer"))
@click.option("--model", default="gemma-3-270m", show_default=True, help="Subject model (as collected).")
@click.option("--layer", type=click.IntRange(min=0), required=True, help="Layer index.")
@click.option("--sae", default=None, help="SAE name (as collected); default: the layer's MLP neurons.")
@click.option("--features", default="all", show_default=True, help="all, 0-99 or 1,5,9.")
@click.option("--target-kl", type=float, default=0.5, show_default=True,
              help="KL(steered || unsteered) of the next-token distribution, in nats, each feature is steered to.")
@click.option("--tokens", type=click.IntRange(min=1, max=512), default=24, show_default=True,
              help="New tokens per continuation.")
@click.option("--unsteered", type=click.IntRange(min=1, max=32), default=3, show_default=True,
              help="Unsteered continuations per prompt, beside its one steered continuation.")
@click.option("--temperature", type=float, default=0.7, show_default=True, help="Sampling temperature.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@db_option
def steer(model: str, layer: int, sae: str | None, features: str, target_kl: float, tokens: int, unsteered: int,
          temperature: float, seed: int, device: str, fmt: str, db_url: str) -> None:
    """Steer each feature until the next-token distribution on the neutral prompts moves by --target-kl, then
    sample one steered and --unsteered unsteered continuations per prompt and store them. Features already
    steered under the same settings are skipped.

    \b
    Examples:
      autointerp steer --model gemma-3-270m --layer 6 --features 0-9
      autointerp steer --layer 12 --sae my-sae --features 0 --target-kl 0.5 --tokens 32
    """
    from activations.steering import SteeringConfig  # torch
    from autointerp.workflows.steer_run import SteerOptions, run_steer

    opts = SteerOptions(model=model, layer=layer, sae=sae, features=features, device=device,
                        steering=SteeringConfig(target_kl=target_kl, tokens=tokens, n_unsteered=unsteered,
                                                temperature=temperature, seed=seed))
    db = Database(db_url)
    stats = run_steer(db, opts, show_progress=fmt == "table")
    click.echo(f"steered {stats.done} features, {stats.failed} failed, {stats.skipped} already "
               "steered", err=True)
    _print(_summary_rows(db, opts), fmt)


COMMANDS = [steer]
