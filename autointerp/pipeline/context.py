"""What every batch run needs before it starts: the selected features of a layer, an LLM client and a
simulator built from their specs, and where the response cache lives."""

from __future__ import annotations

import os

from sqlalchemy import select
from sqlalchemy.orm import Session

from autointerp.pipeline.options import OptionsError, parse_features
from llm_client.local_models import cache_dir, local_model_name
from storage.db import Database
from storage.schema import Feature, Sae, SubjectModel


def llm_cache_path(db: Database) -> str:
    """The response cache sits next to a SQLite database, or in the user cache dir for a server database."""
    if db.url.startswith("sqlite:///") and db.url != "sqlite:///:memory:":
        return db.url[len("sqlite:///"):] + ".llmcache"
    path = cache_dir() / "llmcache.sqlite"
    os.makedirs(path.parent, exist_ok=True)
    return str(path)


def select_features(session: Session, model: str, layer: int, sae: str | None, features: str) -> list[Feature]:
    """The layer's features named by `features` (all | 0-99 | 1,5,9), with a clear error when the layer
    was never collected or an index is missing."""
    model_name = local_model_name(model)
    model_row = session.scalar(select(SubjectModel).where(SubjectModel.name == model_name))
    if model_row is None:
        raise OptionsError(
            f"no features of model {model_name!r} in this database; run `autointerp collect --model {model_name} "
            f"--layers {layer}` first (or check --db)"
        )
    conds = [Feature.model_id == model_row.id, Feature.layer == layer, Feature.sae_key == (sae or "")]
    rows = list(session.scalars(select(Feature).where(*conds).order_by(Feature.index)))
    if not rows:
        saes = session.scalars(select(Sae.name).where(Sae.model_id == model_row.id)).all()
        hint = f" (SAEs in the database: {', '.join(saes)})" if saes else ""
        raise OptionsError(
            f"no {'SAE ' + sae + ' ' if sae else 'MLP '}features of {model_name} layer {layer} in this database{hint}; "
            f"run `autointerp collect --model {model_name} --layers {layer}` first"
        )
    wanted = parse_features(features)
    if wanted is None:
        return rows
    by_index = {f.index: f for f in rows}
    missing = [i for i in wanted if i not in by_index]
    if missing:
        raise OptionsError(
            f"--features: {len(missing)} index(es) not collected for layer {layer} (e.g. {missing[:5]}); "
            f"the layer has indices {rows[0].index}..{rows[-1].index}"
        )
    return [by_index[i] for i in wanted]

