"""`autointerp query`: features ranked by their best score, with filters."""

from __future__ import annotations

import click

from activations.vocab import Polarity, ScoreMethod
from autointerp.cli import summary
from autointerp.cli.errors import Command
from autointerp.cli.formatting import FORMATS, emit
from autointerp.cli.options import db_option
from storage.core.db import Database
from storage.reads.feature_scope import check_scope
from storage.reads.queries import (
    SCORE_METHODS,
    SUBSETS,
    FeatureQuery,
    check_method_subset,
    default_subset,
    query_features,
)

TABLE_COLUMNS = ("model", "layer", "kind", "sae", "index", "score", "explainer", "explanation")
# When a negative side is explained: one line per side of a feature, the side that heads it first.
SIDE_COLUMNS = ("model", "layer", "kind", "sae", "index", "side", "larger_side", "score", "explainer", "explanation")


def side_rows(rows: list[dict]) -> list[dict] | None:
    """Table and CSV lines with a line per side explained (its own explanation and score), or None when no row
    has a negative side explained (the usual one-line-per-feature table then)."""
    if not any(Polarity.NEGATIVE in row["sides"] for row in rows):
        return None
    out = []
    for row in rows:
        order = sorted(row["sides"], key=lambda side: side != row["polarity"])
        out += [{**row, "side": side, **row["sides"][side]} for side in order] or [{**row, "side": None}]
    return out


@click.command("query", cls=Command, short_help=summary("query"))
@click.option("--model", default=None, help="Subject model name, e.g. gemma-3-270m.")
@click.option("--layer", type=int, default=None, help="Layer index.")
@click.option("--kind", type=click.Choice(["mlp_neuron", "sae_latent"]), default=None, help="Feature kind.")
@click.option("--sae", default=None, help="SAE id (for sae_latent features).")
@click.option("--min-score", type=float, default=None, help="Only features whose best score is at least this.")
@click.option("--search", default=None,
              help="Words that must all appear in the explanation (stemmed full-text search).")
@click.option("--explainer", default=None, help="Only explanations by this explainer spec, e.g. local:gemma-3-270m.")
@click.option("--simulator", default=None, help="Only scores from this simulator spec, e.g. embedding.")
@click.option("--method", type=click.Choice(SCORE_METHODS), default=ScoreMethod.EV_CORRELATION.value, show_default=True,
              help="Score to rank by.")
@click.option("--subset", default=None,
              help=f"What the score pooled: {', '.join(SUBSETS)}, or quantile:<i> (ev_correlation per quantile bin) "
                   "(default: the method's first: top_and_random for simulation methods, random for detection, "
                   "fuzzing, embedding and intruder, neutral for intervention).")
@click.option("--limit", type=click.IntRange(1, 1_000_000), default=50, show_default=True,
              help="Maximum number of features.")
@click.option("--offset", type=click.IntRange(0), default=0, help="Skip this many features (paging).")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True, help="Output format.")
@click.option("--records/--no-records", "with_records", default=None,
              help="Include each feature's activation records (default: yes for json, no otherwise).")
@click.option("--polarity", type=click.Choice([p.value for p in Polarity]), default=None,
              help="Rank by the scores of this side's explanations only (default: either side). Every row says "
                   "which side is larger (larger_side) and holds each side explained (json: sides).")
@click.option("--include-imported", is_flag=True,
              help="Let scores imported from files (no simulator here, no baseline) rank features too; they are "
                   "marked score_imported.")
@db_option
def query(model, layer, kind, sae, min_score, search, explainer, simulator, method, subset, limit, offset, fmt,
          with_records, include_imported, db_url, polarity=None) -> None:
    """List features, best-explained first: one row per feature with its best score and explanation.

    Features without a score are listed after the scored ones (score null) unless --min-score, --search,
    --explainer or --simulator filters them out. Scores imported from files rank only with --include-imported.
    A --model, --layer, --kind or --sae that matches no feature is an error that lists what the database has.

    \b
    Examples:
      autointerp query --layer 6 --min-score 0.8 --search numbers
      autointerp query --model gemma-3-270m --layer 6 --format json --limit 10
      autointerp query --method rsquared --subset random_only --format csv > best.csv
      autointerp query --layer 6 --method detection_balanced_accuracy --subset neighbours
      autointerp query --layer 6 --method ev_correlation --subset quantile:2
      autointerp query --layer 3 --include-imported
      autointerp query --layer 6 --polarity negative
    """
    subset = subset or default_subset(method)
    check_method_subset(method, subset)
    q = FeatureQuery(model=model, layer=layer, kind=kind, sae=sae, min_score=min_score, search=search,
                     explainer=explainer, simulator=simulator, method=method, subset=subset, limit=limit, offset=offset,
                     include_imported=include_imported, polarity=polarity)
    include_records = with_records if with_records is not None else fmt == "json"
    db = Database(db_url)
    with db.session() as session:
        check_scope(session, model=model, layer=layer, kind=kind, sae=sae)
        rows = query_features(session, q, with_records=include_records)
    # Only an --include-imported query can head a row with an imported score: only then is the column needed.
    sides = side_rows(rows) if fmt != "json" else None
    columns = SIDE_COLUMNS if sides is not None else TABLE_COLUMNS
    columns = (*columns, "score_imported") if include_imported else columns
    emit(sides if sides is not None else rows, fmt, columns, title=f"features by {method} ({subset})")


COMMANDS = [query]
