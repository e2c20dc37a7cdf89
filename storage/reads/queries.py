"""Ranked feature queries: best score per feature under a method and filters, text search, unscored features.

The ranking walks the `ix_scores_rank` index in descending score order and keeps each feature's first
(best) row, so "top 100 of a layer" reads little more than 100 index entries whatever the table size.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, func, literal_column, select, text
from sqlalchemy.orm import Session

from activations.errors import UserError
from activations.vocab import ScoreMethod, ScoreRole, ScoringSubset
from scorer import ALL_METHODS
from scorer.methods import (
    EXAMPLE_SUBSETS,
    SIMULATION_SUBSETS,
    STEERING_SUBSETS,
    is_stored_subset,
    stored_subsets_text,
    subsets_of,
)
from storage.core.repository import current_explanations
from storage.core.rows import feature_key_dict, record_dict
from storage.core.schema import ActivationRecordRow, Explanation, Feature, Sae, Score, SubjectModel
from storage.reads.score_source import current_version, is_imported, measured

# Plain strings (the enum values): click.Choice would offer an Enum's member names instead of its values.
SCORE_METHODS = tuple(m.value for m in ALL_METHODS)  # every method the scorers store per subset
SUBSETS = SIMULATION_SUBSETS + EXAMPLE_SUBSETS + STEERING_SUBSETS
MAX_SEARCH_CHARS = 200
SEARCH_SCAN_THRESHOLD = 2000  # matches above which a search walks the score index instead
ShownScore = tuple[int, float | None, int | None, bool]  # feature id, score shown, its explanation id, imported
BestScore = tuple[int, float, int, bool]  # a ShownScore of a scored feature


class QueryError(UserError):
    """A filter value is unusable; the message says which and why."""


def default_subset(method: str) -> str:
    """The subset a method ranks on when none is named: its first (top_and_random for simulation methods, random
    for detection, fuzzing and embedding); top_and_random for a method no scorer here knows (e.g. imported)."""
    try:
        return subsets_of(method)[0]
    except ValueError:
        return ScoringSubset.TOP_AND_RANDOM


def check_method_subset(method: str, subset: str) -> None:
    """A clear error for a subset the method is never stored on (the query would find nothing)."""
    try:
        stored = is_stored_subset(method, subset)
    except ValueError:
        return  # not a method the scorers here store: nothing to check against
    if not stored:
        raise QueryError(f"method {method} is stored on subsets {stored_subsets_text(method)}, not {subset!r}; "
                         f"leave out --subset to use {default_subset(method)}")


@dataclass
class FeatureQuery:
    model: str | None = None
    layer: int | None = None
    kind: str | None = None
    sae: str | None = None
    min_score: float | None = None
    search: str | None = None
    explainer: str | None = None
    simulator: str | None = None
    method: str = ScoreMethod.EV_CORRELATION
    subset: str = ScoringSubset.TOP_AND_RANDOM
    limit: int = 100
    offset: int = 0
    feature_indices: list[int] | None = None
    include_imported: bool = False  # let scores imported from files rank and head features (storage.reads.score_source)

    def validate(self) -> None:
        if self.limit < 1:
            raise QueryError(f"limit must be >= 1 (got {self.limit})")
        if self.offset < 0:
            raise QueryError(f"offset must be >= 0 (got {self.offset})")
        if self.search is not None and len(self.search) > MAX_SEARCH_CHARS:
            raise QueryError(f"search text is {len(self.search)} characters; the limit is {MAX_SEARCH_CHARS}")
        if self.search is not None and not search_terms(self.search):
            raise QueryError(f"search text {self.search!r} has no words to search for")


def search_terms(text_query: str) -> list[str]:
    return re.findall(r"\w+", text_query.lower())


def _fts5_match(text_query: str) -> str:
    # Quoted terms: user text never reaches FTS5 query syntax (AND/NEAR/column filters).
    return " ".join(f'"{term}"' for term in search_terms(text_query))


def matching_explanation_ids(session: Session, text_query: str) -> Select:
    """A subquery of explanation ids whose text matches all words of `text_query` (stemmed)."""
    if session.get_bind().dialect.name == "sqlite":
        return select(literal_column("rowid")).select_from(text("explanations_fts")).where(
            text("explanations_fts MATCH :fts_q").bindparams(fts_q=_fts5_match(text_query))
        )
    return select(Explanation.id).where(
        text("to_tsvector('english', coalesce(explanations.text, '')) @@ plainto_tsquery('english', :ts_q)").bindparams(
            ts_q=" ".join(search_terms(text_query))
        )
    )


@dataclass
class FeatureFilter:
    model_id: int | None
    conds: list[Any]  # conditions on Feature other than the model
    needs_join: bool  # whether scores must be joined to features to apply them


def feature_filter(session: Session, q: FeatureQuery) -> FeatureFilter | None:
    """Conditions on features; None when the named model does not exist (so nothing can match)."""
    model_id = None
    if q.model is not None:
        model_id = session.scalar(select(SubjectModel.id).where(SubjectModel.name == q.model))
        if model_id is None:
            return None
    conds: list[Any] = []
    if q.layer is not None:
        conds.append(Feature.layer == q.layer)
    if q.kind is not None:
        conds.append(Feature.kind == q.kind)
    if q.sae is not None:
        conds.append(Feature.sae_key == q.sae)
    if q.feature_indices is not None:
        conds.append(Feature.index.in_(q.feature_indices))
    needs_join = q.kind is not None or q.sae is not None or q.feature_indices is not None
    return FeatureFilter(model_id, conds, needs_join)


def all_feature_conds(ff: FeatureFilter) -> list[Any]:
    return ff.conds + ([Feature.model_id == ff.model_id] if ff.model_id is not None else [])


def ranking_score_conds(q: FeatureQuery, *, per_explanation: bool = False) -> list[Any]:
    """The scores that rank features and head their rows: own (not shuffled-baseline), defined, of the current
    scoring version and measured here (imported ones only with `include_imported`), under the query's method and
    subset. Every ranking, headline
    score and comparison reads scores through these conditions.

    `per_explanation`: written so that SQLite finds a given explanation's scores through ix_scores_explanation;
    without statistics (no ANALYZE) it would otherwise walk ix_scores_method_rank, every score of the method, once
    per explanation (`|| ''` keeps it off the columns of that index)."""
    def col(column: Any) -> Any:
        return column.concat("") if per_explanation else column

    conds = [col(Score.method) == q.method, col(Score.subset) == q.subset, col(Score.role) == ScoreRole.OWN,
             Score.value.is_not(None), current_version(q.method, Score.scorer_hash, col(Score.simulator))]
    if not q.include_imported:
        conds.append(measured(col(Score.simulator)))
    return conds


def filtered_score_conds(q: FeatureQuery, model_id: int | None) -> list[Any]:
    """The ranking scores narrowed by the query's model, layer, minimum score and simulator: one walk of the
    score index."""
    conds = ranking_score_conds(q)
    if model_id is not None:
        conds.append(Score.model_id == model_id)
    if q.layer is not None:
        conds.append(Score.layer == q.layer)
    if q.min_score is not None:
        conds.append(Score.value >= q.min_score)
    if q.simulator is not None:
        conds.append(Score.simulator == q.simulator)
    return conds


def _search_condition(session: Session, text_query: str) -> Any:
    """Scores whose explanation matches the text. On SQLite the plan depends on how common the words are:
    few matches are looked up by explanation id; many are better found by walking the score index best
    first and testing membership (the unary + keeps SQLite from using the explanation-id index)."""
    matches = matching_explanation_ids(session, text_query)
    if session.get_bind().dialect.name != "sqlite":
        return Score.explanation_id.in_(matches)
    n_matches = session.scalar(select(func.count()).select_from(matches.subquery()))
    if n_matches is not None and n_matches > SEARCH_SCAN_THRESHOLD:
        return literal_column("+scores.explanation_id").in_(matches)
    return Score.explanation_id.in_(matches)


def per_explanation_score_conds(q: FeatureQuery) -> list[Any]:
    """The ranking scores of `q` and its simulator, written to be looked up per explanation (see
    ranking_score_conds)."""
    conds = ranking_score_conds(q, per_explanation=True)
    if q.simulator is not None:
        conds.append(Score.simulator.concat("") == q.simulator)
    return conds


def _ranked_statement(session: Session, q: FeatureQuery, ff: FeatureFilter) -> Select:
    """Every score that may rank a feature under `q` and its filters, walking the score index best first."""
    conds = filtered_score_conds(q, ff.model_id)
    stmt = select(Score.feature_id, Score.value, Score.explanation_id, Score.simulator)
    if q.explainer is not None:
        stmt = stmt.join(Explanation, Explanation.id == Score.explanation_id)
        conds.append(Explanation.explainer == q.explainer)
    if q.search is not None:
        conds.append(_search_condition(session, q.search))
    if ff.needs_join:
        stmt = stmt.join(Feature, Feature.id == Score.feature_id)
        conds.extend(ff.conds)
    return stmt.where(*conds)


def best_scores(session: Session, q: FeatureQuery, *, limit: int | None = None,
                explanation_ids: Sequence[int] | None = None) -> list[BestScore]:
    """The one best-score-per-feature query, behind query, compare, semantic search and the API: each feature's
    best ranking score under `q` (ranking_score_conds and every filter of `q`) with the explanation behind it,
    best first (the newest score first among equal ones). With `limit`, the page `q.offset` .. `q.offset + limit`
    of that ranking, read by walking the score index only that far; without, every ranked feature.

    `explanation_ids`: only these explanations' scores, each feature's best among them, looked up through the
    explanation index; the caller chose them by `q`'s feature, explainer, text and score filters (semantic search
    shows one matched explanation per feature)."""
    if explanation_ids is not None:
        stmt = select(Score.feature_id, Score.value, Score.explanation_id, Score.simulator).where(
            Score.explanation_id.in_(list(explanation_ids)), *per_explanation_score_conds(q))
        wanted = None
    else:
        ff = feature_filter(session, q)
        if ff is None:
            return []
        stmt = _ranked_statement(session, q, ff)
        wanted = None if limit is None else q.offset + limit
    stmt = stmt.order_by(Score.value.desc(), Score.id.desc())
    # Fetch in pages about the size of the answer: the walk usually stops long before the index ends.
    rows = session.execute(stmt.execution_options(yield_per=max(64, min(wanted or 1000, 1000))))
    seen: set[int] = set()
    out: list[BestScore] = []
    for feature_id, value, explanation_id, simulator in rows:
        if feature_id in seen or value is None:  # value: never, the conditions skip undefined scores
            continue
        seen.add(feature_id)
        out.append((feature_id, value, explanation_id, is_imported(simulator)))
        if wanted is not None and len(out) >= wanted:
            break
    return out[q.offset:] if wanted is not None else out


def _unscored_features(session: Session, q: FeatureQuery, exclude: set[int], skip: int, limit: int) -> list[int]:
    """Features with no score under the query's method (listed after the scored ones, by layer and index)."""
    ff = feature_filter(session, q)
    if ff is None:
        return []
    scored = select(Score.feature_id).where(Score.feature_id == Feature.id, *ranking_score_conds(q))
    stmt = (
        select(Feature.id)
        .where(*all_feature_conds(ff), ~scored.exists())
        .order_by(Feature.model_id, Feature.layer, Feature.kind, Feature.sae_key, Feature.index)
        .offset(skip)
        .limit(limit + len(exclude))
    )
    return [fid for fid in session.scalars(stmt) if fid not in exclude][:limit]


