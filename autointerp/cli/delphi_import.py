"""`autointerp import` of a delphi latent cache: read and sample every hookpoint, then write it all in one
transaction (a malformed cache writes nothing)."""

from __future__ import annotations

from pathlib import Path

import click

from activations.importers import ImportedFeature, ImportFormatError
from activations.importers.delphi_cache import read_delphi_cache
from activations.importers.delphi_records import delphi_features
from llm_client.local_models import load_tokenizer, local_model_name
from storage.core.db import Database
from storage.records.import_store import save_imported_file


def import_delphi_cache(db: Database, folder: Path, model: str | None) -> None:
    hookpoints = read_delphi_cache(folder)
    if model is None:
        named = hookpoints[0].config.get("model_name", "not given")
        raise ImportFormatError(f"{folder}: a delphi cache needs --model, the subject model whose tokenizer made its "
                                f"tokens (its config.json names {named!r}), e.g. --model smollm2-135m")
    name = local_model_name(model)
    tokenizer = load_tokenizer(name)
    items: list[ImportedFeature] = []
    for hookpoint in hookpoints:
        items += delphi_features(hookpoint, tokenizer, name)
    with db.session() as session, session.begin():
        added = save_imported_file(session, items, str(folder))
    summary = ", ".join(f"{n} {key}" for key, n in added.items() if key in ("features", "records"))
    names = ", ".join(h.name for h in hookpoints)
    click.echo(f"imported delphi cache {folder} ({len(hookpoints)} hookpoint(s): {names}): added {summary}", err=True)
