"""`autointerp export`: features, records, explanations and every score, as JSON Lines or Parquet."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import click

from autointerp.cli import summary
from autointerp.cli.errors import Command
from autointerp.cli.options import db_option
from storage.core.db import Database
from storage.reads.feature_documents import iter_feature_documents
from storage.reads.feature_scope import check_scope, held


@click.command("export", cls=Command, short_help=summary("export"))
@click.option("--model", default=None, help="Only this subject model.")
@click.option("--layer", type=int, default=None, help="Only this layer.")
@click.option("--kind", type=click.Choice(["mlp_neuron", "sae_latent"]), default=None, help="Only this feature kind.")
@click.option("--sae", default=None, help="Only latents of this SAE.")
@click.option("--format", "fmt", type=click.Choice(["jsonl", "parquet", "openai", "neuronpedia"]), default="jsonl",
              show_default=True,
              help="jsonl / parquet: everything per feature; openai: OpenAI NeuronRecord JSON Lines (records and "
                   "statistics, readable by `autointerp import` and neuron-explainer tools); neuronpedia: a folder "
                   "of the files Neuronpedia's import reads (features, activations, explanations, scores).")
@click.option("--out", type=click.Path(path_type=Path), required=True,
              help="Output file; for neuronpedia a new (or empty) folder.")
@click.option("--creator-id", default="autointerp", show_default=True,
              help="neuronpedia: the Neuronpedia user id written as creator and author of every row.")
@db_option
def export(model, layer, kind, sae, fmt, out: Path, creator_id: str, db_url) -> None:
    """Write one row per feature with its statistics, records, explanations and all their scores
    (own and shuffled baseline, every simulator), so results can leave the database whole.

    \b
    Examples:
      autointerp export --layer 6 --format jsonl --out layer6.jsonl
      autointerp export --model gemma-3-270m --format parquet --out all.parquet
      autointerp export --layer 6 --kind mlp_neuron --format openai --out layer6_neuron_records.jsonl
      autointerp export --layer 6 --format neuronpedia --out np/ --creator-id YOUR_NEURONPEDIA_USER_ID
    """
    _check_out(out, folder=fmt == "neuronpedia")
    db = Database(db_url)
    tmp = out.with_name(out.name + ".partial")
    _remove(tmp)  # left by a crashed export
    with db.session() as session:
        check_scope(session, model=model, layer=layer, kind=kind, sae=sae)  # before any file is opened
        docs = iter_feature_documents(session, model=model, layer=layer, kind=kind, sae=sae)
        try:
            n = _write(fmt, docs, tmp, creator_id)
        except BaseException:
            _remove(tmp)
            raise
        if n == 0:  # no filter and an empty database: say so rather than leave an empty file
            _remove(tmp)
            raise click.ClickException(f"nothing to export: {held(session)}")
    _remove(out)  # an empty folder (checked above)
    tmp.replace(out)  # a crash never leaves a truncated file under the requested name
    click.echo(f"wrote {n} feature(s) to {out}", err=True)


def _write(fmt: str, docs, tmp: Path, creator_id: str) -> int:
    from autointerp.export_writers import write_jsonl, write_neuron_records, write_parquet  # pyarrow

    if fmt == "neuronpedia":
        return _write_neuronpedia(docs, tmp, creator_id)
    writer = {"jsonl": write_jsonl, "parquet": write_parquet, "openai": write_neuron_records}[fmt]
    return writer(docs, tmp)


def _write_neuronpedia(docs, tmp: Path, creator_id: str) -> int:
    """Write the folder and say what it holds, and what of the database it could not carry."""
    from autointerp.neuronpedia_writer import write_neuronpedia

    tmp.mkdir()
    r = write_neuronpedia(docs, tmp, creator_id=creator_id)
    if r.features == 0:
        return 0
    click.echo(f"sources: {', '.join(r.sources)}; {r.activations} activation(s), {r.explanations} explanation(s), "
               f"{r.scores} score(s)", err=True)
    if r.without_records:
        click.echo(f"{len(r.without_records)} feature(s) have no records: written as features without activations "
                   f"({_some(r.without_records)})", err=True)
    if r.undefined_scores:
        click.echo(f"{r.undefined_scores} undefined score(s) left out: Neuronpedia's scores need a value", err=True)
    if r.bins_out_of_order:
        click.echo(f"{len(r.bins_out_of_order)} feature(s) have quantile bins whose lowest peaks do not rise with "
                   f"the bin, so their binMin does not give the bin back ({_some(r.bins_out_of_order)})", err=True)
    return r.features


def _some(names: list[str], shown: int = 5) -> str:
    return ", ".join(names[:shown]) + (f" and {len(names) - shown} more" if len(names) > shown else "")


def _check_out(out: Path, *, folder: bool) -> None:
    """Refuse an --out that cannot be written before reading anything."""
    parent = out.absolute().parent
    if not parent.is_dir():
        raise click.ClickException(f"--out: folder {parent} does not exist; create it or choose another --out")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise click.ClickException(f"--out: folder {parent} is not writable; choose another --out")
    if folder:
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            what = "a folder that is not empty" if out.is_dir() else "a file"
            raise click.ClickException(f"--out: {out} is {what}; the neuronpedia format writes a new folder: "
                                       "remove it or choose another --out")
    elif out.is_dir():
        raise click.ClickException(f"--out: {out} is a folder; this format writes one file (only --format "
                                   "neuronpedia writes a folder)")


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


COMMANDS = [export]
