"""Collection from a real small model (smollm2-135m) over a tiny slice of the Wikipedia sample."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from safetensors.numpy import save_file
from sqlalchemy import select

from activations.collect import collect
from activations.collect_config import CollectConfig, neuron_target, sae_target
from activations.corpus import open_corpus
from activations.hooks import HookError
from activations.sae import load_sae
from activations.sampling import SamplerConfig
from autointerp.cli.collect import collect_command
from autointerp.workflows import collect_run
from autointerp.workflows.collect_run import run_collect
from llm_client.local_models import load_model
from storage.core.db import Database
from storage.core.schema import Feature, Run
from storage.reads.queries import FeatureQuery, query_features
from storage.records.record_store import load_feature_records

pytestmark = pytest.mark.slow
MODEL = "smollm2-135m"
SMALL = CollectConfig(ctx_len=16, max_tokens=400, batch_size=8, sampler=SamplerConfig(top_k=4, n_random=3, n_quantiles=2, per_quantile=2))


@pytest.fixture(scope="module")
def loaded():
    return load_model(MODEL, device="cpu")


@pytest.fixture(scope="module")
def neurons(loaded):
    """Layer 1 neurons, collected once for the checks below."""
    return collect(loaded.model, loaded.tokenizer, open_corpus(), [neuron_target(1)], MODEL, SMALL)[neuron_target(1)]


def test_every_neuron_gets_records_stats_and_provenance(neurons, loaded):
    assert len(neurons) == loaded.model.config.intermediate_size
    fr = neurons[7]
    assert fr.stats.n_tokens == 400 and not fr.stats.dead
    tops = fr.select(samples=["top"])
    assert len(tops) == 4 and len(fr.select(samples=["random"])) == 3
    assert [r.max_activation for r in tops] == sorted((r.max_activation for r in tops), reverse=True)
    assert tops[0].max_activation == pytest.approx(fr.stats.max_activation)
    for r in fr.records:
        assert r.provenance.corpus == "wikipedia" and r.provenance.document and r.provenance.offset is not None
        assert 1 <= len(r.tokens) <= 16 and not any(t.startswith("▁") or t.startswith("Ġ") for t in r.tokens)
    assert any(t.startswith(" ") for r in fr.records for t in r.tokens)  # decoded, not raw vocab pieces


def test_record_activations_are_the_models(neurons, loaded):
    """A top record's activations equal a plain forward pass over its own tokens (with the model's BOS rule)."""
    record = neurons[7].select(samples=["top"])[0]
    tok = loaded.tokenizer
    doc = next(d for d in open_corpus().documents() if d.id == record.provenance.document)
    ids = tok(doc.text, add_special_tokens=False).input_ids[record.provenance.offset:record.provenance.offset + len(record.tokens)]
    assert [tok.decode([i]) for i in ids] == list(record.tokens)
    seen = []
    handle = loaded.model.model.layers[1].mlp.down_proj.register_forward_pre_hook(lambda m, a: seen.append(a[0]))
    with torch.inference_mode():
        loaded.model(torch.tensor([ids]))
    handle.remove()
    np.testing.assert_allclose(record.activations, seen[0][0, :, 7].numpy(), rtol=1e-4, atol=1e-4)


def _splits_of(features) -> dict[tuple, str]:
    """(feature index, document, offset) -> split; a window in two splits of one feature fails here."""
    split_of: dict[tuple, str] = {}
    for fr in features:
        for r in fr.records:
            key = (fr.feature.index, r.provenance.document, r.provenance.offset)
            assert split_of.setdefault(key, r.data_split) == r.data_split, (key, r.sample)
    return split_of


def test_held_out_splits_balance_top_and_random_with_one_split_per_window(neurons):
    """Every live feature's valid and test splits hold as many top as random records (OpenAI's one to one),
    20% of the smaller sample each when the corpus allows (3 random records: 1 + 1); a window the feature has in
    two samples is in one split."""
    assert set(_splits_of(neurons).values()) == {"train", "valid", "test"}
    live = [fr for fr in neurons if not fr.stats.dead]
    on_target = 0
    for fr in live:
        counts = {split: (len(fr.select(samples=["top"], data_splits=[split])),
                          len(fr.select(samples=["random"], data_splits=[split]))) for split in ("valid", "test")}
        assert counts["valid"][0] == counts["valid"][1] and counts["test"][0] == counts["test"][1], (fr.feature, counts)
        on_target += counts == {"valid": (1, 1), "test": (1, 1)}
    # 25 windows: now and then all 3 random windows are top windows too, and a held-out top record lacks a partner
    assert on_target >= 0.9 * len(live)


def test_a_second_collection_gives_the_same_splits(neurons, loaded):
    again = collect(loaded.model, loaded.tokenizer, open_corpus(), [neuron_target(1)], MODEL, SMALL)[neuron_target(1)]
    assert _splits_of(again) == _splits_of(neurons)


def _sae_folder(tmp_path, d_in: int, layer: int, dead: int = 3):
    rng = np.random.default_rng(1)
    d_sae = 32
    b_enc = rng.normal(size=d_sae).astype(np.float32)
    b_enc[:dead] = -1e6  # these latents can never fire
    folder = tmp_path / "tiny-sae"
    folder.mkdir()
    save_file({"W_enc": rng.normal(size=(d_in, d_sae)).astype(np.float32) * 0.1, "b_enc": b_enc,
               "W_dec": rng.normal(size=(d_sae, d_in)).astype(np.float32), "b_dec": np.zeros(d_in, np.float32)},
              str(folder / "sae_weights.safetensors"))
    (folder / "cfg.json").write_text(json.dumps({"architecture": "standard", "d_in": d_in, "d_sae": d_sae,
                                                 "hook_name": f"blocks.{layer}.hook_resid_post", "apply_b_dec_to_input": True}))
    return folder


def test_sae_width_mismatch_fails_before_any_forward_pass(tmp_path, loaded):
    sae = load_sae(_sae_folder(tmp_path, d_in=100, layer=2))
    calls = []
    handle = loaded.model.register_forward_pre_hook(lambda *a: calls.append(1))
    try:
        with pytest.raises(HookError, match="expects d_in=100 .* gives 576"):
            collect(loaded.model, loaded.tokenizer, open_corpus(), [sae_target(sae)], MODEL, SMALL)
        with pytest.raises(HookError, match="layer 99 does not exist"):
            collect(loaded.model, loaded.tokenizer, open_corpus(), [neuron_target(99)], MODEL, SMALL)
    finally:
        handle.remove()
    assert calls == []


def _cli(db_url: str, *args: str):
    result = CliRunner().invoke(collect_command, ["--model", MODEL, "--tokens", "300", "--ctx-len", "16", "--batch-size", "8",
                                                  "--top-k", "3", "--n-random", "2", "--n-quantiles", "2", "--per-quantile", "2",
                                                  "--db", db_url, *args])
    return result


def test_cli_end_to_end_with_sae_dead_latents_and_rerun_skip(tmp_path, sqlite_url, loaded):
    folder = _sae_folder(tmp_path, d_in=loaded.model.config.hidden_size, layer=2)
    result = _cli(sqlite_url, "--sae", str(folder))
    assert result.exit_code == 0, result.output
    db = Database(sqlite_url)
    with db.session() as s:
        feats = s.scalars(select(Feature).where(Feature.kind == "sae_latent").order_by(Feature.index)).all()
        assert len(feats) == 32 and all(f.collection_run_id for f in feats) and feats[0].sae.hook == "blocks.2.hook_resid_post"
        assert [f.dead for f in feats[:3]] == [True] * 3 and feats[0].n_tokens == 300 and not feats[5].dead
        dead_records = load_feature_records(s, feats[0]).records
        assert {r.sample for r in dead_records} == {"random"}  # statistics and random sample, nothing "top"
        live = load_feature_records(s, feats[5])
        assert len(live.select(samples=["top"])) == 3 and live.stats.max_activation > 0
        rows = query_features(s, FeatureQuery(model=MODEL, layer=2, kind="sae_latent"))
        assert len(rows) == 32
        assert s.scalars(select(Run.status)).all() == ["done"]
    rerun = _cli(sqlite_url, "--sae", str(folder))
    assert rerun.exit_code == 0 and "already collected, skipped" in rerun.output
    bad = _cli(sqlite_url, "--sae", str(folder), "--layers", "3")
    assert bad.exit_code != 0 and "hooks layer 2" in bad.output


def _failing_after_one_batch(monkeypatch: pytest.MonkeyPatch, exc: BaseException) -> None:
    """The collection stops after its first batch, the way Ctrl-C (or a failing disk) would stop it."""
    def stopped(model, tokenizer, corpus, targets, name, config, *_ignored_progress):
        def progress(_n: int) -> None:
            raise exc
        return collect(model, tokenizer, corpus, targets, name, config, progress)

    monkeypatch.setattr(collect_run, "collect", stopped)


def test_interrupted_run_leaves_no_complete_layer_and_resumes(db, loaded, monkeypatch):
    config = CollectConfig(ctx_len=16, max_tokens=200, batch_size=4, sampler=SamplerConfig(top_k=2, n_random=2, n_quantiles=1, per_quantile=1))
    targets = [neuron_target(0)]
    _failing_after_one_batch(monkeypatch, KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        run_collect(db, MODEL, targets, "wikipedia", config, device="cpu", log=lambda m: None)
    _failing_after_one_batch(monkeypatch, RuntimeError("disk full"))
    with pytest.raises(RuntimeError, match="disk full"):
        run_collect(db, MODEL, targets, "wikipedia", config, device="cpu", log=lambda m: None)
    monkeypatch.undo()
    with db.session() as s:
        assert s.scalars(select(Feature)).all() == []
        assert s.scalars(select(Run.status).order_by(Run.id)).all() == ["interrupted", "failed"]
    stats = run_collect(db, MODEL, targets, "wikipedia", config, device="cpu", log=lambda m: None)
    assert stats["layer 0 MLP neurons"]["features"] == loaded.model.config.intermediate_size
    with db.session() as s:
        assert s.scalars(select(Run.status).order_by(Run.id)).all() == ["interrupted", "failed", "done"]
        # The split rule is stored with the collection: one made before it carries none (the per-window hash).
        assert s.scalars(select(Run.config)).all()[-1]["data_split_rule"] == "balanced-top-random/v1"
    assert run_collect(db, MODEL, targets, "wikipedia", config, device="cpu", log=lambda m: None) == {"skipped": 1}


@pytest.mark.parametrize("args, message", [
    (["--model", "no-such-model-xyz", "--layers", "1"], "could not load model 'no-such-model-xyz'"),
    (["--layers", "1", "--corpus", "/no/such/corpus.txt"], "corpus '/no/such/corpus.txt' is not"),
    (["--layers", "1", "--corpus", "hf:user/data@"], "corpus spec 'hf:user/data@': no split; expected hf:<dataset id>"),
    (["--sae", "WIDTH-100"], "expects d_in=100"),
])
def test_cli_bad_input_is_one_clear_line(args, message, tmp_path, sqlite_url, loaded):
    args = [str(_sae_folder(tmp_path, d_in=100, layer=2)) if a == "WIDTH-100" else a for a in args]
    result = _cli(sqlite_url, *args)
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code != 0 and len(lines) == 1 and lines[0].startswith("Error: ") and message in lines[0], result.output
    assert isinstance(result.exception, SystemExit)  # a clean exit, not an uncaught exception


def test_cli_collects_from_a_parquet_dataset_named_by_split_and_column(tmp_path, sqlite_url, loaded):
    """`--corpus hf:<local dataset folder>` streams through `datasets` (offline here); the corpus's name, with its
    split and text column, is stored with the run and in every record's provenance."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    texts = [f"Document {i} tells of the river {w} and the town {w} beside it, where people fish at dawn."
             for i, w in enumerate(["Severn", "Thames", "Tyne", "Trent", "Wye", "Ouse", "Avon", "Dee"])]
    (tmp_path / "rivers" / "data").mkdir(parents=True)
    pq.write_table(pa.table({"key": [f"r{i}" for i in range(len(texts))], "body": texts}),
                   tmp_path / "rivers" / "data" / "train.parquet")
    result = _cli(sqlite_url, "--layers", "1", "--tokens", "120", "--corpus", f"hf:{tmp_path / 'rivers'}",
                  "--text-column", "body")
    assert result.exit_code == 0, result.output
    name = f"hf:{tmp_path / 'rivers'}@train#body"
    with Database(sqlite_url).session() as s:
        assert s.scalars(select(Run.config)).one()["corpus"] == name
        feature = s.scalars(select(Feature).where(Feature.layer == 1, Feature.index == 7)).one()
        assert feature.n_tokens == 120
        records = load_feature_records(s, feature).records
    assert records and {r.provenance.corpus for r in records} == {name}
    for r in records:  # each record is a stretch of its own row's text
        assert "".join(r.tokens) in texts[int(r.provenance.document)]
    # Another column of the same table is another corpus: the layer is kept, and the skip says what it came from.
    other = _cli(sqlite_url, "--layers", "1", "--corpus", f"hf:{tmp_path / 'rivers'}", "--text-column", "key")
    assert other.exit_code == 0 and (f"layer 1 MLP neurons: already collected from corpus {name}, not "
                                     f"hf:{tmp_path / 'rivers'}@train#key; skipped") in other.output, other.output
