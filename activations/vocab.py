"""The closed vocabularies of the data model, in one place: every layer above names these values through
these types, so a misspelt status or subset is a type error instead of a silent empty query.

Three divisions of records are easy to confuse, so each has its own word:
- `SampleKind` / `ActivationRecord.sample`: how a record was drawn (top, random, quantile:<i>);
- `DataSplit` / `ActivationRecord.data_split`: which disjoint part of the data it belongs to (train, valid, test);
- `ScoringSubset`: which samples a simulation score pools (top_and_random, random_only);
  `ClassificationSubset`: which non-activating examples a detection/fuzzing/embedding score judges (random,
  neighbours); `InterventionSubset`: what an intervention score judged (neutral prompts).
"""

from __future__ import annotations

from enum import StrEnum


class SampleKind(StrEnum):
    """How a record was sampled; quantile samples carry their bin: `quantile:<i>`. `bottom`: the most negative
    records of a signed feature (the top records of its negative side)."""

    TOP = "top"
    BOTTOM = "bottom"
    RANDOM = "random"
    QUANTILE = "quantile"

    @staticmethod
    def quantile(bin_index: int) -> str:
        return f"quantile:{bin_index}"

    @staticmethod
    def quantile_bin(sample: str) -> int | None:
        """The bin of a `quantile:<i>` sample kind; None for any other text."""
        head, _, tail = sample.partition(":")
        return int(tail) if head == SampleKind.QUANTILE and tail.isascii() and tail.isdigit() else None


class DataSplit(StrEnum):
    """train: shown to the explainer; valid: chooses among candidates; test: the reported score."""

    TRAIN = "train"
    VALID = "valid"
    TEST = "test"


class ScoringSubset(StrEnum):
    """Which sample kinds a simulation score pools (OpenAI reported both)."""

    TOP_AND_RANDOM = "top_and_random"
    RANDOM_ONLY = "random_only"


class ClassificationSubset(StrEnum):
    """Which non-activating examples the activating ones are judged against: windows where the feature does not
    fire (random), or top windows of its nearest features (neighbours, the hard negatives)."""

    RANDOM = "random"
    NEIGHBOURS = "neighbours"


class InterventionSubset(StrEnum):
    """What the steering-based scores are measured on: the neutral prompts (intervention: the steered continuation of
    each among unsteered ones; steering: the explanation's log-probability after each)."""

    NEUTRAL = "neutral"


class ScoreMethod(StrEnum):
    EV_CORRELATION = "ev_correlation"
    RSQUARED = "rsquared"
    ABSOLUTE_DEV_EXPLAINED = "absolute_dev_explained"
    SPEARMAN = "spearman"
    MEAN_RECORD_CORRELATION = "mean_record_correlation"
    # r² and absolute deviation explained after a linear calibration fitted on the valid split (--calibrate)
    RSQUARED_CALIBRATED = "rsquared_calibrated"
    ABSOLUTE_DEV_EXPLAINED_CALIBRATED = "absolute_dev_explained_calibrated"
    DETECTION_BALANCED_ACCURACY = "detection_balanced_accuracy"
    DETECTION_AUROC = "detection_auroc"
    FUZZING_BALANCED_ACCURACY = "fuzzing_balanced_accuracy"
    FUZZING_AUROC = "fuzzing_auroc"
    EMBEDDING_AUROC = "embedding_auroc"
    INTRUDER_ACCURACY = "intruder_accuracy"
    INTERVENTION_ACCURACY = "intervention_accuracy"
    INTERVENTION_AUROC = "intervention_auroc"
    # how much steering the feature raises the subject model's log-probability of the explanation, per nat of KL
    STEERING_LOGPROB_GAIN = "steering_logprob_gain"


class ScorerName(StrEnum):
    """The scorers a run can choose (`--scorer`): simulation is the simulator's; the others judge examples."""

    SIMULATION = "simulation"
    DETECTION = "detection"
    FUZZING = "fuzzing"
    EMBEDDING = "embedding"
    INTRUDER = "intruder"  # scores the feature, not an explanation (scorer/intruder.py)
    INTERVENTION = "intervention"  # judges steered continuations against an explanation (scorer/intervention.py)
    STEERING = "steering"  # no judge: the subject model's own log-probabilities (scorer/steering_gain.py)


class ScoreRole(StrEnum):
    """own: the feature's explanation; shuffled: another feature's explanation (the shuffled baseline)."""

    OWN = "own"
    SHUFFLED = "shuffled"


class OutcomeStatus(StrEnum):
    """Of an explanation or a simulation: a failure is stored with its reason, never as a zero."""

    OK = "ok"
    FAILED = "failed"


class FailureKind(StrEnum):
    """What a failed explanation or simulation failed on: a rerun tries ENDPOINT failures again by itself (the
    endpoint may be fixed by then); the others only with --retry-failed."""

    ENDPOINT = "endpoint"  # the LLM endpoint: refused, timed out, auth, unknown model, no API key, 5xx after retries
    ANSWER = "answer"  # the LLM answered, unusably (unparsable, empty, a rejected request)
    INPUT = "input"  # nothing fit to send: a dead feature, a prompt too long, missing evidence; no LLM call


class Polarity(StrEnum):
    """Explain what drives the feature up (positive) or down (negative)."""

    POSITIVE = "positive"
    NEGATIVE = "negative"


class RunStatus(StrEnum):
    """A run's stored status. STALE is never stored: it is how a `running` run whose heartbeat stopped is shown."""

    RUNNING = "running"
    DONE = "done"
    STOPPED = "stopped"  # ended early on purpose (budget reached)
    FAILED = "failed"
    INTERRUPTED = "interrupted"  # Ctrl-C or SIGTERM
    STALE = "stale"


class RunKind(StrEnum):
    COLLECT = "collect"
    EXPLAIN = "explain"
    RESCORE = "rescore"
    STEER = "steer"
