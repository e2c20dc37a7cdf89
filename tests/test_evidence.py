"""Weight evidence: nearest neighbours by direction cosine (row blocks, never n x n), the logit lens through the
final norm and unembedding, and their storage beside each collected feature."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.numpy import save_file
from sqlalchemy import select

from activations import evidence
from activations.collect_config import CollectConfig, neuron_target, sae_target
from activations.evidence import final_norm_scale, logit_lens, nearest_neighbours
from activations.records import FeatureId, FeatureRecords, FeatureStats
from activations.sae import load_sae
from activations.sampling import SamplerConfig
from autointerp.workflows.collect_run import run_collect
from llm_client.local_models import load_model
from storage.core.schema import Feature
from storage.reads.queries import FeatureQuery, query_features
from storage.records.collection_store import save_layer
from storage.results.runs import start_run
from tests.stored import store_features


def _planted_decoder(d_sae: int = 12, d_in: int = 8) -> np.ndarray:
    """Random rows, except latent 1 is latent 0 plus a little noise, and latent 5 is latent 4 negated."""
    rng = np.random.default_rng(0)
    w = rng.normal(size=(d_sae, d_in)).astype(np.float32)
    w[1] = w[0] * 3 + rng.normal(size=d_in).astype(np.float32) * 0.01  # same direction, other length
    w[5] = -w[4]
    return w


def _brute_force(directions: np.ndarray, k: int) -> list[list[int]]:
    unit = directions / np.linalg.norm(directions, axis=1, keepdims=True)
    sims = unit @ unit.T
    np.fill_diagonal(sims, -np.inf)
    return [list(np.argsort(-row, kind="stable")[:k]) for row in sims]


def test_planted_near_duplicates_are_each_others_first_neighbour():
    w = _planted_decoder()
    got = nearest_neighbours(torch.from_numpy(w), k=3)
    assert got[0][0]["index"] == 1 and got[1][0]["index"] == 0
    assert got[0][0]["similarity"] == pytest.approx(1.0, abs=1e-3)
    assert all(n["index"] != i for i, ns in enumerate(got) for n in ns)  # never itself
    assert all(len(ns) == 3 for ns in got)
    sims = [n["similarity"] for n in got[7]]
    assert sims == sorted(sims, reverse=True)
    assert 5 not in [n["index"] for n in got[4]]  # opposite direction: least similar, not a neighbour


def test_row_blocks_give_the_full_matrix_answer(monkeypatch):
    directions = np.random.default_rng(3).normal(size=(300, 16)).astype(np.float32)
    monkeypatch.setattr(evidence, "_BLOCK_ELEMENTS", 300 * 7)  # 7 rows per block: many blocks, a ragged last one
    got = nearest_neighbours(torch.from_numpy(directions), k=5)
    assert [[n["index"] for n in ns] for ns in got] == _brute_force(directions, 5)


def test_tiny_layers_have_fewer_neighbours():
    assert nearest_neighbours(torch.ones(1, 4)) == [[]]
    assert [[n["index"] for n in ns] for ns in nearest_neighbours(torch.eye(3), k=10)] == [[1, 2], [0, 2], [0, 1]]


def _features(n: int) -> list[FeatureRecords]:
    return [FeatureRecords(FeatureId(model="m", layer=0, kind="mlp_neuron", index=i), [],
                           FeatureStats(max_activation=0.0, firing_fraction=0.0, n_tokens=10))
            for i in range(n)]


def test_save_layer_merges_evidence_into_extra(db):
    with db.session() as s, s.begin():  # an imported feature that already carries something in extra
        store_features(s, [FeatureId(model="m", layer=0, kind="mlp_neuron", index=1)])[0].extra = {"source": "x"}
    extras = {i: {"neighbours": [{"index": 1 - i, "similarity": 0.5}],
                  "logits": {"promoted": [["a", 1.0]], "suppressed": [["b", -1.0]]}} for i in range(2)}
    with db.session() as s, s.begin():
        save_layer(s, start_run(s, "collect", {}), "m", _features(3), extras=extras)
    with db.session() as s:
        rows = {f.index: f.extra for f in s.scalars(select(Feature))}
    assert rows[1] == {"source": "x", **extras[1]} and rows[0] == extras[0]
    assert rows[2] == {}  # no evidence given for it: nothing invented


@pytest.fixture(scope="module")
def gemma():
    return load_model("gemma-3-270m", device="cpu")


@pytest.mark.slow
def test_logit_lens_of_a_planted_token_direction_puts_that_token_first(gemma):
    model, tok = gemma.model, gemma.tokenizer
    scale = final_norm_scale(model)
    assert torch.allclose(scale, 1 + model.model.norm.weight.float(), rtol=1e-4)  # Gemma's RMSNorm: 1 + weight
    unembed = model.get_output_embeddings().weight.detach().float()
    ids = [tok.encode(w, add_special_tokens=False)[0] for w in (" Paris", " cat", " the")]
    # The direction that, after the final norm's scale, is exactly the token's unembedding row.
    planted = torch.stack([unembed[i] / scale for i in ids])
    lens = logit_lens(model, tok, torch.cat([planted, -planted[:1]]), n_tokens=5)
    assert [entry["promoted"][0][0] for entry in lens[:3]] == [" Paris", " cat", " the"]
    assert lens[3]["suppressed"][0][0] == " Paris"  # the negated direction lowers it most
    assert all(len(e["promoted"]) == 5 and len(e["suppressed"]) == 5 for e in lens)
    top = [v for _, v in lens[0]["promoted"]]
    assert top == sorted(top, reverse=True) and lens[0]["suppressed"][0][1] < 0
    # A placeholder's own direction: its row is left out, so neither it nor any other placeholder is listed.
    unused = tok.convert_tokens_to_ids("<unused0>")
    assert tok.convert_ids_to_tokens(unused) == "<unused0>"
    (entry,) = logit_lens(model, tok, (unembed[unused] / scale)[None], n_tokens=20)
    assert not any(t.startswith("<unused") or t in tok.all_special_tokens
                   for t, _ in entry["promoted"] + entry["suppressed"])


SMOL = "smollm2-135m"
SMALL = CollectConfig(ctx_len=16, max_tokens=200, batch_size=8,
                      sampler=SamplerConfig(top_k=2, n_random=2, n_quantiles=1, per_quantile=1))


def _sae_folder(tmp_path, d_in: int, layer: int):
    d_sae = 16
    rng = np.random.default_rng(1)
    w_dec = rng.normal(size=(d_sae, d_in)).astype(np.float32)
    w_dec[1] = w_dec[0] * 2 + rng.normal(size=d_in).astype(np.float32) * 0.01
    folder = tmp_path / "planted-sae"
    folder.mkdir()
    save_file({"W_enc": rng.normal(size=(d_in, d_sae)).astype(np.float32) * 0.1,
               "b_enc": rng.normal(size=d_sae).astype(np.float32), "W_dec": w_dec, "b_dec": np.zeros(d_in, np.float32)},
              str(folder / "sae_weights.safetensors"))
    (folder / "cfg.json").write_text(json.dumps({"architecture": "standard", "d_in": d_in, "d_sae": d_sae,
                                                 "hook_name": f"blocks.{layer}.hook_resid_post"}))
    return folder


@pytest.mark.slow
def test_collection_stores_neighbours_and_logits_for_every_feature(db, tmp_path):
    smol = load_model(SMOL, device="cpu")
    sae = load_sae(_sae_folder(tmp_path, smol.model.config.hidden_size, layer=2))
    run_collect(db, SMOL, [neuron_target(1), sae_target(sae)], "wikipedia", SMALL, device="cpu",
                show_progress=False, log=lambda _m: None)
    with db.session() as s:
        features = s.scalars(select(Feature)).all()
        rows = query_features(s, FeatureQuery(model=SMOL, layer=2, kind="sae_latent", limit=100))
    assert len(features) == smol.model.config.intermediate_size + 16
    for f in features:
        neighbours, logits = f.extra["neighbours"], f.extra["logits"]
        assert len(neighbours) == 10 and all(set(n) == {"index", "similarity"} for n in neighbours)
        assert f.index not in [n["index"] for n in neighbours]
        assert len(logits["promoted"]) == len(logits["suppressed"]) == 10
        assert logits["promoted"][0][1] >= logits["promoted"][-1][1] > logits["suppressed"][-1][1]
    latents = {f.index: f.extra for f in features if f.kind == "sae_latent"}
    assert latents[0]["neighbours"][0]["index"] == 1 and latents[1]["neighbours"][0]["index"] == 0
    by_index = {r["index"]: r for r in rows}
    assert by_index[0]["neighbours"] == latents[0]["neighbours"] and by_index[0]["logits"] == latents[0]["logits"]
    # An MLP neuron's neighbours are by its down-projection column: check one against the weights.
    neuron = next(f for f in features if f.kind == "mlp_neuron" and f.index == 7)
    columns = smol.model.model.layers[1].mlp.down_proj.weight.detach().T.numpy()
    assert [n["index"] for n in neuron.extra["neighbours"]] == _brute_force(columns, 10)[7]


@pytest.mark.slow
def test_sae_on_mlp_activations_reads_its_decoder_through_the_down_projection():
    """An SAE trained on neuron activations (site mlp_act): a latent whose decoder row is neuron j's unit vector
    writes exactly what neuron j writes, so their logit lenses agree; its neighbours are among the latents."""
    from activations.collect_config import Target
    from activations.evidence import feature_evidence
    from activations.hooks import HookPoint
    from activations.sae import Sae

    smol = load_model(SMOL, device="cpu")
    d_mlp = smol.model.config.intermediate_size
    w_dec = torch.zeros(4, d_mlp)
    w_dec[0, 7], w_dec[1, 7], w_dec[2, 100], w_dec[3, 200] = 1.0, 2.0, 1.0, 1.0  # latent 1 = 2 x latent 0
    sae = Sae(name="mlp-sae", path="-", format="saelens", architecture="relu", W_enc=torch.zeros(d_mlp, 4),
              b_enc=torch.zeros(4), hook=HookPoint(1, "mlp_act"), W_dec=w_dec)
    latents = feature_evidence(smol.model, smol.tokenizer, Target(sae.hook, sae), k=3)
    neurons = feature_evidence(smol.model, smol.tokenizer, neuron_target(1), k=3)
    assert [t for t, _ in latents[0]["logits"]["promoted"]] == [t for t, _ in neurons[7]["logits"]["promoted"]]
    assert latents[0]["logits"]["promoted"][0][1] == pytest.approx(neurons[7]["logits"]["promoted"][0][1], rel=1e-4)
    assert latents[1]["logits"]["promoted"][0][1] == pytest.approx(2 * latents[0]["logits"]["promoted"][0][1],
                                                                   rel=1e-4)
    assert latents[0]["neighbours"][0] == {"index": 1, "similarity": pytest.approx(1.0)}


@pytest.mark.slow
def test_a_transcoders_evidence_reads_its_decoder_at_its_output_point():
    """Where a transcoder reads does not matter to its weight evidence; where it writes does. One reading the
    neuron activations (mlp_act) and writing the MLP output has residual-space decoder rows, read directly; one
    writing the neuron activations has neuron-space rows, read through the down projection."""
    from activations.collect_config import Target
    from activations.evidence import feature_evidence
    from activations.hooks import HookPoint
    from activations.sae import Sae

    smol = load_model(SMOL, device="cpu")
    d_mlp, d_model = smol.model.config.intermediate_size, smol.model.config.hidden_size
    neurons = feature_evidence(smol.model, smol.tokenizer, neuron_target(1), k=3)
    column = smol.model.model.layers[1].mlp.down_proj.weight.detach().T[7]  # what neuron 7 writes
    writes_residual = torch.stack([column, -column, torch.randn(d_model)])
    reads_neurons = Sae(name="tc-a", path="-", format="saelens", architecture="transcoder", W_enc=torch.zeros(d_mlp, 3),
                        b_enc=torch.zeros(3), hook=HookPoint(1, "mlp_act"), hook_out=HookPoint(1, "mlp_out"),
                        W_dec=writes_residual)
    writes_neurons = Sae(name="tc-b", path="-", format="saelens", architecture="transcoder", W_enc=torch.zeros(d_model, 2),
                         b_enc=torch.zeros(2), hook=HookPoint(1, "mlp_in"), hook_out=HookPoint(1, "mlp_act"),
                         W_dec=torch.eye(d_mlp)[[7, 100]])
    for sae in (reads_neurons, writes_neurons):
        latent = feature_evidence(smol.model, smol.tokenizer, Target(sae.hook, sae), k=1)[0]
        ours, theirs = latent["logits"]["promoted"], neurons[7]["logits"]["promoted"]
        assert [t for t, _ in ours] == [t for t, _ in theirs]
        assert [v for _, v in ours] == pytest.approx([v for _, v in theirs], rel=1e-4)
    opposite = feature_evidence(smol.model, smol.tokenizer, Target(reads_neurons.hook, reads_neurons), k=1)[1]
    assert opposite["logits"]["suppressed"][0][0] == neurons[7]["logits"]["promoted"][0][0]
