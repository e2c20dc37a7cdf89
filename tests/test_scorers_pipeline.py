"""The example scorers through explain and rescore, on planted features (written through storage) and a
deterministic judge on the real-HTTP fake server that answers 1 for an example holding a digit."""

from __future__ import annotations

import json
import re

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from activations.records import ActivationRecord, FeatureId, FeatureStats
from activations.vocab import ScoreRole
from autointerp.cli import main
from llm_client import local_models
from storage.core import repository as repo
from storage.core.db import Database
from storage.core.schema import Explanation, Feature, Score
from storage.records import record_store
from tests.stored import store_features

PLAIN = "the cat sat on a mat and dogs ran past red cars near the river bank today while birds sang".split()
BASE = ["--model", "tiny-model", "--layer", "6", "--features", "0-2"]
EXPLAIN = ["explain", *BASE, "--explainer", "openai:fake", "--simulator", "json:openai:fake"]


def _window(seed: int, digit: bool, fire_on: str) -> tuple[list[str], list[float]]:
    words = [PLAIN[(seed * 7 + i * 3) % len(PLAIN)] for i in range(24)]
    if digit:
        words[10 + seed % 8] = str(seed % 9 + 1)
    if fire_on == "cat":
        words[5 + seed % 10] = "cat"
    tokens = [(" " if i else "") + w for i, w in enumerate(words)]
    fires = (lambda t: t.strip().isdigit()) if fire_on == "digit" else (lambda t: t.strip() == fire_on)
    return tokens, [5.0 if fires(t) else 0.0 for t in tokens]


def _records(fire_on: str, first_seed: int, *, activating_digits) -> list[ActivationRecord]:
    """Activating windows (top, quantile bins) on every split, and quiet random windows (for the "cat" feature
    half of them with a digit, as half its activating windows have one)."""
    out, seed = [], first_seed
    for data_split, n in (("train", 6), ("valid", 2), ("test", 4)):
        for sample in ["top"] * n + [f"quantile:{b}" for b in range(3) for _ in range(2 if data_split == "test" else 1)]:
            seed += 1
            tokens, acts = _window(seed, activating_digits(seed), fire_on)
            out.append(ActivationRecord(tokens, acts, sample=sample, data_split=data_split))
    for data_split, n in (("train", 4), ("valid", 4), ("test", 6)):
        for k in range(n):
            seed += 1
            tokens, _ = _window(seed, fire_on == "cat" and k % 2 == 0, "none")
            out.append(ActivationRecord(tokens, [0.0] * len(tokens), sample="random", data_split=data_split))
    return out


def plant(db: Database) -> None:
    """0: fires on digits, its neighbour is 2; 1: fires on "cat", which the judge cannot see (digits appear as
    often in its activating windows as in its quiet ones); 2: also fires on digits (other windows)."""
    with db.session() as s, s.begin():
        for index, fire_on, first_seed, digits in ((0, "digit", 0, lambda seed: True),
                                                    (1, "cat", 1000, lambda seed: seed % 2 == 0),
                                                    (2, "digit", 2000, lambda seed: True)):
            feature = store_features(s, [FeatureId("tiny-model", 6, "mlp_neuron", index)])[0]
            records = _records(fire_on, first_seed, activating_digits=digits)
            record_store.add_records(s, feature, records)
            repo.set_feature_stats(feature, FeatureStats(max_activation=5.0, mean=0.1, variance=0.2,
                                                         firing_fraction=0.05, n_tokens=1000))
            if index == 0:
                feature.extra = {"neighbours": [{"index": 2, "similarity": 0.9}]}


def judge(endpoint: str, body: dict) -> str:
    content = body["messages"][-1]["content"]
    if "Write only the list." not in content:
        return "digits and numbers"
    examples = re.findall(r"^Example \d+: (.*)$", content, re.MULTILINE)
    if "marked <<like this>>" in content:  # fuzzing: yes when a marked token is a digit
        return json.dumps([int(bool(re.search(r"<<\s*\d+>>", e))) for e in examples]).replace(" ", "")
    return json.dumps([int(bool(re.search(r"\d", e))) for e in examples]).replace(" ", "")


