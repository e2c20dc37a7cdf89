"""`collect --executor ray` on the embedded model and a real local Ray cluster: one shard and four shards store
the records and statistics one local pass stores, and a collection that lost shards resumes from the
checkpoints of the others."""

from __future__ import annotations

import os
import shutil

import pytest
from click.testing import CliRunner

from activations.collect_config import CollectConfig, neuron_target
from activations.corpus import open_corpus
from activations.sampling import SamplerConfig
from activations.windows import iter_windows
from autointerp.cli.collect import collect_command
from autointerp.executors.ray_collect import RayCollectJob, RayCollector, collect_shard
from autointerp.executors.shards import plan_shards, shard_windows
from llm_client.local_models import cache_dir, load_model
from storage.core import repository as repo
from storage.core.db import Database
from storage.records import record_store

pytestmark = pytest.mark.slow

ARGS = ["--model", "gemma-3-270m", "--layers", "3", "--tokens", "2000", "--ctx-len", "32", "--device", "cpu",
        "--n-random", "6", "--top-k", "6"]
CONFIG = CollectConfig(ctx_len=32, max_tokens=2000, sampler=SamplerConfig(top_k=6, n_random=6))


@pytest.fixture(scope="module")
def ray_cluster():
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    import ray

    ray.init(num_cpus=2, object_store_memory=200 * 1024**2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def _collect(url: str, *extra: str) -> str:
    result = CliRunner().invoke(collect_command, [*ARGS, *extra, "--db", url])
    assert result.exit_code == 0, result.output
    return result.output


def _stored(url: str) -> dict:
    """(layer, index) -> (stats, records as comparable tuples), for every feature collected."""
    db = Database(url)
    out = {}
    with db.session() as s:
        model = repo.find_model(s, "gemma-3-270m")
        for layer in (3,):
            for feature in repo.layer_features(s, model.id, layer, None):
                records = record_store.load_feature_records(s, feature)
                rows = sorted((r.sample, r.data_split, r.provenance.document, r.provenance.offset, r.tokens,
                               r.activations) for r in records.records)
                out[(layer, feature.index)] = (records.stats, rows)
    db.dispose()
    return out


def _assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys() and len(a) == 2048
    for key, (stats_a, rows_a) in a.items():
        stats_b, rows_b = b[key]
        assert rows_a == rows_b, key
        assert stats_a.max_activation == stats_b.max_activation and stats_a.n_tokens == stats_b.n_tokens, key
        assert stats_a.firing_fraction == stats_b.firing_fraction, key
        assert stats_a.mean == pytest.approx(stats_b.mean, rel=1e-6, abs=1e-6), key
        assert stats_a.variance == pytest.approx(stats_b.variance, rel=1e-6, abs=1e-6), key


def test_shards_hold_exactly_the_windows_of_one_pass():
    tokenizer = load_model("gemma-3-270m", device="cpu").tokenizer
    corpus = open_corpus("wikipedia")
    for config in (CONFIG, CollectConfig(ctx_len=16, max_tokens=20_000)):  # inside one document; across many
        one_pass = list(iter_windows(corpus, tokenizer, config.ctx_len, config.max_tokens, config.min_tail))
        for n in (1, 4, 7):
            shards = plan_shards(corpus, tokenizer, config, n)
            assert len(shards) == n
            assert [w for s in shards for w in shard_windows(corpus, tokenizer, config, s)] == one_pass


def test_shards_of_a_dataset_reopen_it_with_its_text_column(tmp_path):
    """A Ray task gets the corpus spec and text column the driver opened, and streams exactly its shard."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "ds" / "data").mkdir(parents=True)
    body = [f"Row {i}: " + " ".join(f"word{i}x{j}" for j in range(6 * (i + 1))) for i in range(5)]
    pq.write_table(pa.table({"text": ["not this column"] * 5, "body": body}), tmp_path / "ds/data/train.parquet")
    loaded = load_model("smollm2-135m", device="cpu")
    config = CollectConfig(ctx_len=16, max_tokens=1000, batch_size=4, sampler=SamplerConfig(top_k=2, n_random=2))
    spec = (f"hf:{tmp_path / 'ds'}", "body")
    corpus = open_corpus(*spec)
    one_pass = list(iter_windows(corpus, loaded.tokenizer, config.ctx_len, config.max_tokens, config.min_tail))
    assert {w.document for w in one_pass} == {"0", "1", "2", "3", "4"}
    shards = plan_shards(corpus, loaded.tokenizer, config, 3)
    assert [w for s in shards for w in shard_windows(corpus, loaded.tokenizer, config, s)] == one_pass
    states = collect_shard("smollm2-135m", "cpu", None, spec, [neuron_target(0)], config, shards[1], cache_dir())
    assert int(states[0].count) == shards[1].n_tokens  # every token of its shard of `body`, none of `text`


def test_one_and_four_shards_store_what_one_pass_stores_and_lost_shards_resume(ray_cluster, tmp_path):
    urls = {name: f"sqlite:///{tmp_path / name}.db" for name in ("local", "one", "four")}
    _collect(urls["local"])
    local = _stored(urls["local"])
    _collect(urls["one"], "--executor", "ray", "--shards", "1")
    _assert_same(_stored(urls["one"]), local)
    assert not any(tmp_path.glob("*.shards/*")), "checkpoints go once the layers are stored"

    # Four shards, in a collection that stopped after streaming them and then lost two shards' checkpoints.
    folder = tmp_path / "checkpoints"
    loaded = load_model("gemma-3-270m", device="cpu")
    collector = RayCollector(RayCollectJob(shards=4, checkpoint_dir=folder), model_spec="gemma-3-270m",
                             corpus_spec="wikipedia", device="cpu", dtype=None, log=lambda _: None)
    collector.collect(loaded.model, loaded.tokenizer, open_corpus("wikipedia"), [neuron_target(3)], "gemma-3-270m",
                      CONFIG, lambda _: None)
    files = sorted(folder.glob("*/shard-*.pt"))
    assert len(files) == 4
    for lost in files[1::2]:
        lost.unlink()
    out = _collect(urls["four"], "--executor", "ray", "--shards", "4", "--checkpoint-dir", str(folder))
    assert "resuming: 2 of 4 shards from checkpoints" in out and "collecting 2 shards on Ray" in out
    _assert_same(_stored(urls["four"]), local)
    assert not any(folder.glob("*/shard-*.pt"))
    shutil.rmtree(folder, ignore_errors=True)
