"""Response models of every API route, so /openapi.json (and /docs) show real types. The data are the dicts
of `storage.core.rows`, `storage.reads.queries`, `storage.reads.feature_detail` and `storage.results.runs`;
these models describe them.

Keys a storage dict gains before its model does still pass through (`extra="allow"`): a reader never loses
data to a stale model, and tests/test_api_schemas.py holds the models to the dicts."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, computed_field

from activations.vocab import RunKind, RunStatus

FeatureKind = Literal["mlp_neuron", "sae_latent"]


class Out(BaseModel):
    model_config = ConfigDict(extra="allow")


# /api/models

class LayerInfo(Out):
    layer: int
    kind: FeatureKind
    sae: str | None
    features: int


class SaeInfo(Out):
    name: str
    layer: int | None
    width: int | None
    architecture: str | None


class ModelInfo(Out):
    model: str
    n_layers: int | None
    layers: list[LayerInfo]
    saes: list[SaeInfo]


# /api/features

class FeatureKey(Out):
    feature_id: int
    model: str
    layer: int
    kind: FeatureKind
    sae: str | None
    index: int


class NearFeature(Out):
    """A nearest neighbour by weight direction (decoder row / down-projection column), same layer, kind and SAE."""

    index: int
    similarity: float  # cosine of the two directions
    feature_id: int | None = None  # feature page only: its row id, to link to (None when not stored)


class LogitLens(Out):
    """The tokens a feature's output direction raises and lowers most: [token, logit] pairs, strongest first."""

    promoted: list[tuple[str, float]]
    suppressed: list[tuple[str, float]]


class FeatureSide(Out):
    """One side (polarity) of a feature explained: the explanation behind its best score under the query's method
    and subset (its current explanation, score null, when it has no such score)."""

    explanation: str | None
    explanation_id: int
    explainer: str
    score: float | None


class FeatureSummary(FeatureKey):
    """A feature with its best score under the query's method and subset (null when unscored), and the
    explanation behind that score (else its current explanation)."""

    score: float | None
    # True when the score is an imported file's own number (only with include_imported); null when unscored.
    score_imported: bool | None
    method: str
    subset: str
    explanation: str | None
    explainer: str | None
    explanation_id: int | None
    polarity: str | None = None  # the side of the explanation shown: positive | negative
    max_activation: float | None
    min_activation: float | None = None
    # negative when the feature reaches further below zero than above it (|min| > max); null when min is unknown
    larger_side: Literal["positive", "negative"] | None = None
    sides: dict[str, FeatureSide] = {}  # each polarity explained: positive, negative
    firing_fraction: float | None
    dead: bool | None
    # Weight evidence stored at collection; null for imports and collections made before it existed.
    logits: LogitLens | None = None
    neighbours: list[NearFeature] | None = None
    similarity: float | None = None  # semantic search only: cosine similarity of the explanation to the query


class FeaturePage(Out):
    items: list[FeatureSummary]
    limit: int
    offset: int
    has_more: bool
    order: Literal["score", "similarity"]
    # Semantic search only: matching explanations left out because they have no embedding in the index yet
    # (`autointerp embed` adds them), and whether the ranking was exact or through the ANN index.
    not_embedded: int | None = None
    search_mode: Literal["exact", "ann"] | None = None


class SimilarFeatures(Out):
    items: list[FeatureSummary]
    not_embedded: int | None = None  # as in FeaturePage
    search_mode: Literal["exact", "ann"] | None = None


# /api/features/{id}

class FeatureStats(Out):
    max_activation: float | None
    min_activation: float | None
    mean: float | None
    variance: float | None
    firing_fraction: float | None
    n_tokens: int | None
    dead: bool | None
    quantile_boundaries: list[float] | None


class Record(Out):
    id: int
    sample: str  # how it was drawn: top, bottom (the most negative windows), random, quantile:<i>
    data_split: str | None
    position: int
    tokens: list[str]
    activations: list[float]
    max_activation: float | None
    corpus: str | None
    document: str | None
    offset: int | None


class Score(Out):
    id: int
    explanation_id: int | None
    simulation_id: int | None
    run_id: int | None
    method: str
    subset: str
    role: str
    simulator: str | None
    imported: bool  # imported from a file (simulator import:...): not measured here, no baseline
    scoring_version: str | None  # of a measured simulation score; only the current version ranks
    value: float | None
    undefined_reason: str | None
    ci_low: float | None
    ci_high: float | None
    n_records: int | None
    details: dict[str, Any] | None
    created_at: str | None


class RunBrief(Out):
    id: int
    kind: str
    status: str
    config: dict[str, Any] | None
    started_at: str | None
    finished_at: str | None


