"""The example scorers of a run (detection, fuzzing, embedding, intruder) on stored explanations: each explanation that
lacks a scorer's scores (under that scorer's configuration) gets them, and, with the shuffled baseline on, the
same scorer run on the same examples with another feature's explanation (role "shuffled"). Explain and rescore
both end with this pass, so a rerun with an added scorer fills in what is missing and redoes nothing. The intruder
scorer judges the feature, not the explanation: its scores are stored on the explanation the pass visits (the
feature's selected one) with a configuration that holds no explanation, and it has no shuffled baseline."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from activations.errors import UserError
from activations.vocab import ScorerName, ScoreRole
from autointerp.runtime.db_threads import DatabaseThreads
from autointerp.workflows.finishing_reads import FinishTarget, ScorerCheck
from autointerp.workflows.shuffled_baselines import NO_OTHER, LayerPool
from llm_client import LLMClient, make_client
from scorer import SCORER_METHODS, ExampleSet, ScoreValue, classification_scores, subsets_of
from scorer.embedding_scorer import EmbeddingScorer
from scorer.example_sets import example_input
from scorer.examples import EXAMPLE_TOKENS, FIRING_LEVEL
from scorer.intruder import INTRUDER_PROMPT_VERSION, intruder_scores
from scorer.judge import PROMPT_VERSION
from simulator.base import Simulator
from storage.core import repository as repo
from storage.core.db import Database
from storage.results import already_done, example_scores

if TYPE_CHECKING:
    from autointerp.workflows.intervention_scoring import InterventionScorer
    from autointerp.workflows.steering_scoring import SteeringScorer

EXAMPLE_SCORERS = (ScorerName.DETECTION, ScorerName.FUZZING, ScorerName.EMBEDDING, ScorerName.INTRUDER,
                   ScorerName.STEERING, ScorerName.INTERVENTION)
# The scorers that need a judging LLM.
JUDGED = (ScorerName.DETECTION, ScorerName.FUZZING, ScorerName.INTRUDER, ScorerName.INTERVENTION)
STEERED = (ScorerName.STEERING, ScorerName.INTERVENTION)  # they read the feature's steering, not its records
# Bumped when what the scorers choose or report changes, so reruns redo their scores: 2: train random spans as
# a last resort; 3: fuzzing's `random` subset no longer undefined when there are no quiet random spans.
SCORERS_VERSION = 3


class LazyJudge:
    """The judging client, made on first use: a local judge's model loads only when something is left to judge."""

    def __init__(self, spec: str, make: Callable[[], LLMClient], *, owned: bool) -> None:
        self.spec = spec
        self.owned = owned  # made for this run (closed with it), not borrowed from the explainer
        self.client: LLMClient | None = None
        self._make = make

    def get(self) -> LLMClient:
        if self.client is None:
            self.client = self._make()
        return self.client


@dataclass
class ExampleScorers:
    """The example scorers chosen for a run, with the judge and the sentence model they use."""

    names: list[ScorerName]
    judge: LazyJudge | None = None
    embedder: EmbeddingScorer | None = None
    steering: SteeringScorer | None = None  # the subject model, for the judge-free steering scorer
    intervention: InterventionScorer | None = None  # the judge of the feature's stored steering
    per_prompt: int = 5
    n_activating: int = 10
    n_random: int = 10
    n_neighbours: int = 10
    seed: int = 0

    def __post_init__(self) -> None:
        for name in self.names:
            if name not in EXAMPLE_SCORERS:
                raise ValueError(f"{name} is not an example scorer; use one of {[s.value for s in EXAMPLE_SCORERS]}")
            if name == ScorerName.EMBEDDING and self.embedder is None:
                raise ValueError("the embedding scorer needs a sentence model")
            if name == ScorerName.STEERING and self.steering is None:
                raise ValueError("the steering scorer needs the subject model")
            if name == ScorerName.INTERVENTION and self.intervention is None:
                raise ValueError("the intervention scorer needs its judge and the steering it reads")
            if name in JUDGED and self.judge is None:
                raise ValueError(f"the {name} scorer needs a judging LLM")

    def spec(self, name: ScorerName) -> str:
        """Stored in Score.simulator: which model produced the score."""
        if name == ScorerName.EMBEDDING:
            assert self.embedder is not None
            return f"embedding_scorer:{self.embedder.spec}"
        if name == ScorerName.STEERING:
            assert self.steering is not None
            return self.steering.spec
        if name == ScorerName.INTERVENTION:
            assert self.intervention is not None
            return self.intervention.spec
        assert self.judge is not None
        return f"{name}:{self.judge.spec}"

    def config(self, name: ScorerName) -> dict:
        """Everything that changes the scores: hashed into Score.scorer_hash."""
        if name == ScorerName.STEERING:
            assert self.steering is not None
            return self.steering.config()
        if name == ScorerName.INTERVENTION:
            assert self.intervention is not None
            return self.intervention.config()
        out: dict = {"scorer": name.value, "spec": self.spec(name), "version": SCORERS_VERSION,
                     "n_activating": self.n_activating,
                     "n_random": self.n_random, "n_neighbours": self.n_neighbours, "example_tokens": EXAMPLE_TOKENS,
                     "firing_level": FIRING_LEVEL, "seed": self.seed}
        if name == ScorerName.INTRUDER:
            # No explanation in it: the same feature scores the same under any explanation it is stored on.
            out |= {"prompt_version": INTRUDER_PROMPT_VERSION, "examples_per_prompt": self.per_prompt,
                    "explanation_independent": True}
        elif name != ScorerName.EMBEDDING:
            out |= {"prompt_version": PROMPT_VERSION, "examples_per_prompt": self.per_prompt}
        return out

    async def score(self, name: ScorerName, explanation: str, examples: ExampleSet,
                    role: ScoreRole) -> list[ScoreValue]:
        if name == ScorerName.EMBEDDING:
            assert self.embedder is not None
            return await self.embedder.score(explanation, examples, role=role, seed=self.seed)
        assert self.judge is not None
        if name == ScorerName.INTRUDER:
            return await intruder_scores(self.judge.get(), examples, per_prompt=self.per_prompt, role=role,
                                         seed=self.seed)
        return await classification_scores(name.value, self.judge.get(), explanation, examples,
                                           per_prompt=self.per_prompt, role=role, seed=self.seed)

    def undefined(self, name: ScorerName, reason: str, role: ScoreRole) -> list[ScoreValue]:
        return [ScoreValue(method, None, reason, subset=subset, role=role)
                for subset in subsets_of(SCORER_METHODS[name][0]) for method in SCORER_METHODS[name]]


