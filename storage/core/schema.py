"""SQLAlchemy 2 schema: subject models, SAEs, features, records, explanations, simulations, scores, runs.

Rows are only ever added for explanations, simulations and scores: rescoring or re-explaining writes new
rows beside the old ones, each with the spec and configuration that produced it. The `config_hash`
unique keys make a rerun of the same configuration a no-op instead of a duplicate.
Denormalised `model_id`/`layer` on scores serve the hot query "best-scored features of a layer" from one
index walk.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from activations.vocab import DataSplit, OutcomeStatus, Polarity, RunStatus, ScoreRole
from storage.core.record_codes import SampleColumn, SplitColumn


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


class SubjectModel(Base):
    __tablename__ = "subject_models"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(300), unique=True)
    n_layers: Mapped[int | None] = mapped_column(Integer)
    meta: Mapped[dict] = mapped_column(JSON, default=dict)


class Sae(Base):
    __tablename__ = "saes"
    __table_args__ = (UniqueConstraint("model_id", "name", name="uq_sae_model_name"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("subject_models.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(300))
    layer: Mapped[int | None] = mapped_column(Integer)
    hook: Mapped[str | None] = mapped_column(String(300))
    width: Mapped[int | None] = mapped_column(Integer)
    architecture: Mapped[str | None] = mapped_column(String(50))
    path: Mapped[str | None] = mapped_column(Text)
    meta: Mapped[dict] = mapped_column(JSON, default=dict)


class Feature(Base):
    __tablename__ = "features"
    __table_args__ = (
        # sae_key is "" for MLP neurons, so the key is unique without relying on NULL semantics.
        UniqueConstraint("model_id", "layer", "kind", "sae_key", "index", name="uq_feature_identity"),
        Index("ix_features_layer", "model_id", "layer", "index"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("subject_models.id", ondelete="CASCADE"))
    layer: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(20))
    sae_id: Mapped[int | None] = mapped_column(ForeignKey("saes.id", ondelete="CASCADE"))
    sae_key: Mapped[str] = mapped_column(String(300), default="")
    index: Mapped[int] = mapped_column(Integer)
    max_activation: Mapped[float | None] = mapped_column(Float)
    min_activation: Mapped[float | None] = mapped_column(Float)
    mean: Mapped[float | None] = mapped_column(Float)
    variance: Mapped[float | None] = mapped_column(Float)
    firing_fraction: Mapped[float | None] = mapped_column(Float)
    n_tokens: Mapped[int | None] = mapped_column(Integer)
    dead: Mapped[bool] = mapped_column(Boolean, default=False)
    quantile_boundaries: Mapped[list | None] = mapped_column(JSON)
    extra: Mapped[dict] = mapped_column(JSON, default=dict)
    # Set when a collection finished this feature's layer; a layer without it is incomplete.
    collection_run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id", ondelete="SET NULL"))

    model: Mapped[SubjectModel] = relationship()
    sae: Mapped[Sae | None] = relationship()


class Window(Base):
    """A context window of the corpus, stored once and shared by every record (of any feature or layer)
    that picked it. `content_hash` identifies it within a subject model (provenance and tokens)."""

    __tablename__ = "windows"
    __table_args__ = (UniqueConstraint("model_id", "content_hash", name="uq_window_content"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("subject_models.id", ondelete="CASCADE"))
    content_hash: Mapped[str] = mapped_column(String(32))
    corpus: Mapped[str | None] = mapped_column(String(300))
    document: Mapped[str | None] = mapped_column(String(300))
    offset: Mapped[int | None] = mapped_column(Integer)
    token_ids: Mapped[bytes | None] = mapped_column(LargeBinary)  # int32 little-endian; None for imports
    tokens: Mapped[list] = mapped_column(JSON)  # as the subject tokenizer decodes them


class ActivationRecordRow(Base):
    """One feature's activations on one window: binary (storage.core.activation_codec). No max column: no query
    ranks records by it, and readers take it from the decoded activations (migration 0007 dropped it)."""

    __tablename__ = "activation_records"
    __table_args__ = (
        # PostgreSQL: the unique slot guards concurrent writers (read committed) and serves the reads by feature.
        # SQLite serialises writers, so the plain feature index does both jobs there at half the bytes
        # (migration 0008; `add_records` and `save_layer` never write a taken slot).
        UniqueConstraint("feature_id", "sample", "position", name="uq_record_position").ddl_if(dialect="postgresql"),
        Index("ix_activation_records_feature", "feature_id").ddl_if(dialect="sqlite"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    feature_id: Mapped[int] = mapped_column(ForeignKey("features.id", ondelete="CASCADE"))
    window_id: Mapped[int] = mapped_column(ForeignKey("windows.id"))
    # ActivationRecord.sample (top | random | bottom | quantile:<i>) and data_split (train | valid | test), stored
    # as small integer codes (storage.core.record_codes)
    sample: Mapped[str] = mapped_column(SampleColumn())
    data_split: Mapped[str] = mapped_column(SplitColumn(), default=DataSplit.TRAIN)
    position: Mapped[int] = mapped_column(Integer)  # order within its sample kind (0 = highest for top)
    activations: Mapped[bytes] = mapped_column(LargeBinary)

    window: Mapped[Window] = relationship(lazy="joined")


class Run(Base):
    __tablename__ = "runs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(30))  # RunKind
    status: Mapped[str] = mapped_column(String(20), default=RunStatus.RUNNING)  # RunStatus (never "stale")
    config: Mapped[dict] = mapped_column(JSON, default=dict)
    stats: Mapped[dict] = mapped_column(JSON, default=dict)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Written every few seconds by the process running it: a `running` run with an old heartbeat died silently.
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Explanation(Base):
    __tablename__ = "explanations"
    __table_args__ = (
        UniqueConstraint("feature_id", "config_hash", "polarity", "candidate", name="uq_explanation_config"),
        Index("ix_explanations_explainer", "explainer", "feature_id"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    feature_id: Mapped[int] = mapped_column(ForeignKey("features.id", ondelete="CASCADE"))
    run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id", ondelete="SET NULL"))
    status: Mapped[str] = mapped_column(String(10), default=OutcomeStatus.OK)  # ok | failed
    text: Mapped[str | None] = mapped_column(Text)  # None when failed
    failure_reason: Mapped[str | None] = mapped_column(Text)
    raw_output: Mapped[str | None] = mapped_column(Text)
    explainer: Mapped[str] = mapped_column(String(300))  # LLM spec, e.g. openai:gpt-4o or import:openai
    prompt_version: Mapped[str | None] = mapped_column(String(50))
    params: Mapped[dict] = mapped_column(JSON, default=dict)
    config_hash: Mapped[str] = mapped_column(String(64))
    polarity: Mapped[str] = mapped_column(String(10), default=Polarity.POSITIVE)  # positive | negative
    candidate: Mapped[int] = mapped_column(Integer, default=0)
    selected: Mapped[bool] = mapped_column(Boolean, default=True)  # best-of-N winner on the valid split
    prompt_tokens: Mapped[int | None] = mapped_column(Integer)
    completion_tokens: Mapped[int | None] = mapped_column(Integer)
    cost_usd: Mapped[float | None] = mapped_column(Float)
    elapsed_s: Mapped[float | None] = mapped_column(Float)
    source: Mapped[str | None] = mapped_column(Text)  # imported file, when imported
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    feature: Mapped[Feature] = relationship()


class Simulation(Base):
    __tablename__ = "simulations"
    __table_args__ = (
        UniqueConstraint("explanation_id", "config_hash", name="uq_simulation_config"),
        # The feature page lists a feature's simulations, including shuffled baselines of others' explanations.
        Index("ix_simulations_feature", "feature_id"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    explanation_id: Mapped[int] = mapped_column(ForeignKey("explanations.id", ondelete="CASCADE"))
    run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id", ondelete="SET NULL"))
    simulator: Mapped[str] = mapped_column(String(300))
    config_hash: Mapped[str] = mapped_column(String(64))
    # Whose explanation was simulated: "own", or "shuffled" for the shuffled baseline (explanation_id then
    # points at the explanation of another feature, and feature_id at the feature being scored).
    role: Mapped[str] = mapped_column(String(10), default=ScoreRole.OWN)
    feature_id: Mapped[int] = mapped_column(ForeignKey("features.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(10), default=OutcomeStatus.OK)  # ok | failed
    failure_reason: Mapped[str | None] = mapped_column(Text)
    params: Mapped[dict] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class SimulatedRecord(Base):
    """Per-record expected activations. `record_id` links a stored record; imported simulations whose
    records exist only inside the simulation keep their tokens and true activations here."""

    __tablename__ = "simulated_records"
    __table_args__ = (UniqueConstraint("simulation_id", "position", name="uq_simulated_position"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    simulation_id: Mapped[int] = mapped_column(ForeignKey("simulations.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)
    record_id: Mapped[int | None] = mapped_column(ForeignKey("activation_records.id", ondelete="CASCADE"))
    sample: Mapped[str | None] = mapped_column(String(30))  # the simulated record's sample kind
    tokens: Mapped[list | None] = mapped_column(JSON)
    # Binary arrays (storage.core.activation_codec); the distribution has one row per token.
    true_activations: Mapped[bytes | None] = mapped_column(LargeBinary)
    expected_activations: Mapped[bytes] = mapped_column(LargeBinary)
    distribution: Mapped[bytes | None] = mapped_column(LargeBinary)


class Score(Base):
    __tablename__ = "scores"
    __table_args__ = (
        UniqueConstraint("simulation_id", "explanation_id", "method", "subset", "scorer_hash", name="uq_score"),
        # One index walk answers "best features of a layer under method/subset".
        Index("ix_scores_rank", "model_id", "layer", "method", "subset", "value"),
        Index("ix_scores_method_rank", "method", "subset", "value"),
        Index("ix_scores_feature", "feature_id", "method", "subset"),
        Index("ix_scores_explanation", "explanation_id"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    explanation_id: Mapped[int] = mapped_column(ForeignKey("explanations.id", ondelete="CASCADE"))
    simulation_id: Mapped[int | None] = mapped_column(ForeignKey("simulations.id", ondelete="CASCADE"))
    feature_id: Mapped[int] = mapped_column(ForeignKey("features.id", ondelete="CASCADE"))
    model_id: Mapped[int] = mapped_column(ForeignKey("subject_models.id", ondelete="CASCADE"))
    layer: Mapped[int] = mapped_column(Integer)
    run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id", ondelete="SET NULL"))
    method: Mapped[str] = mapped_column(String(50))  # ev_correlation | rsquared | absolute_dev_explained | ...
    subset: Mapped[str] = mapped_column(String(30))  # top_and_random | random_only | valid | ...
    role: Mapped[str] = mapped_column(String(10), default=ScoreRole.OWN)  # own | shuffled (shuffled baseline)
    simulator: Mapped[str | None] = mapped_column(String(300))
    scorer_hash: Mapped[str] = mapped_column(String(64), default="")
    value: Mapped[float | None] = mapped_column(Float)  # None = undefined, see undefined_reason
    undefined_reason: Mapped[str | None] = mapped_column(Text)
    ci_low: Mapped[float | None] = mapped_column(Float)
    ci_high: Mapped[float | None] = mapped_column(Float)
    n_records: Mapped[int | None] = mapped_column(Integer)
    details: Mapped[dict] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ExplanationEmbedding(Base):
    """Sentence embedding of an explanation's text (float32, unit length) for semantic search; computed
    lazily by storage.search.semantic, one row per (explanation, embedding model)."""

    __tablename__ = "explanation_embeddings"
    explanation_id: Mapped[int] = mapped_column(ForeignKey("explanations.id", ondelete="CASCADE"), primary_key=True)
    embedder: Mapped[str] = mapped_column(String(300), primary_key=True)
    dim: Mapped[int] = mapped_column(Integer)
    vector: Mapped[bytes] = mapped_column(LargeBinary)

__all__ = [
    "Base",
    "SubjectModel",
    "Sae",
    "Feature",
    "Window",
    "ActivationRecordRow",
    "Run",
    "Explanation",
    "Simulation",
    "SimulatedRecord",
    "Score",
    "ExplanationEmbedding",
    "Lease",
    "SteeringRow",
]


class Lease(Base):
    """Work queue of a distributed batch: one row per (feature, configuration). A worker claims a few
    unfinished rows whose lease is free or expired, renews them while it works, and marks each finished in
    the transaction that stores its result; a dead worker's rows come back when their lease expires."""

    __tablename__ = "leases"
    __table_args__ = (Index("ix_leases_claimable", "config_hash", "finished", "expires_at"),)
    feature_id: Mapped[int] = mapped_column(ForeignKey("features.id", ondelete="CASCADE"), primary_key=True)
    config_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    worker: Mapped[str | None] = mapped_column(String(200))
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    attempts: Mapped[int] = mapped_column(Integer, default=0)  # claims so far; a feature that kills workers stops
    finished: Mapped[bool] = mapped_column(Boolean, default=False)
    run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id", ondelete="SET NULL"))


