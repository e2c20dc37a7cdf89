"""Batch explain/rescore/compare/export through the CLI, against the real-HTTP fake OpenAI server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from autointerp.cli import main
from storage.core.db import Database
from storage.core.schema import Explanation, Run, Score, Simulation
from storage.records import record_store
from tests.fake_openai import FakeOpenAI
from tests.pipeline_data import fill_layer
from tests.stored import store_features

EXPLAIN = ["explain", "--model", "tiny-model", "--layer", "6", "--explainer", "openai:fake"]


def digit_simulating_answer(endpoint: str, body: dict) -> str:
    """Explanations name their prompt's hash; json: simulations say digits fire (as a good model would)."""
    content = body["messages"][-1]["content"] if "messages" in body else body["prompt"]
    if "Tokens (a JSON list):" in content:
        tokens = json.loads(content.split("Tokens (a JSON list):\n", 1)[1].split("\n", 1)[0])
        return json.dumps([[t, 8 if t.strip().isdigit() else 0] for t in tokens])
    from tests.fake_openai import prompt_hash
    return f"words about topic {prompt_hash(body)[:6]}"


def cli(*args: str, ok: bool = True):
    result = CliRunner().invoke(main, list(args))
    if ok:
        assert result.exit_code == 0, result.output
    return result


def count(db: Database, stmt) -> int:
    with db.session() as s:
        return s.scalar(select(func.count()).select_from(stmt.subquery()))


def test_explain_rescore_compare_export(fake_openai, db_url, db, tmp_path):
    fill_layer(db, 6, dead=(4,))
    out = cli(*EXPLAIN, "--simulator", "logprob:openai:fake", "--db", db_url).output
    assert "5 done" in out and "1 failed" in out and "dead" not in out.split("failed feature")[0]
    assert "failed feature 4: no train-split record where the feature goes above zero" in out
    requests = fake_openai.requests

    # Same command again: nothing left to do, no LLM call.
    out = cli(*EXPLAIN, "--simulator", "logprob:openai:fake", "--db", db_url).output
    assert "6 skipped" in out and fake_openai.requests == requests

    # Every own test-split simulation and its scores, plus a shuffled baseline per feature.
    with db.session() as s:
        sims = s.execute(select(Simulation.role, func.count()).group_by(Simulation.role)).all()
        assert dict(sims) == {"own": 5, "shuffled": 5}
        roles = dict(s.execute(select(Score.role, func.count()).where(Score.method == "ev_correlation")
                               .group_by(Score.role)).all())
        assert roles["own"] == 10 and roles["shuffled"] == 10  # two subsets each

    # Rescore with another simulator adds scores; the old ones stay.
    before = count(db, select(Score.id))
    fake_openai.answer = digit_simulating_answer
    cli("rescore", "--model", "tiny-model", "--layer", "6", "--simulator", "json:openai:fake", "--db", db_url)
    with db.session() as s:
        after_sims = s.execute(select(Simulation.simulator, Simulation.role, Simulation.status, func.count())
                               .group_by(Simulation.simulator, Simulation.role, Simulation.status)).all()
        assert ("json:openai:fake", "own", "ok", 5) in after_sims and ("json:openai:fake", "shuffled", "ok", 5) in after_sims
        json_scores = s.scalars(select(Score.value).where(Score.simulator == "json:openai:fake", Score.role == "own",
                                                          Score.method == "ev_correlation",
                                                          Score.subset == "top_and_random")).all()
        assert len(json_scores) == 5 and all(v > 0.5 for v in json_scores)  # the digit rule is the planted truth
    assert count(db, select(Score.id)) > before
    rows = json.loads(cli("query", "--layer", "6", "--simulator", "json:openai:fake", "--format", "json",
                          "--no-records", "--db", db_url).output)
    assert len(rows) == 5 and rows[0]["score"] > 0.5

    # A second explainer beside the first, then compare.
    cli("explain", "--model", "tiny-model", "--layer", "6", "--explainer", "openai:fake-2", "--simulator",
        "logprob:openai:fake", "--db", db_url)
    with db.session() as s:
        assert s.scalar(select(func.count()).where(Explanation.explainer == "openai:fake-2")) == 6
    data = json.loads(cli("compare", "--layer", "6", "--explainer", "openai:fake", "--explainer", "openai:fake-2",
                          "--format", "json", "--db", db_url).output)
    assert data["summary"]["a"] == "openai:fake" and len(data["features"]) >= 0

    cli("export", "--format", "jsonl", "--out", str(tmp_path / "out.jsonl"), "--db", db_url)
    docs = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert len(docs) == 6 and all(len(d["records"]) == 15 for d in docs)
    assert {e["explainer"] for d in docs for e in d["explanations"]} == {"openai:fake", "openai:fake-2"}
    cli("export", "--format", "parquet", "--out", str(tmp_path / "out.parquet"), "--db", db_url)
    import pyarrow.parquet as pq
    assert pq.read_table(tmp_path / "out.parquet").num_rows == 6


