"""Names replaced for one concept each, still accepted for one release: `--no-sanity` is `--no-shuffled-baseline`
(the real CLI against the fake OpenAI server)."""

from __future__ import annotations

from sqlalchemy import func, select

from storage.core.db import Database
from storage.core.schema import Score
from tests.pipeline_data import fill_layer
from tests.test_pipeline import EXPLAIN, cli, digit_simulating_answer

LAYER = ["--model", "tiny-model", "--layer", "6", "--simulator", "json:openai:fake"]


def _scores(db, role: str) -> int:
    with db.session() as s:
        return s.scalar(select(func.count()).select_from(Score).where(Score.role == role))


def test_no_sanity_still_skips_the_shuffled_baseline(fake_openai, sqlite_url):
    db = Database(sqlite_url)
    fill_layer(db, 2)
    fake_openai.answer = digit_simulating_answer
    cli(*EXPLAIN, "--simulator", "json:openai:fake", "--no-sanity", "--db", sqlite_url)
    assert _scores(db, "own") > 0 and _scores(db, "shuffled") == 0
    cli("rescore", *LAYER, "--db", sqlite_url)  # without the flag: the baseline is added
    assert _scores(db, "shuffled") > 0
    db.dispose()