def scorer_checks(scorers: ExampleScorers, shuffled_baseline: bool) -> list[ScorerCheck]:
    """What the finishing pass asks of each explanation for these scorers: their own scores, and with
    `shuffled_baseline` their shuffled ones, each under its scorer's configuration. The intruder scorer reads
    no explanation, so another feature's has nothing to change: it has no shuffled baseline."""
    roles = [ScoreRole.OWN, ScoreRole.SHUFFLED] if shuffled_baseline else [ScoreRole.OWN]
    return [ScorerCheck(name, role, SCORER_METHODS[name], scorers.config(name))
            for name in scorers.names for role in roles
            if role == ScoreRole.OWN or name != ScorerName.INTRUDER]


def _save(db: Database, scorers: ExampleScorers, target: FinishTarget,
          results: list[tuple[ScorerName, list[ScoreValue]]], run_id: int) -> None:
    with db.session() as session, session.begin():
        explanation = repo.get_explanation(session, target.explanation_id)
        feature = repo.get_feature(session, target.feature.id)
        for name, scores in results:
            example_scores.store_example_scores(session, explanation, feature, scores, scorer_spec=scorers.spec(name),
                                                scorer_config=scorers.config(name), run_id=run_id)


def _failure(name: ScorerName, scores: Sequence[ScoreValue]) -> str | None:
    failed = [s for s in scores if s.undefined_reason and s.undefined_reason.startswith(already_done.FAILED_PREFIX)]
    return f"{name} scorer: {failed[0].undefined_reason}" if failed else None


@dataclass
class ScoringReport:
    """What the example-scoring pass did: explanations newly scored, and the features whose own scores failed."""

    scored: int = 0
    failures: dict[int, str] = field(default_factory=dict)  # feature index -> reason


async def add_example_scores(db: Database, store: DatabaseThreads, scorers: ExampleScorers, target: FinishTarget,
                             layer: LayerPool | None, *, run_id: int) -> str | None:
    """Score an explanation with every scorer in `target.todo` (its own scores, and its shuffled baseline on the
    same examples with another feature's explanation from `layer`, needed when a shuffled role is to do) and
    store them; returns why its own scores failed, None when they did not."""
    # The steering scorers read the feature's continuations, not its records: no examples when they are all to do.
    examples = example_input(target.records, target.polarity, target.neighbours, n_activating=scorers.n_activating,
                             n_random=scorers.n_random, n_neighbours=scorers.n_neighbours) \
        if any(name not in STEERED for name, _ in target.todo) else ExampleSet([])
    shuffled = layer.picker.pick(target.feature.id) if layer is not None else None
    borrowed: dict[str, int] = {}  # what the shuffled scores' details record of the explanation they judged
    if layer is not None and shuffled is not None:
        borrowed = {"shuffled_from_feature_id": shuffled[0],
                    example_scores.SHUFFLED_EXPLANATION_KEY: layer.ids[shuffled[0]]}

    async def run(name: ScorerName, role: ScoreRole) -> list[ScoreValue]:
        steered = scorers.steering if name == ScorerName.STEERING else scorers.intervention
        if name in STEERED and steered is not None and (role == ScoreRole.OWN or shuffled):
            # The feature's continuations judged by its own explanation, or by another feature's (the baseline).
            text = target.text if role == ScoreRole.OWN or shuffled is None else shuffled[1]
            scores = await steered.score(target.feature, text, role)
            return scores if role == ScoreRole.OWN else [replace(s, details={**s.details, **borrowed}) for s in scores]
        if role == ScoreRole.OWN:
            return await scorers.score(name, target.text, examples, role)
        if shuffled is None:
            return scorers.undefined(name, NO_OTHER, role)
        scores = await scorers.score(name, shuffled[1], examples, role)
        return [replace(s, details={**s.details, **borrowed}) for s in scores]

    outcomes = await asyncio.gather(*(run(name, role) for name, role in target.todo))
    await store.write(_save, db, scorers, target, list(zip((n for n, _ in target.todo), outcomes)), run_id)
    failures = [f for (name, role), scores in zip(target.todo, outcomes)
                if role == ScoreRole.OWN and (f := _failure(name, scores))]
    return "; ".join(failures) if failures else None