def test_dry_run_counts_real_prompts_and_sends_nothing(fake_openai, sqlite_url):
    fill_layer(Database(sqlite_url), 4)
    out = cli(*EXPLAIN, "--dry-run", "--simulator", "embedding", "--n-candidates", "3", "--db", sqlite_url).output
    estimate = json.loads(out)
    assert estimate["features_pending"] == 4 and estimate["explainer"]["requests"] == 12
    assert estimate["explainer"]["prompt_tokens"] > 100 and fake_openai.requests == 0


def test_bad_feature_selection_is_a_clear_error(sqlite_url):
    fill_layer(Database(sqlite_url), 3)
    result = cli(*EXPLAIN, "--features", "0-9", "--db", sqlite_url, ok=False)
    assert result.exit_code != 0 and "7 index(es) not collected for layer 6" in result.output
    result = cli("explain", "--model", "nope", "--layer", "1", "--db", sqlite_url, ok=False)
    assert "run `autointerp collect --model nope --layers 1` first" in result.output
    result = cli(*EXPLAIN, "--features", "a-b", "--db", sqlite_url, ok=False)
    assert "not an index or range" in result.output


@pytest.mark.slow
def test_failures_are_data_under_a_30_percent_failure_mix(fake_openai, sqlite_url):
    fake_openai.failure_rate = 0.3
    fake_openai.retry_after = "0.1"
    fake_openai.hang_s = 3.0
    db = Database(sqlite_url)
    fill_layer(db, 20)
    result = cli(*EXPLAIN, "--simulator", "embedding", "--request-timeout", "1", "--concurrency", "8",
                 "--db", sqlite_url, ok=False)
    out = result.output
    assert sum(fake_openai.by_outcome[k] for k in ("429", "500", "hang", "garbage")) > 3
    with db.session() as s:
        run = s.scalars(select(Run).where(Run.kind == "explain")).one()
        assert run.status == "done" and run.stats["llm_retries"] > 0
        assert result.exit_code == (3 if run.stats["failed"] else 0)  # some failed: the exit code says so
        assert run.stats["done"] + run.stats["failed"] == 20
        explanations = s.scalars(select(Explanation)).all()
        assert len(explanations) == 20
        for e in explanations:
            own = s.scalars(select(Score).where(Score.explanation_id == e.id, Score.role == "own")).all()
            if e.status == "ok":
                assert e.text and own, "an explained feature is scored"
            else:
                assert e.failure_reason and e.text is None and not own, "a failure is a reason, never a score"
    assert "retries" in out


def test_sigkill_midway_then_rerun_finishes_each_feature_once(tmp_path):
    fake = FakeOpenAI(latency_s=0.15).start()
    try:
        url = f"sqlite:///{tmp_path / 'kill.db'}"
        db = Database(url)
        fill_layer(db, 50)
        env = {**os.environ, "OPENAI_BASE_URL": fake.url, "OPENAI_API_KEY": "sk-test", "HF_HUB_OFFLINE": "1"}
        cmd = [sys.executable, "-m", "autointerp", *EXPLAIN, "--simulator", "logprob:openai:fake",
               "--concurrency", "4", "--db", url]
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while count(db, select(Explanation.id)) < 10:
            assert proc.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        with db.session() as s:
            finished_before = {e.feature_id: e.text for e in s.scalars(select(Explanation))}
        assert 10 <= len(finished_before) < 50

        subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=300)
        with db.session() as s:
            per_feature = s.execute(select(Explanation.feature_id, func.count()).group_by(Explanation.feature_id)).all()
            assert len(per_feature) == 50 and all(n == 1 for _, n in per_feature)
            own_sims = s.execute(select(Simulation.feature_id, func.count()).where(Simulation.role == "own")
                                 .group_by(Simulation.feature_id)).all()
            assert len(own_sims) == 50 and all(n == 1 for _, n in own_sims)
        # The fake answer names its prompt's hash: a feature finished before the kill was asked exactly once.
        for text in finished_before.values():
            prefix = text.rsplit(" ", 1)[-1]
            asked = [n for h, n in fake.by_prompt.items() if h.startswith(prefix)]
            assert asked == [1], (text, asked)
    finally:
        fake.stop()


