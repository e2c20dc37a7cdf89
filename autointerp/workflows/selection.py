"""What every batch run checks before it starts: the selected features of a layer (with a clear error when
they are not in the database) and clients that can authorise a request."""

from __future__ import annotations

from sqlalchemy.orm import Session

from autointerp.workflows.options import BatchOptions, OptionsError, parse_features
from llm_client.local_models import local_model_name
from storage.core import repository as repo
from storage.core.db import Database
from storage.core.schema import Feature


def select_features(session: Session, model: str, layer: int, sae: str | None, features: str) -> list[Feature]:
    """The layer's features named by `features` (all | 0-99 | 1,5,9), with a clear error when the layer
    was never collected or an index is missing."""
    model_name = local_model_name(model)
    model_row = repo.find_model(session, model_name)
    if model_row is None:
        raise OptionsError(
            f"no features of model {model_name!r} in this database; run `autointerp collect --model {model_name} "
            f"--layers {layer}` first (or check --db)"
        )
    rows = repo.layer_features(session, model_row.id, layer, sae)
    if not rows:
        saes = repo.sae_names(session, model_row.id)
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


def check_selection(db: Database, opts: BatchOptions) -> None:
    """Raise OptionsError when the options' features are not in the database (before any run row exists)."""
    with db.session() as session:
        select_features(session, opts.model, opts.layer, opts.sae, opts.features)


def check_credentials(*clients: object) -> None:
    """OptionsError naming the first client that could not authorise any request (an openai: spec calling
    api.openai.com without OPENAI_API_KEY), so a run stops before its first feature, not once per feature."""
    for client in clients:
        problem = getattr(client, "credentials_problem", lambda: None)()
        if problem is not None:
            raise OptionsError(problem)
