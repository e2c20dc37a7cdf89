"""`autointerp import` of a delphi latent cache written in delphi's published layout (safetensors shards of
locations/activations/tokens per hookpoint, beside its config.json), with planted latents over real tokens of the
embedded smollm2 tokenizer; on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from safetensors.numpy import load_file, save_file
from sqlalchemy import func, select
from transformers import AutoTokenizer

from activations.records import FeatureId
from autointerp.cli import main
from llm_client.local_models import resolve_model_path
from storage.core import repository as repo
from storage.core.schema import ActivationRecordRow, Feature
from storage.records.record_store import load_feature_records
from tests.conftest import FIXTURES

MODEL = "smollm2-135m"
HOOK = "layers.3.mlp"
SEQ_LEN, N_SEQ = 128, 40  # windows of 64 tokens: two per cached sequence, 80 in all
# Latent 2 (shard 0_3): planted peaks at (sequence, position) -> value; every 7th token elsewhere fires weakly.
PEAKS = {(5, 10): 9.0, (17, 100): 8.0, (30, 64): 7.0}
WEAK = 0.5


def make_tokens() -> np.ndarray:
    """N_SEQ sequences of SEQ_LEN real smollm2 tokens (seeded: the same every run)."""
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(MODEL))
    words = ("the river runs past an old mill where children play in the summer and the baker sells bread "
             "to every traveller who comes through the small town on the hill near the forest").split()
    rng = np.random.default_rng(0)
    text = " ".join(rng.choice(words, size=SEQ_LEN * N_SEQ))
    ids = tokenizer(text)["input_ids"][: SEQ_LEN * N_SEQ]
    assert len(ids) == SEQ_LEN * N_SEQ
    return np.array(ids, dtype=np.int32).reshape(N_SEQ, SEQ_LEN)


@pytest.fixture(scope="module")
def tokens() -> np.ndarray:
    return make_tokens()


def planted_latent2() -> dict[tuple[int, int], float]:
    acts = {(s, p): WEAK for s in range(N_SEQ) for p in range(SEQ_LEN) if (s * SEQ_LEN + p) % 7 == 0}
    acts.update(PEAKS)
    return acts


def write_cache(root: Path, tokens: np.ndarray, token_id_latent5: int) -> Path:
    """delphi's layout: <root>/<hookpoint>/config.json and <first>_<last>.safetensors with the latent index
    relative to <first>, uint16 locations and float16 activations as delphi's save_splits writes them."""
    folder = root / HOOK
    folder.mkdir(parents=True)
    config = {"dataset_repo": "EleutherAI/SmolLM2-135M-10B", "dataset_split": "train[:1%]", "dataset_name": "",
              "dataset_column": "text", "batch_size": 8, "cache_ctx_len": SEQ_LEN, "n_tokens": tokens.size,
              "n_splits": 2, "model_name": "HuggingFaceTB/SmolLM2-135M"}
    (folder / "config.json").write_text(json.dumps(config, indent=4))
    shard0 = [(s, p, 2, v) for (s, p), v in sorted(planted_latent2().items())]
    # Latent 5 (shard 4_7, relative index 1) fires 3.0 on every occurrence of one token.
    shard1 = [(s, p, 1, 3.0) for s, p in zip(*np.nonzero(tokens == token_id_latent5))]
    for name, rows in (("0_3", shard0), ("4_7", shard1)):
        save_file({"locations": np.array([r[:3] for r in rows], dtype=np.uint16),
                   "activations": np.array([r[3] for r in rows], dtype=np.float16),
                   "tokens": tokens}, str(folder / f"{name}.safetensors"))
    return root


def run(*args: object):
    return CliRunner().invoke(main, [str(a) for a in args])


def feature_records(db, index: int):
    with db.session() as s:
        row = repo.find_feature(s, FeatureId(MODEL, 3, "sae_latent", index, sae=HOOK))
        assert row is not None
        return load_feature_records(s, row)


def counts(db) -> tuple[int, int]:
    with db.session() as s:
        return tuple(s.scalar(select(func.count()).select_from(t)) for t in (Feature, ActivationRecordRow))


