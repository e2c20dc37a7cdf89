"""Precomputing explanation embeddings (`autointerp embed`): which explanations a selection names (with an
error that lists what exists when a filter matches nothing), how many are embedded, and embedding the rest
in committed batches."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from activations.errors import UserError
from storage.core.repository import find_model
from storage.core.schema import Explanation, Feature, SubjectModel
from storage.search.embedding_catalog import searchable_conds
from storage.search.embedding_store import EMBED_BATCH, EmbedFn, embed_texts, has_vector, store_embeddings


class SelectionError(UserError):
    """A --model / --layer / --sae filter that matches nothing; the message lists what exists."""


@dataclass
class EmbedSelection:
    """Which explanations to embed: all searchable ones, or those of a model / layer / SAE."""

    model_id: int | None = None
    layer: int | None = None
    sae: str | None = None  # sae_key

    def conds(self) -> list[Any]:
        conds = searchable_conds()
        if self.model_id is not None:
            conds.append(Feature.model_id == self.model_id)
        if self.layer is not None:
            conds.append(Feature.layer == self.layer)
        if self.sae is not None:
            conds.append(Feature.sae_key == self.sae)
        return conds


def embedding_counts(session: Session, embedder: str, selection: EmbedSelection) -> tuple[int, int]:
    """(searchable explanations in the selection, those already embedded for `embedder`)."""
    base = select(func.count()).select_from(Explanation).join(Feature, Feature.id == Explanation.feature_id)
    total = session.scalar(base.where(*selection.conds())) or 0
    done = session.scalar(base.where(*selection.conds(), has_vector(embedder))) or 0
    return total, done


def embed_missing(session: Session, embedder: str, embed: EmbedFn, selection: EmbedSelection, *,
                  batch_size: int = EMBED_BATCH) -> Iterator[int]:
    """Embed the selection's explanations that have no vector for `embedder`, in id order, one batch at a time;
    yields each batch's size after storing it, so the caller commits per batch (an interrupted run keeps every
    committed batch, and the next run skips them)."""
    last = 0
    while True:
        rows = session.execute(
            select(Explanation.id, Explanation.text)
            .join(Feature, Feature.id == Explanation.feature_id)
            .where(*selection.conds(), Explanation.id > last, ~has_vector(embedder))
            .order_by(Explanation.id)
            .limit(batch_size)
        ).all()
        if not rows:
            return
        matrix = embed_texts(embed, [text or "" for _, text in rows], embedder)  # never empty: the query asks for text
        store_embeddings(session, embedder, [eid for eid, _ in rows], matrix)
        last = rows[-1][0]
        yield len(rows)


def resolve_selection(session: Session, model_name: str | None, layer: int | None, sae: str | None) -> EmbedSelection:
    """The selection for these filters; SelectionError names what the database has when one matches nothing."""
    selection = EmbedSelection(layer=layer, sae=sae)
    where: list[Any] = []
    if model_name is not None:
        row = find_model(session, model_name)
        if row is None:
            names = ", ".join(session.scalars(select(SubjectModel.name).order_by(SubjectModel.name))) or "no models"
            raise SelectionError(f"no model {model_name!r} in this database (it has: {names}); check --model or --db")
        selection.model_id = row.id
        where.append(Feature.model_id == row.id)
    if sae is not None:
        known = sorted(k for k in session.scalars(select(Feature.sae_key).where(*where).distinct()) if k)
        if sae not in known:
            raise SelectionError(f"no SAE {sae!r} {'of this model ' if model_name else ''}in this database "
                                 f"(SAEs: {', '.join(known) or 'none'})")
        where.append(Feature.sae_key == sae)
    if layer is not None:
        layers = sorted(session.scalars(select(Feature.layer).where(*where).distinct()))
        if layer not in layers:
            raise SelectionError(f"no features at layer {layer} for this selection (layers: "
                                 f"{', '.join(map(str, layers)) or 'none'})")
    return selection