class SteeringRow(Base):
    """A feature steered under one steering configuration (`config_hash`: model, hook, target KL, prompts version,
    temperature, seed, tokens, unsteered count): the strength found and the KL it gave, and per neutral prompt
    its steered and unsteered continuations; or the failure with its reason (strength and KL of the strongest
    try, when there was one)."""

    __tablename__ = "steering_results"
    __table_args__ = (UniqueConstraint("feature_id", "config_hash", name="uq_steering_config"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    feature_id: Mapped[int] = mapped_column(ForeignKey("features.id", ondelete="CASCADE"))
    config_hash: Mapped[str] = mapped_column(String(64))
    config: Mapped[dict] = mapped_column(JSON, default=dict)
    run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id", ondelete="SET NULL"))
    status: Mapped[str] = mapped_column(String(10), default=OutcomeStatus.OK)  # ok | failed
    failure_reason: Mapped[str | None] = mapped_column(Text)
    strength: Mapped[float | None] = mapped_column(Float)
    kl: Mapped[float | None] = mapped_column(Float)
    target_kl: Mapped[float] = mapped_column(Float)
    prompts: Mapped[list] = mapped_column(JSON, default=list)
    steered: Mapped[list] = mapped_column(JSON, default=list)  # one text per prompt
    unsteered: Mapped[list] = mapped_column(JSON, default=list)  # per prompt, a list of texts
    forward_passes: Mapped[int | None] = mapped_column(Integer)
    elapsed_s: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