def test_import_rebuilds_planted_latents(tmp_path, tokens, db_url, db):
    token5 = int(tokens[0, 3])
    cache = write_cache(tmp_path / "latents", tokens, token5)
    result = run("import", cache, "--model", MODEL, "--db", db_url)
    assert result.exit_code == 0, result.output
    assert f"1 hookpoint(s): {HOOK}): added 8 features" in result.output

    fr = feature_records(db, 2)
    tops = [r for r in fr.records if r.sample == "top"]
    # The three planted windows lead, strongest first, each peaking at its planted token.
    for record, ((seq, pos), value) in zip(tops, sorted(PEAKS.items(), key=lambda kv: -kv[1])):
        assert record.max_activation == value
        assert record.provenance.document == str(seq) and record.provenance.offset == pos // 64 * 64
        assert record.activations[pos % 64] == value
        assert record.token_ids == tuple(int(t) for t in tokens[seq, pos // 64 * 64:pos // 64 * 64 + 64])
    assert all(r.max_activation == WEAK for r in tops[3:]) and len(tops) == 20
    planted = planted_latent2()
    assert fr.stats is not None and fr.stats.n_tokens == tokens.size
    assert fr.stats.max_activation == 9.0
    assert fr.stats.firing_fraction == pytest.approx(len(planted) / tokens.size)
    assert fr.stats.mean == pytest.approx(sum(planted.values()) / tokens.size)
    for split in ("valid", "test"):  # valid and test hold as many top as random records
        held = Counter(r.sample for r in fr.records if r.data_split == split and r.sample in ("top", "random"))
        assert held["top"] == held["random"] > 0

    fr5 = feature_records(db, 5)
    text = AutoTokenizer.from_pretrained(resolve_model_path(MODEL)).decode([token5])
    top5 = [r for r in fr5.records if r.sample == "top"]
    assert top5 and all(r.tokens[int(np.argmax(r.activations))] == text for r in top5)
    assert fr5.stats is not None and fr5.stats.max_activation == 3.0
    assert fr5.stats.firing_fraction == pytest.approx(float((tokens == token5).mean()))
    dead = feature_records(db, 0)  # never fires: statistics and random records only
    assert dead.stats is not None and dead.stats.firing_fraction == 0.0
    assert {r.sample for r in dead.records} == {"random"}

    before = counts(db)
    assert run("import", cache, "--model", MODEL, "--db", db_url).exit_code == 0
    assert counts(db) == before  # importing again adds nothing


def _rewrite(file: Path, **changes: np.ndarray | None) -> None:
    data = load_file(str(file))
    for key, value in changes.items():
        if value is None:
            del data[key]
        else:
            data[key] = value
    save_file(data, str(file))


@pytest.mark.parametrize("break_it, expected", [
    (lambda d: (d / "config.json").unlink(), "config.json: missing"),
    (lambda d: _rewrite(d / "4_7.safetensors", tokens=None), "4_7.safetensors: field 'tokens' missing"),
    (lambda d: _rewrite(d / "0_3.safetensors", activations=np.ones(3, dtype=np.float16)),
     "0_3.safetensors: field 'activations': expected shape ["),
    (lambda d: _rewrite(d / "4_7.safetensors", locations=np.array([[0, 1, 4]], dtype=np.uint16),
                        activations=np.ones(1, dtype=np.float16)),
     "4_7.safetensors: field 'locations' row 0: latent index 4 is out of range for this shard of latents 4..7"),
])
def test_malformed_cache_names_file_and_field_and_writes_nothing(tmp_path, tokens, db_url, db, break_it, expected):
    cache = write_cache(tmp_path / "latents", tokens, int(tokens[0, 3]))
    break_it(cache / HOOK)
    result = run("import", cache, "--model", MODEL, "--db", db_url)
    assert result.exit_code == 1 and expected in result.output, result.output
    assert counts(db) == (0, 0)


def test_docs_fixture_is_this_cache(tokens):
    """tests/fixtures/delphi/latents (the cache docs/collecting.md imports) is what write_cache writes."""
    fixture = FIXTURES / "delphi" / "latents" / HOOK
    for name in ("0_3", "4_7"):
        stored = load_file(str(fixture / f"{name}.safetensors"))
        np.testing.assert_array_equal(stored["tokens"], tokens)
    assert json.loads((fixture / "config.json").read_text())["cache_ctx_len"] == SEQ_LEN


def test_wrong_model_is_named(tmp_path, tokens, db_url, db):
    cache = write_cache(tmp_path / "latents", np.full_like(tokens, 60000), 60000)
    result = run("import", cache, "--model", MODEL, "--db", db_url)
    assert result.exit_code == 1 and "token id 60000, beyond the 49152 tokens" in result.output, result.output
    assert counts(db) == (0, 0)