def cli(*args: str, ok: bool = True):
    result = CliRunner().invoke(main, list(args))
    if ok:
        assert result.exit_code == 0, result.output
    return result


def _scores(db: Database, method: str, role: str = ScoreRole.OWN) -> dict[tuple[int, str], Score]:
    with db.session() as s:
        rows = s.execute(select(Feature.index, Score).join(Feature, Feature.id == Score.feature_id)
                         .where(Score.method == method, Score.role == role)).all()
        return {(index, score.subset): score for index, score in rows}


@pytest.fixture
def planted(db, db_url, fake_openai, tmp_path, monkeypatch):
    plant(db)
    # On PostgreSQL the LLM response cache lives in the cache dir: a fresh one, so no answer comes from another test.
    monkeypatch.setenv("AUTOINTERP_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(local_models, "_cache_dir", local_models._cache_dir)  # the CLI sets it: restored after
    fake_openai.answer = judge
    fake_openai.digit_for = lambda token: int(token) if token.strip().isdigit() else 0
    return db


def test_detection_sees_the_digit_feature_and_not_the_invisible_one(planted, db_url, fake_openai):
    cli(*EXPLAIN, "--scorer", "detection,fuzzing", "--db", db_url)
    ba = _scores(planted, "detection_balanced_accuracy")
    assert ba[(0, "random")].value == pytest.approx(1.0)
    assert ba[(1, "random")].value == pytest.approx(0.5)
    # Neighbours share the concept (digits): the hard negatives fool the judge, random ones do not.
    assert ba[(0, "neighbours")].value < ba[(0, "random")].value
    assert ba[(0, "neighbours")].value == pytest.approx(0.5)
    assert ba[(1, "neighbours")].value is None and "no nearest neighbours" in ba[(1, "neighbours")].undefined_reason
    auroc = _scores(planted, "detection_auroc")
    assert auroc[(0, "random")].value == pytest.approx(1.0) and auroc[(0, "random")].ci_low is not None
    fuzz = _scores(planted, "fuzzing_balanced_accuracy")
    assert fuzz[(0, "random")].value == pytest.approx(1.0) and fuzz[(1, "random")].value == pytest.approx(0.5)
    # Provenance: the judge's spec, the scorer configuration, the cost.
    score = ba[(0, "random")]
    assert score.simulator == "detection:openai:fake" and score.scorer_hash
    assert score.details["cost"]["requests"] > 0 and score.details["cost"]["prompt_tokens"] > 0
    # The shuffled baseline: the same examples judged with another feature's explanation.
    assert {(0, "random"), (1, "random")} <= set(_scores(planted, "detection_balanced_accuracy", ScoreRole.SHUFFLED))
    # Query ranks by it (its first subset, random, by default).
    ranked = json.loads(cli("query", "--layer", "6", "--method", "detection_balanced_accuracy", "--format", "json",
                            "--no-records", "--db", db_url).output)
    assert [r["index"] for r in ranked][:1] in ([0], [2]) and ranked[0]["subset"] == "random"


def test_reruns_fill_in_missing_scorers_only(planted, db_url, fake_openai):
    cli(*EXPLAIN, "--scorer", "detection", "--db", db_url)
    with planted.session() as s:
        explanations = s.scalars(select(Explanation.id)).all()
    judged = fake_openai.by_endpoint["chat"]
    cli(*EXPLAIN, "--scorer", "detection", "--db", db_url)
    assert fake_openai.by_endpoint["chat"] == judged  # nothing left to do: no call at all
    cli(*EXPLAIN, "--scorer", "detection,fuzzing", "--db", db_url)
    with planted.session() as s:
        assert s.scalars(select(Explanation.id)).all() == explanations  # not explained again
    assert len(_scores(planted, "fuzzing_auroc")) == 6
    before = fake_openai.by_endpoint["chat"]
    cli("rescore", *BASE, "--scorer", "detection,fuzzing", "--scorer-llm", "openai:fake", "--db", db_url)
    assert fake_openai.by_endpoint["chat"] == before  # same judge and configuration: already scored


def test_rescore_needs_a_judge_and_reads_unknown_scorers_as_errors(planted, db_url):
    # The judge's answers are no simulation: the features' own simulations fail (exit 3); the scorers are tested.
    assert cli(*EXPLAIN, "--db", db_url, ok=False).exit_code == 3
    result = cli("rescore", *BASE, "--scorer", "detection", "--db", db_url, ok=False)
    assert result.exit_code != 0 and "--scorer-llm" in result.output
    result = cli("rescore", *BASE, "--scorer", "detecton", "--db", db_url, ok=False)
    assert result.exit_code != 0 and "unknown scorer 'detecton'" in result.output
    cli("rescore", *BASE, "--scorer", "detection", "--explainer", "openai:fake", "--db", db_url)
    assert _scores(planted, "detection_balanced_accuracy")[(0, "random")].value == pytest.approx(1.0)


def test_faulty_judge_answers_or_fails_never_no(planted, db_url, fake_openai):
    # The three explanations succeed; then 3 in every 10 requests fail for good (a 400 is not retried).
    fake_openai.script = ["ok"] * 3 + ["400", "ok", "ok", "ok", "400", "ok", "ok", "ok", "400", "ok"] * 10
    cli(*EXPLAIN, "--scorer", "detection", "--db", db_url, ok=False)
    scores = _scores(planted, "detection_balanced_accuracy")
    assert sum(s.details.get("n_failed", 0) for s in scores.values()) > 0
    for (index, subset), score in scores.items():
        d = score.details
        if subset == "random" and "n_items" in d:
            # Every judgement is answered (a positive or negative read) or failed, and nothing else.
            assert d["n_positive"] + d["n_negative"] + d["n_failed"] == d["n_items"]
        if index == 0 and subset == "random":
            # The judge is right on every example it answered: a failure counted as "no" would lower this.
            assert score.value == pytest.approx(1.0) or score.undefined_reason.startswith("failed:")
    # A rerun without faults fills in the failed ones.
    fake_openai.script = []
    cli(*EXPLAIN, "--scorer", "detection", "--retry-failed", "--db", db_url)
    scores = _scores(planted, "detection_balanced_accuracy")
    assert scores[(0, "random")].value == pytest.approx(1.0)


def test_every_method_everywhere(planted, db_url, tmp_path, monkeypatch):
    cli(*EXPLAIN, "--scorer", "detection,fuzzing", "--db", db_url)
    # compare --methods: the Spearman agreement of two scorers over the features that have both.
    rows = json.loads(cli("compare", "--layer", "6", "--methods", "detection_balanced_accuracy,fuzzing_balanced_accuracy",
                          "--format", "json", "--db", db_url).output)
    assert rows == [{"method_a": "detection_balanced_accuracy:random", "method_b": "fuzzing_balanced_accuracy:random",
                     "n_features": 3, "spearman": pytest.approx(1.0)}]
    result = cli("compare", "--layer", "6", "--methods", "detection_auroc:top_and_random,fuzzing_auroc", "--db",
                 db_url, ok=False)
    assert result.exit_code != 0 and "stored on subsets random, neighbours" in result.output
    result = cli("query", "--layer", "6", "--method", "detection_auroc", "--subset", "random_only", "--db", db_url,
                 ok=False)
    assert result.exit_code != 0 and "leave out --subset" in result.output
    # export: the new methods' scores travel with their explanations (jsonl and parquet).
    out = tmp_path / "layer6.jsonl"
    cli("export", "--layer", "6", "--format", "jsonl", "--out", str(out), "--db", db_url)
    methods = {s["method"] for line in out.read_text().splitlines()
               for e in json.loads(line)["explanations"] for s in e["scores"]}
    assert {"detection_balanced_accuracy", "detection_auroc", "fuzzing_balanced_accuracy", "fuzzing_auroc"} <= methods
    import pyarrow.parquet as pq

    cli("export", "--layer", "6", "--format", "parquet", "--out", str(tmp_path / "l6.parquet"), "--db", db_url)
    table = pq.read_table(tmp_path / "l6.parquet").to_pylist()
    assert any(s["method"] == "fuzzing_auroc" and s["subset"] == "neighbours"
               for row in table for e in row["explanations"] for s in e["scores"])
    # The API ranks by any stored method, on its first subset unless told.
    from fastapi.testclient import TestClient

    from autointerp.api import create_app

    with TestClient(create_app(db_url)) as client:
        page = client.get("/api/features", params={"layer": 6, "method": "detection_balanced_accuracy"}).json()
        assert page["items"][0]["subset"] == "random" and page["items"][-1]["index"] == 1
        assert page["items"][-1]["score"] == pytest.approx(0.5)
        page = client.get("/api/features", params={"layer": 6, "method": "detection_balanced_accuracy",
                                                   "subset": "neighbours"}).json()
        assert [i["index"] for i in page["items"] if i["score"] is not None] == [0]
        bad = client.get("/api/features", params={"method": "fuzzing_auroc", "subset": "top_and_random"})
        assert bad.status_code == 400 and "stored on subsets" in bad.json()["error"]
        detail = client.get("/api/features/by-key", params={"model": "tiny-model", "layer": 6, "index": 0}).json()
        assert any(s["method"] == "detection_auroc" for e in detail["explanations"] for s in e["scores"])


def test_dry_run_counts_the_judge_prompts(planted, db_url, fake_openai):
    out = json.loads(cli(*EXPLAIN, "--scorer", "detection,fuzzing", "--dry-run", "--db", db_url).output)
    judge = out["judge"]
    assert judge["spec"] == "openai:fake" and fake_openai.requests == 0
    # Per feature and round (own, shuffled): detection's examples in prompts of 5, and fuzzing's.
    assert judge["requests"] > 3 * 2 * 2 and judge["prompt_tokens"] > 0
    out = json.loads(cli(*EXPLAIN, "--dry-run", "--db", db_url).output)
    assert "judge" not in out


def test_rescore_with_the_embedding_scorer_needs_no_llm(planted, db_url, fake_openai):
    assert cli(*EXPLAIN, "--db", db_url, ok=False).exit_code == 3  # simulations fail on the judge's answers
    before = fake_openai.requests
    cli("rescore", *BASE, "--scorer", "embedding", "--db", db_url)
    assert fake_openai.requests == before
    scores = _scores(planted, "embedding_auroc")
    assert all(0.0 <= scores[(i, "random")].value <= 1.0 for i in range(3))
    assert scores[(0, "neighbours")].value is not None and scores[(1, "neighbours")].value is None
    assert scores[(0, "random")].simulator == "embedding_scorer:embedding"
    assert len(_scores(planted, "embedding_auroc", ScoreRole.SHUFFLED)) == 6


def test_shuffled_judgements_name_the_explanation_they_judged(planted, db_url, fake_openai, monkeypatch):
    """An example scorer's baseline has no simulation row: its details name the borrowed explanation, and the
    feature page (through the API) shows that explanation, not the feature's own."""
    from fastapi.testclient import TestClient

    from autointerp.api import create_app

    monkeypatch.delenv("AUTOINTERP_API_TOKEN", raising=False)
    cli(*EXPLAIN, "--scorer", "detection", "--db", db_url)
    with planted.session() as s:
        explanations = {e.id: e for e in s.scalars(select(Explanation))}
        feature_ids = s.scalars(select(Feature.id).order_by(Feature.index)).all()
    with TestClient(create_app(planted.url)) as client:
        for feature_id in feature_ids:
            rows = [r for r in client.get(f"/api/features/{feature_id}").json()["shuffled_baselines"]
                    if r["method"].startswith("detection")]
            assert rows, feature_id
            for row in rows:
                borrowed = explanations[row["borrowed_explanation_id"]]
                assert borrowed.feature_id != feature_id and row["explanation_feature_id"] == borrowed.feature_id
                assert row["explanation_text"] == borrowed.text
                assert row["details"]["shuffled_from_feature_id"] == borrowed.feature_id
