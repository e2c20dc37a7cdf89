"""The intervention scorer (`--scorer intervention`) in the finishing pass of explain and rescore: a judge reads
each explanation and, per neutral prompt, its feature's stored steered continuation among the unsteered ones
(scorer.intervention). The continuations are the feature's stored steering result under the run's steering
configuration (the default one, at `--steering-target-kl`), as the judge-free steering scorer reads them; like that
scorer, `prepare` first steers (and stores) the features never steered under it, before any judge request.
Features `autointerp steer` already steered are only read: judging them needs no subject model at all."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING

from activations.errors import UserError
from activations.steering import SteeringConfig
from activations.steering_results import SteeringResult
from activations.vocab import ScoreMethod, ScorerName, ScoreRole
from autointerp.workflows.steer_run import steer_missing, steering_config
from autointerp.workflows.steering_scoring import SteeringScorer
from llm_client import LLMClient
from llm_client.local_models import ModelLoadError
from scorer import ScoreValue
from scorer.intervention import INTERVENTION_PROMPT_VERSION, SUBSET, intervention_scores
from storage.core import repository as repo
from storage.core.db import Database
from storage.core.schema import Feature
from storage.results import already_done
from storage.results.steering_store import steering_result

if TYPE_CHECKING:
    from autointerp.workflows.example_scoring import LazyJudge

METHODS = (ScoreMethod.INTERVENTION_ACCURACY, ScoreMethod.INTERVENTION_AUROC)


def stored_input(db: Database, feature: Feature, config: SteeringConfig) -> SteeringResult | str | None:
    """The feature's stored steering as the judge reads it; the reason where its steering failed; None where it
    was never steered under `config`."""
    with db.session() as session:
        row = repo.get_feature(session, feature.id)
        result = steering_result(session, row.id, steering_config(row, config))
    if result is None:
        return None
    if not isinstance(result, SteeringResult):
        return f"the feature's steering failed: {result.reason}"
    return result


def unsteered_message(features: Sequence[Feature], model: str, config: SteeringConfig, why: str,
                      shown: int = 5) -> str:
    """Which features lack steering, why it cannot be made here, and the command that makes it."""
    first = features[0]
    indices = ",".join(str(f.index) for f in features)
    listed = ", ".join(str(f.index) for f in features[:shown]) + (" ..." if len(features) > shown else "")
    sae = f" --sae {first.sae.name}" if first.sae is not None else ""
    kl = f" --target-kl {config.target_kl:g}" if config.target_kl != SteeringConfig().target_kl else ""
    return (f"--scorer intervention judges each feature's stored steering, and {len(features)} feature(s) of layer "
            f"{first.layer} have none at target KL {config.target_kl:g} (features {listed}); steering them "
            f"here needs the subject model, which did not load ({' '.join(why.split())}). Steer them first: "
            f"autointerp steer --model {model} --layer {first.layer}{sae} --features {indices}{kl}")


class InterventionScorer:
    """The judge, the subject model (loaded only to steer a feature never steered) and the steering
    configuration whose stored continuations are judged."""

    def __init__(self, db: Database, subject: SteeringScorer, judge: LazyJudge, *, seed: int = 0) -> None:
        self.db, self.subject, self.judge, self.seed = db, subject, judge, seed

    @property
    def steering(self) -> SteeringConfig:
        return self.subject.steering

    @property
    def spec(self) -> str:
        return f"{ScorerName.INTERVENTION.value}:{self.judge.spec}"

    def config(self) -> dict:
        """What changes the scores (hashed into Score.scorer_hash): the judge, its prompt, the seed placing the
        steered continuation, and the steering configuration (new steering means new scores)."""
        return {"scorer": ScorerName.INTERVENTION.value, "spec": self.spec,
                "prompt_version": INTERVENTION_PROMPT_VERSION, "seed": self.seed,
                "steering_hash": repo.config_hash(self.steering.as_config())}

    def _unsteered(self, explanation_ids: Sequence[int]) -> list[Feature]:
        """The features of the explanations lacking their own intervention scores that have no stored steering."""
        with self.db.session() as session:
            scored = already_done.example_scored(session, explanation_ids, methods=METHODS,
                                                 scorer_config=self.config())
            rows = repo.explanations_with_features(session, [e for e in explanation_ids if e not in scored])
            features = {f.id: f for _, f in rows.values()}
            for feature in features.values():  # read now: the steering pass uses them after the session
                _ = feature.model.name, feature.sae
            first = next(iter(features.values()), None)
            done = already_done.steered(session, list(features), steering_config=steering_config(
                first, self.steering)) if first is not None else set()
            session.expunge_all()
        return sorted((f for f in features.values() if f.id not in done), key=lambda f: f.index)

    async def prepare(self, explanation_ids: Sequence[int], run_id: int) -> int:
        """Steer the features these explanations' intervention scores need and nothing stored has; how many. A
        subject model that cannot be loaded here is an error naming them and the `autointerp steer` to run."""
        features = await asyncio.to_thread(self._unsteered, explanation_ids)
        if not features:
            return 0
        try:
            loaded = self.subject.loaded()
        except ModelLoadError as exc:
            raise UserError(unsteered_message(features, self.subject.model_name, self.steering, str(exc))) from None
        return await asyncio.to_thread(steer_missing, self.db, loaded, features, self.steering, run_id=run_id)

    def undefined(self, reason: str, role: ScoreRole) -> list[ScoreValue]:
        return [ScoreValue(m, None, reason, subset=SUBSET, role=role) for m in METHODS]

    async def score(self, feature: Feature, explanation: str, role: ScoreRole) -> list[ScoreValue]:
        data = await asyncio.to_thread(stored_input, self.db, feature, self.steering)
        if data is None:  # prepare steers every feature first: a failure, retried by the next run
            return self.undefined(f"{already_done.FAILED_PREFIX} the feature has no steering result", role)
        if isinstance(data, str):  # deterministic: a rerun would fail the same way
            return self.undefined(data, role)
        return await intervention_scores(self.judge.get(), explanation, data, role=role, seed=self.seed)


def estimated_input(db: Database, feature: Feature, config: SteeringConfig) -> SteeringResult:
    """What the judge would read of the feature for a dry run: its stored steering, or, never steered (or failed),
    the configuration's neutral prompts with continuations as long as it generates (words for tokens)."""
    stored = stored_input(db, feature, config)
    if isinstance(stored, SteeringResult):
        return stored
    filler = " ".join(["word"] * config.tokens)
    return SteeringResult(strength=0.0, kl=0.0, target_kl=config.target_kl, prompts=config.prompts,
                             steered=tuple(filler for _ in config.prompts),
                             unsteered=tuple(tuple(filler for _ in range(config.n_unsteered)) for _ in config.prompts))


async def walk_intervention_prompts(client: LLMClient, inputs: Sequence[SteeringResult], *, explanation: str,
                                    seed: int, rounds: int) -> None:
    """Send every judge prompt the intervention scorer would send for these features `rounds` times (own
    explanation, shuffled baseline) to `client`: with a recording client, a dry run counts the real prompts."""
    for data in inputs:
        for _ in range(rounds):
            await intervention_scores(client, explanation, data, seed=seed)