@dataclass
class RunScorers:
    """A run's example scorers and what it must close afterwards (clients it made, not ones it borrowed)."""

    scorers: ExampleScorers | None
    owned_embedder: Simulator | None = None

    @property
    def owned_judge(self) -> LLMClient | None:
        """The judge this run made (None until it was first needed, and when it borrows the explainer)."""
        judge = self.scorers.judge if self.scorers is not None else None
        return judge.client if judge is not None and judge.owned else None

    async def aclose(self) -> None:
        if self.owned_judge is not None:
            await self.owned_judge.aclose()
        if self.owned_embedder is not None:
            await self.owned_embedder.aclose()


def make_run_scorers(names: Sequence[ScorerName], judge_spec: str | None, *, judge_base_url: str | None,
                     concurrency: int, device: str, cache_path: str | None, per_prompt: int, seed: int,
                     explainer: LLMClient | None = None, simulator: Simulator | None = None,
                     db: Database | None = None, subject_model: str | None = None,
                     steering_target_kl: float = 0.5) -> RunScorers:
    """The example scorers among `names`, reusing the explainer client when it is the judge (a local model is
    loaded once) and an embedding simulator's sentence model for the embedding scorer. The steering scorer runs
    `subject_model` (at `steering_target_kl`) and keeps its steering results in `db`; the intervention scorer
    judges those results (steering the features that have none first, as the steering scorer does)."""
    chosen = [n for n in names if n in EXAMPLE_SCORERS]
    if not chosen:
        return RunScorers(None)
    out = RunScorers(None)
    judge = None
    if any(n in JUDGED for n in chosen):
        if judge_spec is None:
            raise UserError("detection/fuzzing/intruder/intervention need a judging model (--scorer-llm)")
        if explainer is not None and explainer.spec == judge_spec:
            borrowed = explainer
            judge = LazyJudge(judge_spec, lambda: borrowed, owned=False)
        else:
            judge = LazyJudge(judge_spec, lambda: make_client(judge_spec, base_url=judge_base_url,
                                                              concurrency=concurrency, cache_path=cache_path,
                                                              device=device), owned=True)
    embedder = None
    if ScorerName.EMBEDDING in chosen:
        from simulator.embedding import EmbeddingSimulator  # torch and the sentence model: only when asked for

        if isinstance(simulator, EmbeddingSimulator):
            sentence_model = simulator
        else:
            sentence_model = EmbeddingSimulator(device=device)
            out.owned_embedder = sentence_model
        embedder = EmbeddingScorer(sentence_model)
    steering, intervention = None, None
    if any(n in STEERED for n in chosen):
        from activations.steering import SteeringConfig  # torch: only when asked for
        from autointerp.workflows.intervention_scoring import InterventionScorer
        from autointerp.workflows.steering_scoring import SteeringScorer

        if db is None or subject_model is None:
            raise ValueError("the steering scorers need the database and the subject model")
        # One subject model for both, steered at the run's target KL.
        subject = SteeringScorer(db, subject_model, device, SteeringConfig(target_kl=steering_target_kl))
        steering = subject if ScorerName.STEERING in chosen else None
        if ScorerName.INTERVENTION in chosen:
            assert judge is not None
            intervention = InterventionScorer(db, subject, judge, seed=seed)
    out.scorers = ExampleScorers(chosen, judge=judge, embedder=embedder, steering=steering,
                                 intervention=intervention, per_prompt=per_prompt, seed=seed)
    return out


async def walk_judge_prompts(client: LLMClient, names: Sequence[ScorerName], example_sets: Sequence[ExampleSet], *,
                             explanation: str, per_prompt: int, seed: int, rounds: int) -> None:
    """Send every judge prompt the detection/fuzzing scorers would send for these example sets `rounds` times (own
    explanation, shuffled baseline), and the intruder scorer's once (it has no baseline), to `client`: with a
    recording client, a dry run counts the real prompts."""
    for examples in example_sets:
        if ScorerName.INTRUDER in names:
            await intruder_scores(client, examples, per_prompt=per_prompt, seed=seed)
        for name in names:
            if name in (ScorerName.DETECTION, ScorerName.FUZZING):
                for _ in range(rounds):
                    await classification_scores(name.value, client, explanation, examples, per_prompt=per_prompt,
                                                seed=seed)