def count_scored(session: Session, q: FeatureQuery) -> int:
    """Distinct features with a score under the query's method, subset and feature filters."""
    ff = feature_filter(session, q)
    if ff is None:
        return 0
    ranked = (
        select(Score.feature_id)
        .join(Feature, Feature.id == Score.feature_id)
        .where(*ranking_score_conds(q), *all_feature_conds(ff))
    )
    return session.scalar(select(func.count()).select_from(ranked.distinct().subquery())) or 0


def query_features(session: Session, q: FeatureQuery, *, with_records: bool = False) -> list[dict[str, Any]]:
    """The features matching `q`, each once, best score first; then unscored features when no score,
    text or explainer filter excludes them."""
    q.validate()
    scored = best_scores(session, q, limit=q.limit)
    rows: list[ShownScore] = list(scored)
    score_filtered = any(f is not None for f in (q.min_score, q.search, q.explainer, q.simulator))
    if len(rows) < q.limit and not score_filtered:
        n_scored_total = len(scored) + q.offset if len(scored) else count_scored(session, q)
        skip = max(0, q.offset - n_scored_total)
        extra = _unscored_features(session, q, {r[0] for r in rows}, skip, q.limit - len(rows))
        rows.extend((fid, None, None, False) for fid in extra)
    return describe_features(session, rows, method=q.method, subset=q.subset, with_records=with_records)


