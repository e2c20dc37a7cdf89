"""Cross-layer transcoders in circuit-tracer's published format: one layer's latents read at the format's input
hook and encoded as the format defines, one decoder per output layer, the logit lens and neighbours from their
sum; malformed folders fail naming the file and tensor or field; CLT latents refuse steering clearly."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from activations.hooks import HookPoint
from activations.sae import SaeError, describe, load_sae
from activations.steering import SteeringError, latent_vector
from tests.clt_files import D_CLT, D_MODEL, N_LAYERS, write_clt

X = torch.randn(3, 5, D_MODEL, generator=torch.Generator().manual_seed(1)) * 4


def _format_encode(folder, layer: int, x: torch.Tensor) -> torch.Tensor:
    """The format's encoder, as circuit-tracer's `encode_layer` defines it, computed here from the files."""
    enc = load_file(str(folder / f"W_enc_{layer}.safetensors"))
    pre = torch.einsum("...d,fd->...f", x, enc[f"W_enc_{layer}"]) + enc[f"b_enc_{layer}"]
    if f"threshold_{layer}" in enc:
        return pre * (pre > enc[f"threshold_{layer}"])
    return torch.relu(pre)


@pytest.mark.parametrize("jumprelu", [False, True])
def test_one_layer_of_a_clt_encodes_as_the_format_and_keeps_every_decoder(tmp_path, jumprelu):
    folder = write_clt(tmp_path / "clt", jumprelu=jumprelu)
    sae = load_sae(folder, layer=15)
    assert (sae.hook, sae.hook_out, sae.out_layers) == (HookPoint(15, "resid_mid"), HookPoint(15, "mlp_out"),
                                                         (15, 16, 17))
    latents = sae.encode(X)
    assert latents.shape == (3, 5, D_CLT) and (latents > 0).any() and (latents == 0).any()
    torch.testing.assert_close(latents, _format_encode(folder, 15, X))
    dec = load_file(str(folder / "W_dec_15.safetensors"))["W_dec_15"]
    assert sae.W_dec_layers is not None and torch.equal(sae.W_dec_layers, dec)
    torch.testing.assert_close(sae.W_dec, dec.sum(dim=1))
    assert describe(sae)["out_layers"] == [15, 16, 17] and describe(sae)["format"] == "circuit-tracer-clt"


def test_without_config_the_format_defaults_and_other_hook_names(tmp_path):
    bare = load_sae(write_clt(tmp_path / "bare", input_hook=None), layer=0)
    assert (str(bare.hook), str(bare.hook_out), bare.out_layers) == ("blocks.0.hook_resid_mid", "blocks.0.hook_mlp_out",
                                                                     tuple(range(N_LAYERS)))
    named = load_sae(write_clt(tmp_path / "named", input_hook="ln2.hook_normalized", output_hook="mlp.hook_out"), layer=17)
    assert (named.hook, named.hook_out, named.out_layers) == (HookPoint(17, "mlp_in"), HookPoint(17, "mlp_out"), (17,))


def test_clt_latents_cannot_be_steered(tmp_path):
    sae = load_sae(write_clt(tmp_path / "clt"), layer=16)
    with pytest.raises(SteeringError, match=r"write to layers 16-17 at once.*cannot be steered"):
        latent_vector(sae, 0)


def _break(folder, case: str) -> None:
    if case == "missing-decoder":
        (folder / "W_dec_16.safetensors").unlink()
    elif case == "short-decoder":
        save_file({"W_dec_16": torch.zeros(D_CLT, 1, D_MODEL)}, str(folder / "W_dec_16.safetensors"))
    elif case == "no-b_enc":
        enc = load_file(str(folder / "W_enc_16.safetensors"))
        save_file({k: v for k, v in enc.items() if k != "b_enc_16"}, str(folder / "W_enc_16.safetensors"))
    elif case == "bad-hook":
        (folder / "config.yaml").write_text("feature_input_hook: hook_attn_out\n")
    elif case == "gap":
        (folder / "W_enc_3.safetensors").unlink()


@pytest.mark.parametrize("case, message", [
    ("missing-decoder", r"decoder file W_dec_16.safetensors is missing"),
    ("short-decoder", r"W_dec_16.safetensors: tensor 'W_dec_16' has shape \[8, 1, 640\], but .* gives \[8, 2, 640\]"),
    ("no-b_enc", r"W_enc_16.safetensors: tensor 'b_enc_16' is missing"),
    ("bad-hook", r"config.yaml: field 'feature_input_hook' \('hook_attn_out'\)"),
    ("gap", r"missing W_enc_3.safetensors"),
])
def test_malformed_clt_is_one_error_naming_file_and_tensor(tmp_path, case, message):
    folder = write_clt(tmp_path / "clt")
    _break(folder, case)
    with pytest.raises(SaeError, match=message):
        load_sae(folder, layer=16)


def test_a_clt_needs_a_layer_it_has(tmp_path):
    folder = write_clt(tmp_path / "clt", n_layers=4)
    with pytest.raises(SaeError, match=r"pick one with --layers L"):
        load_sae(folder)
    with pytest.raises(SaeError, match=r"it has layers 0-3 \(W_enc_\*.safetensors\), not layer 6"):
        load_sae(folder, layer=6)


def _collect(db_url: str, folder, layer: int):
    from click.testing import CliRunner

    from autointerp.cli.collect import collect_command

    return CliRunner().invoke(collect_command, ["--model", "local:gemma-3-270m", "--layers", str(layer), "--sae",
                                                str(folder), "--tokens", "1500", "--ctx-len", "32", "--batch-size",
                                                "16", "--db", db_url])


def test_malformed_clt_fails_the_cli_before_anything_is_written(tmp_path):
    folder = write_clt(tmp_path / "clt")
    _break(folder, "short-decoder")
    db_file = tmp_path / "never.db"
    result = _collect(f"sqlite:///{db_file}", folder, 16)
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 1 and len(lines) == 1, result.output
    assert lines[0].startswith("Error: SAE weights ") and "W_dec_16.safetensors: tensor 'W_dec_16'" in lines[0]
    assert not db_file.exists()


def _resid_mid(gemma, record, layer: int) -> torch.Tensor:
    """[tokens, 640]: the residual stream after layer `layer`'s attention (the input of its pre-MLP norm), from a
    plain forward pass of the record's tokens (BOS first, as collection feeds every window)."""
    from activations.corpus import open_corpus
    from activations.windows import bos_prefix

    tok, model = gemma.tokenizer, gemma.model
    doc = next(d for d in open_corpus().documents() if d.id == record.provenance.document)
    ids = tok(doc.text, add_special_tokens=False).input_ids[record.provenance.offset:][:len(record.tokens)]
    assert [tok.decode([i]) for i in ids] == list(record.tokens)
    prefix = bos_prefix(tok)
    seen: list[torch.Tensor] = []
    norm = model.model.layers[layer].pre_feedforward_layernorm
    handle = norm.register_forward_pre_hook(lambda _m, args: seen.append(args[0]))
    with torch.inference_mode():
        model(torch.tensor([prefix + ids]))
    handle.remove()
    return seen[0][0, len(prefix):].float()


