"""The shuffled baseline a feature page shows is the explanation its shuffled simulation was made with: run the
real pipeline against the fake OpenAI server, then read the feature through the HTTP API."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import select

from autointerp.api import create_app
from storage.core.schema import Explanation, Feature, Simulation
from tests.pipeline_data import fill_layer
from tests.test_pipeline import EXPLAIN, cli, digit_simulating_answer


def test_baseline_rows_name_the_borrowed_explanation(fake_openai, db_url, db, monkeypatch):
    monkeypatch.delenv("AUTOINTERP_API_TOKEN", raising=False)
    fill_layer(db, 3)
    fake_openai.answer = digit_simulating_answer  # distinct explanations per feature, JSON simulations
    cli(*EXPLAIN, "--simulator", "json:openai:fake", "--db", db_url)
    with db.session() as s:
        shuffled = s.execute(select(Simulation.feature_id, Explanation).join(
            Explanation, Explanation.id == Simulation.explanation_id).where(Simulation.role == "shuffled")).all()
        own = dict(s.execute(select(Explanation.feature_id, Explanation.text)).all())
        feature_ids = s.scalars(select(Feature.id)).all()
    simulated = {feature_id: explanation for feature_id, explanation in shuffled}
    assert set(simulated) == set(feature_ids)

    with TestClient(create_app(db.url)) as client:
        for feature_id in feature_ids:
            page = client.get(f"/api/features/{feature_id}").json()
            borrowed = simulated[feature_id]
            assert borrowed.feature_id != feature_id and borrowed.text != own[feature_id]
            assert page["shuffled_baselines"], feature_id
            for row in page["shuffled_baselines"]:
                assert row["explanation_text"] == borrowed.text
                assert row["borrowed_explanation_id"] == borrowed.id
                assert row["explanation_feature_id"] == borrowed.feature_id
                # ...while the score row stays on the feature's own explanation, which it is the baseline of.
                assert row["explanation_id"] == page["explanations"][0]["id"]
