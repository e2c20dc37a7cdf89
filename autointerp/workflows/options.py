"""What a batch run was asked to do: the options of `explain` and `rescore`, and feature selection."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING

from activations.errors import UserError
from activations.vocab import Polarity, ScorerName
from explainer.contrast import DEFAULT_MODE, DEFAULT_NEGATIVES, MODES, NEGATIVES_RULE
from explainer.prompts import EVIDENCE_CHOICES, MODE_VERSIONS, evidence_parts, versioned
from explainer.sampling import DEFAULT_SAMPLE, SAMPLES, SEEDED_SAMPLES
from scorer.methods import parse_scorers
from scorer.stored_config import SCORING_VERSION

if TYPE_CHECKING:
    from activations.steering import SteeringConfig


class OptionsError(UserError):
    """An option value is unusable; the message says which and what to pass instead."""


BOTH = "both"  # --polarity both: a positive and a negative explanation of every feature, in one run
POLARITY_CHOICES: tuple[str, ...] = (*(p.value for p in Polarity), BOTH)
# Quantile bins are bins of the positive side: these explainer samples have nothing to show of the negative one.
_POSITIVE_ONLY_SAMPLES = ("quantiles", "mixed")


def parse_features(spec: str) -> list[int] | None:
    """`all` -> None; `0-99` -> 0..99; `1,5,9` and mixes like `0-9,20` -> sorted unique indices."""
    spec = spec.strip()
    if spec == "all":
        return None
    out: set[int] = set()
    for part in spec.split(","):
        part = part.strip()
        try:
            lo, hi = (int(x) for x in part.split("-", 1)) if "-" in part else (int(part), int(part))
        except ValueError:
            raise OptionsError(f"--features: {part!r} is not an index or range; use all, 0-99 or 1,5,9") from None
        if lo > hi:
            raise OptionsError(f"--features: range {part!r} runs backwards; write {hi}-{lo}")
        out.update(range(lo, hi + 1))
    if any(i < 0 for i in out):
        raise OptionsError("--features: indices must be >= 0")
    return sorted(out)


@dataclass
class BatchOptions:
    """What every batch over a layer's features shares: which features, how to simulate, how wide."""

    model: str = "gemma-3-270m"
    layer: int = 0
    sae: str | None = None
    features: str = "all"
    concurrency: int = 4
    simulator: str = "embedding"
    simulator_base_url: str | None = None
    device: str = "auto"
    shuffled_baseline: bool = True  # also score another feature's explanation on the same records
    seed: int = 0
    fail_fast: int = 5  # stop as failed when the first this many features all fail the same way (0: never)
    # Scorers (comma-separated ScorerName values). Not part of the explain config hash: a rerun with more scorers
    # fills in the missing scores of the explanations already made instead of explaining again.
    scorers: str = ScorerName.SIMULATION.value
    scorer_llm: str | None = None  # the detection/fuzzing judge (default: explain's explainer)
    scorer_base_url: str | None = None
    scorer_examples: int = 5  # examples per judge prompt
    # The stored steering (`autointerp steer --target-kl`) the steering scorers and the +steering evidence read.
    steering_target_kl: float = 0.5
    # Fit the simulator's linear calibration on the valid split and store calibrated r² and absolute deviation
    # explained beside the raw ones. Not in the config hash either: `rescore --calibrate` fills them in.
    calibrate: bool = False

    def as_dict(self) -> dict:
        return asdict(self)

    def steering(self) -> SteeringConfig:
        """The steering configuration whose stored continuations the steering scorers and the +steering evidence
        read: `autointerp steer`'s defaults with the chosen target KL (the command a missing feature is told to run
        makes exactly these)."""
        from activations.steering import SteeringConfig  # torch: only where steering is read

        self._check_steering_target_kl()
        return SteeringConfig(target_kl=self.steering_target_kl)

    def _check_steering_target_kl(self) -> None:
        if not self.steering_target_kl > 0:
            raise OptionsError(f"--steering-target-kl must be > 0, as `autointerp steer --target-kl` (got "
                               f"{self.steering_target_kl})")

    def scorer_names(self) -> list[ScorerName]:
        self._check_steering_target_kl()
        if self.scorer_examples < 1:
            raise OptionsError(f"--scorer-examples must be >= 1 (got {self.scorer_examples})")
        try:
            names = parse_scorers(self.scorers)
        except ValueError as exc:
            raise OptionsError(str(exc)) from None
        if ScorerName.INTRUDER in names and self.scorer_examples < 3:
            raise OptionsError(f"--scorer intruder needs --scorer-examples of at least 3 (two activating examples "
                               f"and the intruder; got {self.scorer_examples})")
        return names

    def needs_judge(self) -> bool:
        return any(s in (ScorerName.DETECTION, ScorerName.FUZZING, ScorerName.INTRUDER, ScorerName.INTERVENTION)
                   for s in self.scorer_names())


