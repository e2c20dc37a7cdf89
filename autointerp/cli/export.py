"""`autointerp export`: features, records, explanations and every score, as JSON Lines or Parquet."""

from __future__ import annotations

from pathlib import Path

import click

from autointerp.cli import summary
from autointerp.cli.errors import Command
from autointerp.cli.options import db_option
from storage.core.db import Database
from storage.reads.feature_documents import iter_feature_documents
from storage.reads.feature_scope import check_scope


@click.command("export", cls=Command, short_help=summary("export"))
@click.option("--model", default=None, help="Only this subject model.")
@click.option("--layer", type=int, default=None, help="Only this layer.")
@click.option("--kind", type=click.Choice(["mlp_neuron", "sae_latent"]), default=None, help="Only this feature kind.")
@click.option("--sae", default=None, help="Only latents of this SAE.")
@click.option("--format", "fmt", type=click.Choice(["jsonl", "parquet", "openai"]), default="jsonl", show_default=True,
              help="jsonl / parquet: everything per feature; openai: OpenAI NeuronRecord JSON Lines (records and "
                   "statistics, readable by `autointerp import` and neuron-explainer tools).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="Output file.")
@db_option
def export(model, layer, kind, sae, fmt, out: Path, db_url) -> None:
    """Write one row per feature with its statistics, records, explanations and all their scores
    (own and shuffled baseline, every simulator), so results can leave the database whole.

    \b
    Examples:
      autointerp export --layer 6 --format jsonl --out layer6.jsonl
      autointerp export --model gemma-3-270m --format parquet --out all.parquet
      autointerp export --layer 6 --kind mlp_neuron --format openai --out layer6_neuron_records.jsonl
    """
    from autointerp.export_writers import write_jsonl, write_neuron_records, write_parquet  # pyarrow

    if not out.parent.exists():
        raise click.ClickException(f"--out: folder {out.parent} does not exist")
    db = Database(db_url)
    tmp = out.with_name(out.name + ".partial")
    with db.session() as session:
        check_scope(session, model=model, layer=layer, kind=kind, sae=sae)  # before any file is opened
        docs = iter_feature_documents(session, model=model, layer=layer, kind=kind, sae=sae)
        writer = {"jsonl": write_jsonl, "parquet": write_parquet, "openai": write_neuron_records}[fmt]
        n = writer(docs, tmp)
    tmp.replace(out)  # a crash never leaves a truncated file under the requested name
    click.echo(f"wrote {n} feature(s) to {out}", err=True)


COMMANDS = [export]