def describe_features(
    session: Session, rows: Sequence[ShownScore], *, method: str, subset: str, with_records: bool = False,
) -> list[dict[str, Any]]:
    """Turn (feature_id, score, explanation_id, imported) rows into result dicts, in the given order."""
    if not rows:
        return []
    ids = [r[0] for r in rows]
    features = {
        f.id: (f, model_name)
        for f, model_name in session.execute(
            select(Feature, SubjectModel.name)
            .join(SubjectModel, SubjectModel.id == Feature.model_id)
            .where(Feature.id.in_(ids))
        )
    }
    explanation_ids = [r[2] for r in rows if r[2] is not None]
    explanations = {e.id: e for e in session.scalars(select(Explanation).where(Explanation.id.in_(explanation_ids)))}
    latest = current_explanations(session, [r[0] for r in rows if r[2] is None])
    records = records_by_feature(session, ids) if with_records else {}
    out = []
    for feature_id, value, explanation_id, imported in rows:
        feature, model_name = features[feature_id]
        explanation = explanations.get(explanation_id) if explanation_id else latest.get(feature_id)
        item: dict[str, Any] = {
            **feature_key_dict(feature, model_name),
            "score": value,
            # The score is the file's own number, not measured here (only when the query included imported scores).
            "score_imported": imported if value is not None else None,
            "method": method,
            "subset": subset,
            "explanation": explanation.text if explanation else None,
            "explainer": explanation.explainer if explanation else None,
            "explanation_id": explanation.id if explanation else None,
            "max_activation": feature.max_activation,
            "firing_fraction": feature.firing_fraction,
            "dead": feature.dead,
            # Weight evidence stored at collection (None for imports and older collections).
            "logits": (feature.extra or {}).get("logits"),
            "neighbours": (feature.extra or {}).get("neighbours"),
        }
        if with_records:
            item["records"] = records.get(feature_id, [])
        out.append(item)
    return out


