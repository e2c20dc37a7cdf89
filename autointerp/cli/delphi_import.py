"""`autointerp import` of delphi output: a latent cache (read and sampled per hookpoint) or a run folder (its
run_config.json, explanations/, scores/ and, when present, latents/), all written in one transaction (a malformed
file anywhere writes nothing)."""

from __future__ import annotations

from pathlib import Path

import click

from activations.importers import ImportedFeature, ImportFormatError
from activations.importers.delphi_cache import DelphiHookpoint, hookpoint_dirs, read_delphi_cache
from activations.importers.delphi_records import delphi_features
from activations.importers.delphi_run import read_delphi_run
from autointerp.workflows.delphi_explanations import delphi_run_items
from llm_client.local_models import load_tokenizer, local_model_name
from storage.core.db import Database
from storage.records.import_store import save_imported_file


def _cache_items(hookpoints: list[DelphiHookpoint], name: str) -> list[ImportedFeature]:
    if not hookpoints:
        return []
    tokenizer = load_tokenizer(name)
    items: list[ImportedFeature] = []
    for hookpoint in hookpoints:
        items += delphi_features(hookpoint, tokenizer, name)
    return items


def _need_model(folder: Path, what: str, named: object) -> ImportFormatError:
    return ImportFormatError(f"{folder}: a delphi {what} needs --model, the subject model whose tokenizer made its "
                             f"tokens (its {'config.json' if what == 'cache' else 'run_config.json'} names "
                             f"{named!r}), e.g. --model smollm2-135m")


def import_delphi_cache(db: Database, folder: Path, model: str | None) -> None:
    hookpoints = read_delphi_cache(folder)
    if model is None:
        raise _need_model(folder, "cache", hookpoints[0].config.get("model_name", "not given"))
    name = local_model_name(model)
    items = _cache_items(hookpoints, name)
    with db.session() as session, session.begin():
        added = save_imported_file(session, items, str(folder))
    summary = ", ".join(f"{n} {key}" for key, n in added.items() if key in ("features", "records"))
    names = ", ".join(h.name for h in hookpoints)
    click.echo(f"imported delphi cache {folder} ({len(hookpoints)} hookpoint(s): {names}): added {summary}", err=True)


def import_delphi_run(db: Database, folder: Path, model: str | None) -> None:
    """A run folder: its latent cache (when it has one), explanations and classifier scores, in one transaction."""
    run = read_delphi_run(folder)
    latents = folder / "latents"
    hookpoints = read_delphi_cache(latents) if latents.is_dir() and hookpoint_dirs(latents) else []
    if model is None:
        raise _need_model(folder, "run", run.config.get("model", "not given"))
    name = local_model_name(model)
    items = delphi_run_items(run, name, _cache_items(hookpoints, name))
    with db.session() as session, session.begin():
        added = save_imported_file(session, items.features, str(folder))
    summary = ", ".join(f"{n} {key}" for key, n in added.items())
    cache = f", latent cache of {len(hookpoints)} hookpoint(s)" if hookpoints else ""
    click.echo(f"imported delphi run {folder} ({len(run.latents)} explanation(s){cache}): added {summary}", err=True)
    for reason, files in items.skipped.items():
        click.echo(f"not imported as scores: {len(files)} file(s), e.g. {files[0]}: {reason}", err=True)
