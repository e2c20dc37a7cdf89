"""`autointerp explain --explainer-mode contrastive` end to end through the fake OpenAI server: the counterexamples
reach the explainer and nothing held out does, the explanation is stored with its mode, the contrastive and plain
configurations never resume as each other, the dry run counts the larger prompts, and features without
neighbours fall back to random quiet windows or fail with the reason."""

from __future__ import annotations

import json

from click.testing import CliRunner
from sqlalchemy import select

from autointerp.cli import main
from autointerp.workflows.options import ExplainOptions
from storage.core.db import Database
from storage.core.schema import Explanation, Feature, Run
from tests.contrast_layer import fill_contrast_layer
from tests.pipeline_data import uncached_spec

NEVER_SHOWN = ("heldout", "leakwindow", "judgedwindow")


def _cli(db_url: str, explainer: str, *args: str):
    return CliRunner().invoke(main, ["explain", "--model", "tiny-model", "--layer", "6", "--explainer", explainer,
                                     "--simulator", "logprob:openai:fake", "--no-shuffled-baseline", "--db", db_url,
                                     *args])


def _explainer_prompts(fake_openai) -> list[str]:
    """The explainer's requests (chat), not the simulator's (completions, which do show the test split)."""
    seen: list[str] = []

    def answer(endpoint: str, body: dict) -> str:
        if "messages" in body:
            seen.append(json.dumps(body["messages"]))
        return "cats"

    fake_openai.answer = answer
    return seen


def _explanations(db: Database, index: int) -> list[Explanation]:
    with db.session() as s:
        return list(s.scalars(select(Explanation).join(Feature).where(Feature.index == index)
                              .order_by(Explanation.id)))


def test_contrastive_explain_stores_its_mode_and_never_resumes_as_plain(fake_openai, sqlite_url):
    db = Database(sqlite_url)
    fill_contrast_layer(db)
    spec = uncached_spec()
    dry = [json.loads(_cli(sqlite_url, spec, "--features", "0", "--dry-run", *mode).output)
           for mode in ([], ["--explainer-mode", "contrastive"])]
    assert dry[1]["explainer"]["prompt_tokens"] > dry[0]["explainer"]["prompt_tokens"] and fake_openai.requests == 0
    prompts = _explainer_prompts(fake_openai)
    done = _cli(sqlite_url, spec, "--features", "0", "--explainer-mode", "contrastive")
    assert done.exit_code == 0 and "1 done" in done.output, done.output
    assert len(prompts) == 1 and "does not activate" in prompts[0]
    assert "neighbour1x1" in prompts[0] and "neighbour2x2" in prompts[0]
    assert not [w for w in NEVER_SHOWN if w in prompts[0]]
    (stored,) = _explanations(db, 0)
    assert stored.status == "ok" and stored.prompt_version == "tap-contrastive/v1+top"
    assert stored.params["explainer_mode"] == "contrastive" and stored.params["n_negatives"] == 5
    assert stored.params["negatives_by_source"] == {"neighbour": 4, "random": 1}

    again = _cli(sqlite_url, spec, "--features", "0", "--explainer-mode", "contrastive")
    assert "1 skipped" in again.output and len(prompts) == 1
    plain = _cli(sqlite_url, spec, "--features", "0")  # another configuration: explained again, plainly
    assert plain.exit_code == 0 and "1 done" in plain.output and len(prompts) == 2
    assert "does not activate" not in prompts[1]
    assert "1 skipped" in _cli(sqlite_url, spec, "--features", "0").output
    more = _cli(sqlite_url, spec, "--features", "0", "--explainer-mode", "contrastive", "--explainer-negatives", "2")
    assert "1 done" in more.output and len(prompts) == 3 and "neighbour2x2" not in prompts[2]
    versions = [e.prompt_version for e in _explanations(db, 0)]
    assert versions == ["tap-contrastive/v1+top", "token-activation-pairs/v2+top", "tap-contrastive/v1+top"]
    with db.session() as s:
        configs = [run.config for run in s.scalars(select(Run).order_by(Run.id))]
    assert [c["explainer_mode"] for c in configs] == ["contrastive", "contrastive", "plain", "plain", "contrastive"]
    assert len({c["config_hash"] for c in configs}) == 3


def test_without_neighbours_random_quiet_windows_or_a_stored_failure(fake_openai, sqlite_url):
    db = Database(sqlite_url)
    fill_contrast_layer(db)
    prompts = _explainer_prompts(fake_openai)
    result = _cli(sqlite_url, uncached_spec(), "--features", "3,4", "--explainer-mode", "contrastive")
    assert result.exit_code == 0 and "1 done" in result.output and "1 failed" in result.output, result.output
    assert len(prompts) == 1 and "quiet3x0" in prompts[0] and "heldout" not in prompts[0]
    (fallback,) = _explanations(db, 3)
    assert fallback.status == "ok" and fallback.params["negatives_by_source"] == {"neighbour": 0, "random": 2}
    (failed,) = _explanations(db, 4)
    assert failed.status == "failed" and "no nearest neighbours stored" in failed.failure_reason
    assert "--explainer-mode plain" in failed.failure_reason


def test_a_ray_worker_reads_the_counterexamples_the_local_run_reads(sqlite_url):
    from autointerp.executors.batch_worker import _feature_with_inputs
    from autointerp.workflows.explain_run import _load_many

    db = Database(sqlite_url)
    fill_contrast_layer(db)
    with db.session() as s:
        feature_id = s.scalar(select(Feature.id).where(Feature.index == 0))
    for mode, n_windows in (("contrastive", 4), ("plain", None)):
        opts = ExplainOptions(model="tiny-model", layer=6, explainer_mode=mode)
        _, (records, windows, steering) = _feature_with_inputs(db, opts, feature_id)
        assert (records, windows, steering) == _load_many(db, opts, [feature_id])[feature_id] and steering is None
        assert (len(windows) if windows is not None else None) == n_windows  # plain reads no windows