@dataclass
class ExplainOptions(BatchOptions):
    explainer: str = "local:gemma-3-270m"
    base_url: str | None = None
    fmt: str = "auto"  # token_activation_pairs for chat models, snippets for base models
    n_candidates: int = 1
    polarity: str = Polarity.POSITIVE
    temperature: float | None = None  # None: 0 for one candidate, 1.0 for several (they must differ)
    max_explanation_tokens: int = 60
    request_timeout_s: float = 60.0
    budget_usd: float | None = None
    retry_failed: bool = False
    dry_run: bool = False
    evidence: str = "activations"  # or with +logits / +steering: the feature's logit lens / steering in the prompt
    explainer_sample: str = DEFAULT_SAMPLE  # which train records the prompt shows (explainer.sampling)
    explainer_mode: str = DEFAULT_MODE  # or "contrastive": counterexamples where the feature is quiet too
    explainer_negatives: int = DEFAULT_NEGATIVES  # counterexamples a contrastive prompt shows (explainer.contrast)

    def contrastive(self) -> bool:
        if self.explainer_mode not in MODES:
            raise OptionsError(f"--explainer-mode {self.explainer_mode!r} is not one of {', '.join(MODES)}")
        if self.explainer_mode == "contrastive" and self.explainer_negatives < 1:
            raise OptionsError(f"--explainer-negatives must be >= 1 (got {self.explainer_negatives})")
        return self.explainer_mode == "contrastive"

    def explain_config(self) -> dict:
        """What makes two explanations 'the same work': rerunning it skips the feature. The evidence choice is in
        it only when it is not the default, so such configs stored before it existed still match; the explainer
        sample always is (with its seed when the seed changes the draw), as configs without it showed other
        records. The contrastive mode has its own prompt versions, and its counterexamples' count and rule."""
        if self.explainer_sample not in SAMPLES:
            raise OptionsError(f"--explainer-sample {self.explainer_sample!r} is not one of {', '.join(SAMPLES)}")
        contrastive = self.contrastive()
        config = {"explainer": self.explainer, "fmt": self.fmt,
                  "prompt_version": versioned(MODE_VERSIONS[self.explainer_mode][self.fmt], self.evidence,
                                              self.explainer_sample),
                  "n_candidates": self.n_candidates, "polarity": self.polarity,
                  "temperature": self.effective_temperature, "max_tokens": self.max_explanation_tokens,
                  "simulator": self.simulator, "scoring_version": SCORING_VERSION,  # it chooses among candidates
                  "explainer_sample": self.explainer_sample}
        if self.evidence != EVIDENCE_CHOICES[0]:
            config["evidence"] = self.evidence
        if self.with_steering():  # which stored steering is shown: another target KL is other work
            config["steering"] = self.steering().as_config()
        if self.explainer_sample in SEEDED_SAMPLES:
            config["sample_seed"] = self.seed
        if contrastive:
            config.update(explainer_mode=self.explainer_mode, explainer_negatives=self.explainer_negatives,
                          negatives_rule=NEGATIVES_RULE)
        return config

    def sides(self) -> list[ExplainOptions]:
        """One set of options per polarity to explain (two for --polarity both), each with its own configuration
        (the polarity is in it), so each side is resumed on its own."""
        if self.polarity not in POLARITY_CHOICES:
            raise OptionsError(f"--polarity {self.polarity!r} is not one of {', '.join(POLARITY_CHOICES)}")
        if self.polarity != Polarity.POSITIVE and self.explainer_sample in _POSITIVE_ONLY_SAMPLES:
            raise OptionsError(f"--explainer-sample {self.explainer_sample} draws from the quantile bins of the "
                               "positive side, which hold nothing of the negative side; with --polarity "
                               f"{self.polarity} use --explainer-sample top or random")
        polarities = [Polarity.POSITIVE, Polarity.NEGATIVE] if self.polarity == BOTH else [Polarity(self.polarity)]
        return [replace(self, polarity=p.value) for p in polarities]

    def _evidence_parts(self) -> tuple[bool, bool]:
        if self.evidence not in EVIDENCE_CHOICES:
            raise OptionsError(f"--evidence {self.evidence!r} is not one of {', '.join(EVIDENCE_CHOICES)}")
        return evidence_parts(self.evidence)

    def with_logits(self) -> bool:
        return self._evidence_parts()[0]

    def with_steering(self) -> bool:
        return self._evidence_parts()[1]


    @property
    def effective_temperature(self) -> float:
        if self.temperature is not None:
            return self.temperature
        return 0.0 if self.n_candidates == 1 else 1.0

    def judge_spec(self) -> str | None:
        """The detection/fuzzing/intruder/intervention judge: --scorer-llm, else the explainer."""
        return (self.scorer_llm or self.explainer) if self.needs_judge() else None


@dataclass
class RescoreOptions(BatchOptions):
    explainer: str | None = None  # only explanations by this explainer

    def judge_spec(self) -> str | None:
        """The judge of detection/fuzzing/intruder/intervention: --scorer-llm, else the --explainer filter; an
        error when neither is given."""
        if not self.needs_judge():
            return None
        spec = self.scorer_llm or self.explainer
        if spec is None:
            raise OptionsError("--scorer detection/fuzzing/intruder/intervention needs a judging model: pass "
                               "--scorer-llm SPEC (e.g. --scorer-llm openai:gpt-4o-mini), or --explainer SPEC to "
                               "judge with the explainer")
        return spec
