"""The judge-free steering scorer (`--scorer steering`) in the finishing pass of explain and rescore.

Before the pass scores anything, `prepare` steers (and stores) every feature whose explanations lack steering
scores and that was never steered under the default steering configuration, one feature after another while
nothing else uses the subject model (steering hooks the model's modules). Scoring an explanation then reads the
stored continuations and runs the unsteered subject model over them (scorer.steering_gain), one explanation at a
time on a thread of its own."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from activations.steering import SteeringConfig
from activations.steering_results import SteeringResult
from activations.vocab import ScoreMethod, ScorerName, ScoreRole
from autointerp.workflows.steer_run import steer_missing, steering_config
from llm_client.local_models import LoadedModel, load_model, local_model_name
from scorer import ScoreValue
from scorer.steering_gain import FRAMING_VERSION, STEERING_SUBSET, steering_logprob_gain
from storage.core import repository as repo
from storage.core.db import Database
from storage.core.schema import Feature
from storage.results import already_done
from storage.results.steering_store import steering_result

STEERING_SCORER_VERSION = 1


class SteeringScorer:
    """The subject model (loaded on first use) and the steering configuration the scores are made under."""

    def __init__(self, db: Database, model: str, device: str, config: SteeringConfig = SteeringConfig()) -> None:
        self.db, self.model_name, self.device, self.steering = db, local_model_name(model), device, config
        self._loaded: LoadedModel | None = None
        self._lock = asyncio.Lock()  # one explanation at a time on the model

    @property
    def spec(self) -> str:
        return f"steering:{self.model_name}"

    def config(self) -> dict:
        """What changes the scores (hashed into Score.scorer_hash): the steering settings and the framing."""
        return {"scorer": ScorerName.STEERING.value, "spec": self.spec, "version": STEERING_SCORER_VERSION,
                "framing": FRAMING_VERSION, "steering": self.steering.as_config()}

    def loaded(self) -> LoadedModel:
        if self._loaded is None:
            self._loaded = load_model(self.model_name, device=self.device)
        return self._loaded

    def _lacking(self, explanation_ids: Sequence[int]) -> list[Feature]:
        with self.db.session() as session:
            scored = already_done.example_scored(session, explanation_ids, methods=[ScoreMethod.STEERING_LOGPROB_GAIN],
                                                 scorer_config=self.config())
            rows = repo.explanations_with_features(session, [e for e in explanation_ids if e not in scored])
            features = {f.id: f for _, f in rows.values()}
            for feature in features.values():  # read now: the steering pass uses them after the session
                _ = feature.model.name, feature.sae
            session.expunge_all()
        return sorted(features.values(), key=lambda f: f.index)

    async def prepare(self, explanation_ids: Sequence[int], run_id: int) -> int:
        """Steer the features these explanations' steering scores need; how many were steered now."""
        features = await asyncio.to_thread(self._lacking, explanation_ids)
        if not features:
            return 0
        return await asyncio.to_thread(steer_missing, self.db, self.loaded(), features, self.steering, run_id=run_id)

    def _score(self, feature: Feature, explanation: str, role: ScoreRole) -> ScoreValue:
        with self.db.session() as session:
            row = repo.get_feature(session, feature.id)
            result = steering_result(session, row.id, steering_config(row, self.steering))
        if result is None:
            return ScoreValue(ScoreMethod.STEERING_LOGPROB_GAIN, None, "the feature has no steering result",
                              subset=STEERING_SUBSET, role=role)
        if not isinstance(result, SteeringResult):
            return ScoreValue(ScoreMethod.STEERING_LOGPROB_GAIN, None, f"steering failed: {result.reason}",
                              subset=STEERING_SUBSET, role=role)
        loaded = self.loaded()
        return steering_logprob_gain(loaded.model, loaded.tokenizer, result, explanation, role)

    async def score(self, feature: Feature, explanation: str, role: ScoreRole) -> list[ScoreValue]:
        async with self._lock:
            return [await asyncio.to_thread(self._score, feature, explanation, role)]