class Explanation(Out):
    id: int
    feature_id: int
    run_id: int | None
    text: str | None
    status: str
    failure_reason: str | None
    explainer: str
    prompt_version: str | None
    params: dict[str, Any] | None
    polarity: str | None
    candidate: int | None
    selected: bool | None
    prompt_tokens: int | None
    completion_tokens: int | None
    cost_usd: float | None
    elapsed_s: float | None
    source: str | None
    created_at: str | None
    run: RunBrief | None
    scores: list[Score]


class ShuffledBaseline(Score):
    """A score of another feature's explanation on this feature's records (the shuffled baseline): `explanation_id`
    is this feature's explanation it is the baseline of, `borrowed_explanation_id` the one actually simulated."""

    borrowed_explanation_id: int | None
    explanation_text: str | None
    explanation_feature_id: int | None


class SimulatedRecord(Out):
    position: int
    record_id: int | None
    sample: str | None
    data_split: str | None
    tokens: list[str] | None
    real: list[float] | None
    expected: list[float] | None


class Simulation(Out):
    id: int
    explanation_id: int | None
    simulator: str
    role: str
    status: str
    failure_reason: str | None
    params: dict[str, Any] | None
    run_id: int | None
    created_at: str | None
    records: list[SimulatedRecord]


class Neighbours(Out):
    prev: int | None
    next: int | None


class FeatureEvidence(Out):
    """Weight evidence stored at collection (null parts: not stored for this feature)."""

    logits: LogitLens | None
    neighbours: list[NearFeature] | None


class SteeringPrompt(Out):
    prompt: str
    steered: str  # the continuation sampled with the feature steered
    unsteered: list[str]  # continuations sampled without steering, the same way


class SteeringRun(Out):
    """The feature steered under one steering configuration: the strength and the KL it was made at, and per
    neutral prompt its continuations; or why it could not be steered."""

    status: str  # ok | failed
    failure_reason: str | None
    strength: float | None
    kl: float | None  # KL(steered || unsteered) of the next-token distribution reached, in nats
    target_kl: float
    config: dict[str, Any]
    config_hash: str
    run_id: int | None
    forward_passes: int | None
    elapsed_s: float | None
    created_at: str | None
    prompts: list[SteeringPrompt]


class FeatureDetail(FeatureKey):
    stats: FeatureStats
    records: dict[str, list[Record]]  # by sample kind: top, bottom (signed collections), quantile:<i>..., random
    # Which side is larger (|min| > max: negative), and each side explained with its best ev_correlation
    # (top_and_random); every explanation with all its scores is in `explanations`.
    larger_side: Literal["positive", "negative"] | None = None
    sides: dict[str, FeatureSide] = {}
    explanations: list[Explanation]
    shuffled_baselines: list[ShuffledBaseline]
    simulations: list[Simulation]

    # Marked deprecated in /openapi.json only: pydantic's `deprecated=` would warn on every page served.
    @computed_field(  # type: ignore[prop-decorator]
        description="The old name of shuffled_baselines, kept for one release.", json_schema_extra={"deprecated": True})
    @property
    def sanity_baselines(self) -> list[ShuffledBaseline]:
        return self.shuffled_baselines

    neighbours: Neighbours  # previous / next feature by index
    evidence: FeatureEvidence
    steering: list[SteeringRun] = []  # newest first


class ScoreDistribution(Out):
    counts: list[int]  # per bin of the histogram's edges
    n: int  # defined scores
    undefined: int  # stored as undefined (with a reason), not counted in the bins
    mean: float | None


class ScoreHistogram(Out):
    method: str
    subset: str
    simulator: str | None
    imported: bool  # scores imported from a file: no shuffled baseline to compare them with
    edges: list[float]  # N_BINS + 1 edges shared by own and shuffled
    own: ScoreDistribution
    shuffled: ScoreDistribution  # the shuffled baseline: another feature's explanation on this feature's records


class LayerScoreHistograms(Out):
    model: str
    layer: int
    kind: FeatureKind | None
    sae: str | None
    histograms: list[ScoreHistogram]


# /api/runs and /api/jobs

class RunInfo(Out):
    """A run as `storage.core.rows.run_dict` shows it: `stale` is a `running` run whose heartbeat stopped."""

    id: int
    kind: RunKind
    status: RunStatus
    config: dict[str, Any] | None
    stats: dict[str, Any]
    started_at: str | None
    finished_at: str | None
    heartbeat_at: str | None
    duration_s: float | None
    dry_run: bool  # an estimate only: nothing was explained
    exit_code: int | None  # what the command exited (or would exit) with: docs/running.md
    reason: str | None  # why it stopped early or failed
    done: int | None
    failed: int | None
    skipped: int | None
    requests: int | None
    tokens: int | None
    cost_usd: float | None


class Job(RunInfo):
    active_here: bool  # this server process is executing the run now


class JobStarted(Out):
    run_id: int
    status_url: str
