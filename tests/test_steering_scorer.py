"""`rescore --scorer steering` on gemma-3-270m: a stored explanation of an MLP neuron never steered gets its feature
steered and stored, then its judge-free score; a rerun steers and scores nothing again."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from activations.records import FeatureId
from activations.vocab import OutcomeStatus
from autointerp.cli import main
from storage.core import repository as repo
from storage.core.schema import Score, SteeringRow
from tests.stored import store_features

pytestmark = pytest.mark.slow


def _counts(db) -> tuple[int, int]:
    with db.session() as s:
        return (s.scalar(select(func.count()).select_from(SteeringRow)),
                s.scalar(select(func.count()).select_from(Score)))


@pytest.fixture
def db(sqlite_url):
    """SQLite only: a minute of model work per run, and the steering table's reads and writes are checked on
    PostgreSQL in test_steering_store.py."""
    from storage.core.db import Database

    database = Database(sqlite_url)
    yield database
    database.dispose()


def test_rescore_steers_once_and_scores_once(db, sqlite_url):
    with db.session() as s, s.begin():
        [feature] = store_features(s, [FeatureId("gemma-3-270m", 3, "mlp_neuron", 400)])
        repo.add_explanation(s, feature, explainer="import:test", config={}, text="the word the",
                             status=OutcomeStatus.OK, selected=True)
    args = ["rescore", "--model", "gemma-3-270m", "--layer", "3", "--features", "400", "--scorer", "steering",
            "--no-shuffled-baseline", "--device", "cpu", "--db", sqlite_url]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    with db.session() as s:
        steering = s.scalars(select(SteeringRow)).one()
        score = s.scalars(select(Score)).one()
    assert steering.status == OutcomeStatus.OK and abs(steering.kl - 0.5) <= 0.05
    assert len(steering.steered) == 12 and all(len(u) == 3 for u in steering.unsteered)
    assert (score.method, score.subset, score.simulator) == ("steering_logprob_gain", "neutral",
                                                            "steering:gemma-3-270m")
    assert score.value is not None and score.details["kl"] == steering.kl
    assert CliRunner().invoke(main, args).exit_code == 0
    assert _counts(db) == (1, 1)
