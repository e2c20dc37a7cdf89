"""A run that tells the truth about how it ended: a configuration error stops it before its first feature, a run
whose first features all fail the same way stops early as failed (--fail-fast), the exit code says which
(0 all done, 1 error, 3 some features failed, 4 stopped early), `runs` shows it, and a rerun tries features that
failed on the endpoint again without --retry-failed."""

from __future__ import annotations

import io
import json
import socket
from pathlib import Path

from click.testing import CliRunner
from rich.console import Console
from sqlalchemy import func, select

from autointerp.cli import main
from autointerp.cli.run_summary import print_run_summary
from storage.core.db import Database
from storage.core.schema import Explanation, Run
from tests.pipeline_data import fill_layer, uncached_spec

EXPLAIN = ["explain", "--model", "tiny-model", "--layer", "6", "--explainer", uncached_spec(), "--simulator",
           "logprob:openai:fake", "--no-shuffled-baseline"]


def cli(*args: str, env: dict[str, str | None] | None = None):
    return CliRunner().invoke(main, list(args), env=env)


def closed_port_url() -> str:
    """A loopback URL where nothing listens: every connection is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


def the_run(db: Database) -> Run:
    with db.session() as s:
        return s.scalars(select(Run).order_by(Run.id.desc())).first()


def runs_json(url: str) -> list[dict]:
    return json.loads(cli("runs", "--format", "json", "--db", url).output)


def explanations(db: Database) -> int:
    with db.session() as s:
        return s.scalar(select(func.count()).select_from(Explanation))


def test_no_api_key_stops_before_the_first_feature_with_one_message(sqlite_url):
    db = Database(sqlite_url)
    fill_layer(db, 6)
    result = cli("explain", "--model", "tiny-model", "--layer", "6", "--explainer", "openai:gpt-4o-mini",
                 "--simulator", "logprob:openai:gpt-4o-mini", "--db", sqlite_url,
                 env={"OPENAI_API_KEY": None, "OPENAI_BASE_URL": None})
    assert result.exit_code == 1, result.output
    assert "openai:gpt-4o-mini: OPENAI_API_KEY is not set" in result.output
    assert "Traceback" not in result.output and result.output.count("OPENAI_API_KEY") == 1
    run = the_run(db)
    assert run.status == "failed" and "OPENAI_API_KEY is not set" in run.stats["stopped_reason"]
    assert run.stats["exit_code"] == 1 and explanations(db) == 0


def test_refused_endpoint_stops_early_as_failed_and_a_rerun_retries_it_without_asking(db_url, fake_openai):
    db = Database(db_url)
    fill_layer(db, 12)
    dead = cli(*EXPLAIN, "--base-url", closed_port_url(), "--concurrency", "2", "--db", db_url)
    assert dead.exit_code == 4, dead.output
    assert "the first 5 features all failed on the endpoint (--fail-fast 5)" in dead.output
    assert "connection error" in dead.output and "exit code 4 (run failed, stopped early)" in dead.output
    run = the_run(db)
    assert run.status == "failed" and run.stats["exit_code"] == 4
    assert run.stats["failed"] == run.stats["endpoint_failures"] < 12  # stopped at its first features
    listed = runs_json(db_url)[0]
    assert listed["exit_code"] == 4 and "--fail-fast 5" in listed["reason"]
    assert "4 run failed" in cli("runs", "--db", db_url).output

    # The endpoint works now: the features that failed on it are tried again, without --retry-failed.
    fixed = cli(*EXPLAIN, "--base-url", fake_openai.url, "--db", db_url)
    assert fixed.exit_code == 0, fixed.output
    rerun = the_run(db)
    assert rerun.status == "done" and rerun.stats["done"] == 12 and rerun.stats["skipped"] == 0
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(Explanation).where(Explanation.status == "ok")) == 12


def test_unknown_model_stops_at_the_first_features(sqlite_url, fake_openai):
    fake_openai.script = ["404"] * 100
    db = Database(sqlite_url)
    fill_layer(db, 20)
    result = cli(*EXPLAIN, "--concurrency", "1", "--fail-fast", "3", "--db", sqlite_url)
    assert result.exit_code == 4, result.output
    assert "HTTP 404" in result.output and "does not exist" in result.output
    assert fake_openai.requests == 3  # a 404 is not retried, and the fourth feature never starts
    assert the_run(db).stats["failed"] == 3


def test_unusable_answers_are_feature_failures_kept_until_retry_failed(sqlite_url, fake_openai):
    db = Database(sqlite_url)
    fill_layer(db, 4)
    fake_openai.answer = lambda endpoint, body: ""  # the LLM answers, with nothing to parse
    first = cli(*EXPLAIN, "--fail-fast", "0", "--db", sqlite_url)
    assert first.exit_code == 3, first.output  # went through; some (here all) features failed
    assert the_run(db).stats["failed"] == 4 and the_run(db).stats["endpoint_failures"] == 0
    assert "exit code 3 (some features failed)" in first.output
    shown = io.StringIO()  # the demo's summary: the demo does not end with the run's code, so it is not shown
    print_run_summary(db, the_run(db).id, console=Console(file=shown, width=120), show_exit=False)
    assert "4 failed of 4" in shown.getvalue() and "exit code" not in shown.getvalue()

    fake_openai.answer = lambda endpoint, body: "the word 7"
    requests = fake_openai.requests
    again = cli(*EXPLAIN, "--db", sqlite_url)
    assert again.exit_code == 0 and fake_openai.requests == requests  # not the endpoint's fault: not retried
    assert the_run(db).stats["skipped"] == 4
    Path(sqlite_url.removeprefix("sqlite:///") + ".llmcache").unlink()  # else the cached empty answers come back
    retried = cli(*EXPLAIN, "--retry-failed", "--db", sqlite_url)
    assert retried.exit_code == 0, retried.output
    assert the_run(db).stats["done"] == 4


def test_the_same_answer_failing_everywhere_fails_fast_too(sqlite_url, fake_openai):
    db = Database(sqlite_url)
    fill_layer(db, 12)
    fake_openai.answer = lambda endpoint, body: ""
    result = cli(*EXPLAIN, "--concurrency", "1", "--db", sqlite_url)
    assert result.exit_code == 4, result.output
    assert "the first 5 features all failed the same way" in result.output
    assert the_run(db).stats["failed"] == 5


def test_dead_features_neither_trigger_nor_end_the_fail_fast_watch(sqlite_url, fake_openai):
    db = Database(sqlite_url)
    fill_layer(db, 9, dead=(0, 1, 2, 3, 4, 5))  # nothing above zero: failed without an LLM call
    result = cli(*EXPLAIN, "--concurrency", "1", "--db", sqlite_url)
    assert result.exit_code == 0, result.output  # a dead feature fails on every run: it says nothing about this one
    run = the_run(db)
    assert run.status == "done" and (run.stats["done"], run.stats["failed"], run.stats["input_failures"]) == (3, 6, 6)


def test_rescore_against_a_refused_endpoint_fails_fast_too(sqlite_url, fake_openai):
    db = Database(sqlite_url)
    fill_layer(db, 12)
    assert cli(*EXPLAIN, "--db", sqlite_url).exit_code == 0
    result = cli("rescore", "--model", "tiny-model", "--layer", "6", "--simulator", f"json:{uncached_spec()}",
                 "--simulator-base-url", closed_port_url(), "--concurrency", "1", "--db", sqlite_url)
    assert result.exit_code == 4, result.output
    run = the_run(db)
    assert run.kind == "rescore" and run.status == "failed" and run.stats["failed"] == 5
    assert "the first 5 features all failed on the endpoint" in run.stats["stopped_reason"]
