"""`autointerp embed`: precompute the sentence embeddings of explanations and bring the semantic index up to date,
so semantic search on a big database never has to embed at query time."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import click
from sqlalchemy.orm import Session

from autointerp.api.embedder import DEFAULT_EMBEDDER
from autointerp.cli import summary
from autointerp.cli.errors import Command
from autointerp.cli.options import db_option
from autointerp.runtime.interrupts import sigterm_interrupts
from autointerp.runtime.progress import ProgressDisplay
from autointerp.settings import get_settings
from llm_client.local_models import local_model_name
from storage.core.db import Database
from storage.search.embedding_jobs import (
    EmbedSelection,
    SelectionError,
    embed_missing,
    embedding_counts,
    resolve_selection,
)


class EmbedError(click.ClickException):
    pass


def load_embedder(spec: str) -> Any:
    """The embedding model for `--embedder`: the MiniLM shipped with autointerp, or any sentence-transformers
    model name or directory (the name labels the stored vectors)."""
    from autointerp.api.embedder import SentenceEmbedder

    if spec == DEFAULT_EMBEDDER:
        return SentenceEmbedder(local_files_only=get_settings().offline)
    return SentenceEmbedder(name=spec, path=spec, local_files_only=get_settings().offline)


def _selection(session: Session, model: str | None, layer: int | None, sae: str | None) -> tuple[EmbedSelection, str]:
    """The explanations to embed and words for them; an EmbedError names what exists when a filter matches
    nothing."""
    name = local_model_name(model) if model is not None else None
    try:
        selection = resolve_selection(session, name, layer, sae)
    except SelectionError as exc:
        raise EmbedError(str(exc)) from None
    words = " ".join(w for w in (
        f"layer {layer}" if layer is not None else "all layers",
        f"of {name}" if name else "of all models",
        f"SAE {sae}" if sae else "",
    ) if w)
    return selection, words


@click.command("embed", cls=Command, short_help=summary("embed"))
@click.option("--model", default=None, help="Subject model whose explanations to embed (default: all).")
@click.option("--layer", type=click.IntRange(0), default=None, help="Only this layer (default: all).")
@click.option("--sae", default=None, help="Only latents of this SAE id (default: neurons and latents).")
@click.option("--embedder", default=DEFAULT_EMBEDDER, show_default=True,
              help="Sentence-transformers model name or path; the default is the MiniLM shipped with autointerp, "
                   "the one semantic search in the API uses.")
@click.option("--batch-size", type=click.IntRange(1, 65_536), default=256, show_default=True,
              help="Texts per embedding call; each batch is committed on its own.")
@click.option("--rebuild-index", is_flag=True, help="Rebuild the semantic index from scratch instead of updating it.")
@db_option
def embed(model: str | None, layer: int | None, sae: str | None, embedder: str, batch_size: int,
          rebuild_index: bool, db_url: str) -> None:
    """Precompute explanation embeddings and bring the semantic-search index up to date.

    Embeds every successful explanation of the selection that has no vector for the embedder yet, commits each
    batch, and then updates the approximate-nearest-neighbour index (faiss) that semantic search uses on large
    databases: beside a SQLite file as DB.ann/, for a server database under the cache dir. Rerunning resumes
    where an interrupted run stopped; a run with nothing to embed only updates the index.

    \b
    Examples:
      autointerp embed --model gemma-3-270m --layer 6
      autointerp embed                                   # every explanation in the database
      autointerp embed --db postgresql://user@host/db --batch-size 512
    """
    from storage.search import embedding_index as ann  # faiss

    settings = get_settings()
    db = Database(db_url)
    root = ann.index_root(db.url, settings.cache_dir)
    show = sys.stderr.isatty()
    started = time.perf_counter()
    with db.session() as session:
        selection, words = _selection(session, model, layer, sae)
        total, before = embedding_counts(session, embedder, selection)
    todo = total - before
    if total == 0:
        click.echo(f"no explanations to embed for {words}; explain some features first", err=True)
    done = 0
    embed_fn = load_embedder(embedder) if todo else None
    loop_started = time.perf_counter()
    with sigterm_interrupts():
        try:
            if embed_fn is not None:
                with db.session() as session, ProgressDisplay(todo, label="embedding", unit="expl",
                                                              show=show) as display:
                    for n in embed_missing(session, embedder, _checked(embed_fn), selection, batch_size=batch_size):
                        session.commit()
                        done += n
                        display.update(done)
        except KeyboardInterrupt:
            click.echo(f"interrupted: {done:,} explanations embedded and kept; rerun the same command to resume "
                       "(the semantic index was not updated)", err=True)
            raise SystemExit(130) from None
        embed_s = time.perf_counter() - started
        loop_s = time.perf_counter() - loop_started
        index_note = "no index (in-memory database)"
        if root is not None:
            index_note = _update_index(db, root, embedder, rebuild_index, show)
    rate = f" ({done / loop_s:,.0f}/s)" if done and loop_s > 0 else ""
    click.echo(f"embedded {done:,} explanations for {words} with {embedder} in {embed_s:.1f} s{rate}; "
               f"{before:,} already embedded, {total - before - done:,} left; {index_note}")


def _checked(embed_fn: Any) -> Any:
    """The embedder, turning a model that cannot load into a clean error."""
    def call(texts: Any) -> Any:
        try:
            return embed_fn(texts)
        except (OSError, ValueError, ImportError) as exc:
            raise EmbedError(f"cannot embed with {getattr(embed_fn, 'name', 'the embedder')!r}: {exc}") from None
    return call


class _IndexProgress:
    """A bar for the vectors going into the index, shown once their number is known."""

    def __init__(self, show: bool) -> None:
        self.show = show
        self.display: ProgressDisplay | None = None

    def __call__(self, done: int, total: int, phase: str) -> None:
        if phase != "index" or not total:
            return
        if self.display is None:
            self.display = ProgressDisplay(total, label="indexing", unit="vec", show=self.show).__enter__()
        self.display.update(done)

    def close(self) -> None:
        if self.display is not None:
            self.display.__exit__(None, None, None)


def _update_index(db: Database, root: Path, embedder: str, rebuild: bool, show: bool) -> str:
    from storage.search import embedding_index_update as ann_update  # faiss

    progress = _IndexProgress(show)
    try:
        with db.session() as session:
            report = ann_update.update_index(session, root, embedder, progress=progress, rebuild=rebuild)
    except ValueError as exc:  # vectors of different dimensions stored under one embedder name
        raise EmbedError(str(exc)) from None
    finally:
        progress.close()
    how = f"rebuilt ({report.reason})" if report.rebuilt else report.reason
    return (f"index: {report.vectors:,} vectors, +{report.added:,} -{report.removed:,}, {how} in "
            f"{report.seconds:.1f} s at {report.path}")


COMMANDS = [embed]