@pytest.mark.slow
def test_cli_collect_stores_clt_latents_and_the_summed_decoder_logit_lens(tmp_path, sqlite_url):
    """`autointerp collect --sae CLT_FOLDER --layers 16`: stored activations are the format's encoder on the
    model's resid_mid at layer 16; the logit lens reads the sum of the decoders to layers 16 and 17."""
    from sqlalchemy import select

    from activations.evidence import logit_lens
    from llm_client.local_models import load_model
    from storage.core.db import Database
    from storage.core.schema import Feature
    from storage.records.record_store import load_feature_records

    folder = write_clt(tmp_path / "clt", jumprelu=True)
    result = _collect(sqlite_url, folder, 16)
    assert result.exit_code == 0, result.output
    with Database(sqlite_url).session() as s:
        feats = s.scalars(select(Feature).where(Feature.kind == "sae_latent").order_by(Feature.index)).all()
        assert len(feats) == D_CLT and feats[0].layer == 16
        row = feats[0].sae
        assert (row.hook, row.meta["hook_out"], row.meta["out_layers"]) == ("blocks.16.hook_resid_mid",
                                                                            "blocks.16.hook_mlp_out", [16, 17])
        live = [f for f in feats if not f.dead][:3]
        records = [load_feature_records(s, f) for f in live]
        logits = {f.index: f.extra["logits"] for f in live}
    assert len(live) == 3
    gemma = load_model("gemma-3-270m", device="cpu")
    for fr in records:
        for record in fr.select(samples=["top"])[:2]:
            expected = _format_encode(folder, 16, _resid_mid(gemma, record, 16))[:, fr.feature.index]
            np.testing.assert_allclose(record.activations, expected.numpy(), rtol=1e-3, atol=1e-3)
    dec = load_file(str(folder / "W_dec_16.safetensors"))["W_dec_16"]
    rows = [f.index for f in live]
    summed = logit_lens(gemma.model, gemma.tokenizer, dec[rows].sum(dim=1))
    first = logit_lens(gemma.model, gemma.tokenizer, dec[rows, 0])  # layer 16's decoder alone
    for i, lens, alone in zip(rows, summed, first, strict=True):
        assert _same_lens(logits[i], lens) and not _same_lens(logits[i], alone)


def _same_lens(a: dict, b: dict) -> bool:
    """Same tokens in the same order, logits equal up to float32 rounding of the matrix product."""
    return all([t for t, _ in a[k]] == [t for t, _ in b[k]]
               and np.allclose([v for _, v in a[k]], [v for _, v in b[k]], atol=2e-3) for k in ("promoted", "suppressed"))
