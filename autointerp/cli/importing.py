"""`autointerp import FILE_OR_DIR`: load OpenAI or Neuronpedia files, one transaction per file, or a delphi latent
cache, one transaction for the whole cache."""

from __future__ import annotations

from pathlib import Path

import click

from activations.importers import ImportFormatError, parse_file
from activations.importers.delphi_run import is_delphi_run
from activations.importers.detect import is_delphi_cache
from autointerp.cli import summary
from autointerp.cli.delphi_import import import_delphi_cache, import_delphi_run
from autointerp.cli.errors import Command
from autointerp.cli.options import db_option
from storage.core.db import Database
from storage.records.import_store import save_imported_file

IMPORTABLE_SUFFIXES = (".json", ".jsonl", ".jsonl.gz")


def _files(target: Path) -> list[Path]:
    if target.is_dir():
        files = sorted(p for p in target.rglob("*") if p.name.endswith(IMPORTABLE_SUFFIXES) and p.is_file())
        if not files:
            raise click.ClickException(f"{target}: no .json, .jsonl or .jsonl.gz files in this folder")
        return files
    return [target]


@click.command("import", cls=Command, short_help=summary("import"))
@click.argument("target", type=click.Path(exists=True, path_type=Path))
@click.option("--model", default=None, help="Subject model name for OpenAI files (they do not say; default gpt2-xl); "
              "overrides a Neuronpedia file's model_id; a delphi cache needs it (its tokenizer decodes the tokens).")
@db_option
def import_command(target: Path, model: str | None, db_url: str) -> None:
    """Import activation records, explanations and scores from FILE_OR_DIR.

    \b
    Formats (recognised from the content):
      OpenAI NeuronRecord JSON, OpenAI explanation JSON/JSONL (scored_explanations),
      Neuronpedia dashboard JSON ({model_id, layer, sae_set, features: [...]}),
      Neuronpedia Activation rows (<model>/<source>/activations/batch-<n>.jsonl.gz, as
      `export --format neuronpedia` and Neuronpedia's dataset exports write them),
      a delphi latent cache folder (<hookpoint>/config.json and <first>_<last>.safetensors
      shards): each latent's records are sampled as `collect` samples them,
      a delphi run folder (run_config.json, explanations/, scores/<scorer>/, latents/): its
      explanations with their provenance, detection and fuzz scores computed from the
      per-example results (labelled imported), and its latent cache when present.
    Each file (a delphi cache: the whole cache) is one transaction: a malformed file writes nothing
    and names the file and field.
    Importing the same file twice adds nothing.

    \b
    Example:
      autointerp import tests/fixtures/neuronpedia/
      autointerp import neurons/ --model gpt2-xl --db results.db
      autointerp import latents/ --model smollm2-135m
      autointerp import results/my_run --model smollm2-135m
    """
    db = Database(db_url)
    if is_delphi_cache(target):
        import_delphi_cache(db, target, model)
        return
    if is_delphi_run(target):
        import_delphi_run(db, target, model)
        return
    files = _files(target)
    totals = {"features": 0, "records": 0, "explanations": 0, "scores": 0}
    failed = []
    for path in files:
        try:
            items = parse_file(path, model=model)
        except (ImportFormatError, OSError, UnicodeDecodeError) as exc:
            failed.append(str(exc))
            click.echo(f"error: {exc}", err=True)
            continue
        with db.session() as session, session.begin():
            for key, n in save_imported_file(session, items, str(path)).items():
                totals[key] += n
    summary = ", ".join(f"{n} {key}" for key, n in totals.items())
    click.echo(f"imported {len(files) - len(failed)} of {len(files)} file(s): added {summary}", err=True)
    if failed:
        raise click.ClickException(
            f"{len(failed)} file(s) not imported (nothing of them was written); see errors above")


COMMANDS = [import_command]