def records_by_feature(session: Session, feature_ids: list[int]) -> dict[int, list[dict[str, Any]]]:
    """Each feature's records as dicts, by sample kind then position."""
    out: dict[int, list[dict[str, Any]]] = {}
    stmt = (
        select(ActivationRecordRow)
        .where(ActivationRecordRow.feature_id.in_(feature_ids))
        .order_by(ActivationRecordRow.feature_id, ActivationRecordRow.sample, ActivationRecordRow.position)
    )
    for row in session.scalars(stmt):
        out.setdefault(row.feature_id, []).append(record_dict(row))
    return out


def run_scores(session: Session, run_id: int, *, method: str, subset: str) -> list[dict[str, Any]]:
    """Own and shuffled scores a run wrote, one dict per scored explanation (index, explanation, score,
    shuffled), best first."""
    rows = session.execute(
        select(Feature.index, Explanation.text, Score.role, Score.value, Score.explanation_id)
        .join(Explanation, Explanation.id == Score.explanation_id)
        .join(Feature, Feature.id == Score.feature_id)
        .where(Score.run_id == run_id, Score.method == method, Score.subset == subset)
    ).all()
    by_explanation: dict[int, dict[str, Any]] = {}
    for index, text_, role, value, explanation_id in rows:
        item = by_explanation.setdefault(explanation_id, {"index": index, "explanation": text_, "score": None,
                                                          "shuffled": None})
        item["score" if role == ScoreRole.OWN else "shuffled"] = value
    return sorted(by_explanation.values(), key=lambda r: (r["score"] is None, -(r["score"] or 0.0)))


def list_models(session: Session) -> list[dict[str, Any]]:
    """Subject models with their layers (and feature counts) and SAEs."""
    out = []
    for model in session.scalars(select(SubjectModel).order_by(SubjectModel.name)):
        layers = session.execute(
            select(Feature.layer, Feature.kind, Feature.sae_key, func.count())
            .where(Feature.model_id == model.id)
            .group_by(Feature.layer, Feature.kind, Feature.sae_key)
            .order_by(Feature.layer)
        ).all()
        saes = session.scalars(select(Sae).where(Sae.model_id == model.id).order_by(Sae.name)).all()
        out.append(
            {
                "model": model.name,
                "n_layers": model.n_layers,
                "layers": [
                    {"layer": layer, "kind": kind, "sae": sae_key or None, "features": n}
                    for layer, kind, sae_key, n in layers
                ],
                "saes": [
                    {"name": s.name, "layer": s.layer, "width": s.width, "architecture": s.architecture} for s in saes
                ],
            }
        )
    return out