def test_budget_stops_cleanly_and_a_rerun_continues(fake_openai, sqlite_url):
    db = Database(sqlite_url)
    fill_layer(db, 12)
    args = ["explain", "--model", "tiny-model", "--layer", "6", "--explainer", "openai:gpt-4o-mini",
            "--simulator", "logprob:openai:fake", "--concurrency", "1", "--db", sqlite_url]
    out = cli(*args, "--budget-usd", "0.0001").output
    assert "stopped early: budget of $0.0001 reached" in out
    with db.session() as s:
        run = s.scalars(select(Run).where(Run.kind == "explain")).one()
        assert run.status == "stopped" and run.stats["cost_usd"] >= 0.0001
        first = s.scalar(select(func.count()).select_from(Explanation))
    assert 1 <= first < 12
    out = cli(*args).output
    assert f"{first} skipped" in out
    assert count(db, select(Explanation.id)) == 12


def test_best_of_n_is_chosen_on_the_valid_split(fake_openai, sqlite_url):
    db = Database(sqlite_url)
    fill_layer(db, 3)
    cli(*EXPLAIN, "--simulator", "logprob:openai:fake", "--n-candidates", "3", "--db", sqlite_url)
    with db.session() as s:
        rows = s.scalars(select(Explanation)).all()
        assert len(rows) == 9
        chosen = [e for e in rows if e.selected]
        assert len(chosen) == 3 and all(set(e.params["valid_ev_correlation"]) == {"0", "1", "2"} for e in chosen)
        scored = {sc.explanation_id for sc in s.scalars(select(Score).where(Score.role == "own"))}
        assert scored == {e.id for e in chosen}  # only the winner is scored on the test split


def test_negative_polarity_is_scored_on_one_scale_by_explain_rescore_and_baseline(fake_openai, sqlite_url):
    """Explain, rescore and the shuffled baseline all put a negative explanation's real values on the
    negative maximum's scale: the same simulation scores the same whichever path stored it."""
    from activations.records import ActivationRecord, FeatureId, FeatureStats
    from storage.core import repository as repo

    db = Database(sqlite_url)
    with db.session() as s, s.begin():
        for index in range(3):
            feature = store_features(s, [FeatureId("tiny-model", 6, "mlp_neuron", index)])[0]
            records = []
            for i, data_split in enumerate(["train"] * 4 + ["valid"] * 2 + ["test"] * 3):
                tokens = [f" w{j}" if j % 3 else f" {i + j}" for j in range(9)]
                acts = [0.5 if j % 3 else -4.0 - index - (i + j) % 3 for j in range(9)]  # digits drive it down
                records.append(ActivationRecord(tokens, acts, sample="bottom" if i % 3 else "random",
                                                data_split=data_split))  # a signed collection's negative side
            record_store.add_records(s, feature, records)
            repo.set_feature_stats(feature, FeatureStats(max_activation=0.5, min_activation=-7.0 - index, mean=0.0,
                                                         variance=1.0, firing_fraction=0.5, n_tokens=100))
    cli(*EXPLAIN, "--simulator", "logprob:openai:fake", "--polarity", "negative", "--db", sqlite_url)
    # The fake server ignores the model name: a second spec gives the same simulation through rescore.
    cli("rescore", "--model", "tiny-model", "--layer", "6", "--simulator", "logprob:openai:fake2", "--db", sqlite_url)
    with db.session() as s:
        scores = s.execute(select(Score.explanation_id, Score.simulator, Score.role, Score.value).where(
            Score.method == "rsquared", Score.subset == "top_and_random")).all()
    by_path: dict[tuple, dict[int, float]] = {}
    for explanation_id, simulator, role, value in scores:
        by_path.setdefault((simulator, role), {})[explanation_id] = value
    assert len(by_path[("logprob:openai:fake", "own")]) == 3
    assert all(v is not None for v in by_path[("logprob:openai:fake", "own")].values())
    assert by_path[("logprob:openai:fake", "own")] == pytest.approx(by_path[("logprob:openai:fake2", "own")])
    assert by_path[("logprob:openai:fake", "shuffled")] == pytest.approx(by_path[("logprob:openai:fake2", "shuffled")])
