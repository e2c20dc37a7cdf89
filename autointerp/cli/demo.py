"""`autointerp demo`: the whole loop offline on the embedded defaults, ending with the best features."""

from __future__ import annotations

import click
from click.core import ParameterSource

from autointerp.cli import summary
from autointerp.cli.collect import collect_command
from autointerp.cli.errors import Command
from autointerp.cli.options import db_option
from autointerp.cli.run_summary import print_run_summary
from autointerp.settings import get_settings
from autointerp.workflows.options import ExplainOptions
from storage.core.db import Database
from storage.core.repository import live_neuron_indices


def live_features(db: Database, model: str, layer: int, n: int) -> list[int]:
    """n neurons of the layer that fired, spread evenly over the layer's indices."""
    with db.session() as session:
        indices = live_neuron_indices(session, model, layer)
    step = max(1, len(indices) // n)
    return indices[::step][:n]


@click.command("demo", cls=Command, short_help=summary("demo"))
@click.option("--model", default="gemma-3-270m", show_default=True,
              help="Subject model (an embedded name works offline).")
@click.option("--layer", type=int, default=6, show_default=True, help="Layer whose MLP neurons to study.")
@click.option("--tokens", type=click.IntRange(min=1000), default=40_000, show_default=True,
              help="Corpus tokens to collect.")
@click.option("--n-features", type=click.IntRange(min=1), default=32, show_default=True, help="Features to explain.")
@click.option("--explainer", default="local:gemma-3-270m", show_default=True, help="LLM spec for explanations.")
@click.option("--simulator", default="embedding", show_default=True, help="Simulator spec for scoring.")
@db_option
@click.pass_context
def demo(ctx: click.Context, model: str, layer: int, tokens: int, n_features: int, explainer: str, simulator: str,
         db_url: str) -> None:
    """Collect one layer of the subject model on the Wikipedia sample, explain a few dozen of its neurons
    with the local model, score them with the embedding simulator, store everything, and show the
    best-explained features. Offline; reruns reuse what is already in the database.

    \b
    Example:
      autointerp demo
      autointerp demo --n-features 8 --tokens 10000 --db /tmp/demo.db
    """
    from autointerp.workflows.explain_run import run_explain

    click.secho(f"1/3 collecting layer {layer} of {model} on the Wikipedia sample ({tokens:,} tokens)",
                bold=True, err=True)
    ctx.invoke(collect_command, model_spec=model, layers=str(layer), max_tokens=tokens, db_url=db_url)
    db = Database(db_url)
    features = live_features(db, model, layer, n_features)
    if not features:
        raise click.ClickException(f"no neuron of layer {layer} fired on {tokens} tokens; try more --tokens")
    click.secho(f"2/3 explaining {len(features)} neurons with {explainer}, scoring with {simulator}",
                bold=True, err=True)
    opts = ExplainOptions(model=model, layer=layer, features=",".join(map(str, features)), explainer=explainer,
                          simulator=simulator, concurrency=2, base_url=get_settings().openai_base_url)
    run_id = run_explain(db, opts, show_progress=True)
    click.secho("3/3 results", bold=True, err=True)
    print_run_summary(db, run_id, show_exit=False)  # the demo shows results; it does not end with the run's code
    # The hints name the database only when --db chose it (otherwise the same default applies to them).
    where = f" --db {db_url}" if ctx.get_parameter_source("db_url") is not ParameterSource.DEFAULT else ""
    click.echo(
        "\nLook further:\n"
        f"  autointerp query --layer {layer} --min-score 0.3{where}        best features, filtered\n"
        f"  autointerp query --layer {layer} --search number{where}         full-text search over explanations\n"
        f"  autointerp serve{where}                                  web viewer and API on http://127.0.0.1:8000"
    )


COMMANDS = [demo]
