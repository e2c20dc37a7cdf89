"""SAE loading by our own readers: tiny random SAEs written in every format we read ourselves (sparsify,
OpenAI .pt, Gemma Scope npz, and SAELens folders when SAELens is absent), encoded and checked against numpy.
SAELens folders through SAELens itself: tests/test_sae_lens.py."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.numpy import save_file

from activations.hooks import HookPoint
from activations.sae import SaeError, load_sae
from activations.sae_files import load_saelens_without_saelens

D_IN, D_SAE, K = 8, 24, 4
rng = np.random.default_rng(0)
W_ENC = rng.normal(size=(D_IN, D_SAE)).astype(np.float32)
B_ENC = rng.normal(size=D_SAE).astype(np.float32) * 0.1
W_DEC = rng.normal(size=(D_SAE, D_IN)).astype(np.float32)
B_DEC = rng.normal(size=D_IN).astype(np.float32)
THRESHOLD = np.abs(rng.normal(size=D_SAE)).astype(np.float32)
X = rng.normal(size=(3, 5, D_IN)).astype(np.float32)


def _relu(a: np.ndarray) -> np.ndarray:
    return np.maximum(a, 0)


def _topk(pre: np.ndarray, k: int) -> np.ndarray:
    out = np.zeros_like(pre)
    idx = np.argsort(-pre, axis=-1)[..., :k]
    np.put_along_axis(out, idx, _relu(np.take_along_axis(pre, idx, -1)), -1)
    return out


def _encode(path, **kw) -> np.ndarray:
    return load_sae(path, **kw).encode(torch.from_numpy(X)).numpy()


def _encode_own(folder) -> np.ndarray:
    return load_saelens_without_saelens(folder).encode(torch.from_numpy(X)).numpy()


def _saelens(tmp_path, arch: str, extra: dict | None = None):
    folder = tmp_path / f"saelens-{arch}"
    folder.mkdir()
    weights = {"W_enc": W_ENC, "b_enc": B_ENC, "W_dec": W_DEC, "b_dec": B_DEC}
    if arch == "jumprelu":
        weights["threshold"] = THRESHOLD
    save_file(weights, str(folder / "sae_weights.safetensors"))
    cfg = {"architecture": arch, "d_in": D_IN, "d_sae": D_SAE, "hook_name": "blocks.2.hook_resid_post",
           "hook_layer": 2, "apply_b_dec_to_input": True, "normalize_activations": "none", **(extra or {})}
    (folder / "cfg.json").write_text(json.dumps(cfg))
    return folder


def test_saelens_standard_without_saelens(tmp_path):
    folder = _saelens(tmp_path, "standard")
    sae = load_saelens_without_saelens(folder)
    assert (sae.d_in, sae.d_sae, sae.architecture, sae.loader) == (D_IN, D_SAE, "relu", "autointerp")
    assert sae.hook == HookPoint(2, "resid_post") and sae.hook_out is None
    np.testing.assert_allclose(_encode_own(folder), _relu((X - B_DEC) @ W_ENC + B_ENC), rtol=1e-5, atol=1e-5)


def test_saelens_jumprelu_without_saelens(tmp_path):
    folder = _saelens(tmp_path, "jumprelu")
    pre = (X - B_DEC) @ W_ENC + B_ENC
    expected = np.where(pre > THRESHOLD, _relu(pre), 0.0)
    out = _encode_own(folder)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
    assert (out == 0).any() and (out > 0).any()


def test_saelens_topk_without_saelens_and_hook_override(tmp_path):
    folder = _saelens(tmp_path, "topk", {"k": K})
    out = _encode_own(folder)
    np.testing.assert_allclose(out, _topk((X - B_DEC) @ W_ENC + B_ENC, K), rtol=1e-5, atol=1e-5)
    assert ((out > 0).sum(-1) <= K).all()
    assert load_sae(folder, hook="mlp_out").hook == HookPoint(2, "mlp_out")
    assert load_sae(folder, hook="layers.5.mlp").hook == HookPoint(5, "mlp_out")
    assert load_sae(folder, hook="mlp_in").hook == HookPoint(2, "mlp_in")


def test_sparsify_folder(tmp_path):
    folder = tmp_path / "sparsify-run" / "layers.3"
    folder.mkdir(parents=True)
    save_file({"encoder.weight": np.ascontiguousarray(W_ENC.T), "encoder.bias": B_ENC, "W_dec": W_DEC, "b_dec": B_DEC},
              str(folder / "sae.safetensors"))
    (folder / "cfg.json").write_text(json.dumps({"expansion_factor": 3, "normalize_decoder": True, "num_latents": D_SAE,
                                                 "k": K, "d_in": D_IN}))
    sae = load_sae(folder)
    assert sae.hook == HookPoint(3, "resid_post") and sae.format == "sparsify"
    np.testing.assert_allclose(_encode(folder), _topk((X - B_DEC) @ W_ENC + B_ENC, K), rtol=1e-5, atol=1e-5)


def test_openai_topk_state_dict_normalises_input(tmp_path):
    file = tmp_path / "openai.pt"
    torch.save({
        "pre_bias": torch.from_numpy(B_DEC), "latent_bias": torch.from_numpy(B_ENC),
        "encoder.weight": torch.from_numpy(np.ascontiguousarray(W_ENC.T)), "decoder.weight": torch.from_numpy(W_DEC.T.copy()),
        "activation": "TopK", "activation_state_dict": {"k": K, "postact_fn": "ReLU"},
    }, file)
    with pytest.raises(SaeError, match="does not say where it hooks"):
        load_sae(file)
    centred = X - X.mean(-1, keepdims=True)
    normed = centred / (centred.std(-1, ddof=1, keepdims=True) + 1e-5)
    out = _encode(file, hook="blocks.4.hook_resid_post")
    np.testing.assert_allclose(out, _topk((normed - B_DEC) @ W_ENC + B_ENC, K), rtol=1e-4, atol=1e-4)


def test_gemma_scope_npz(tmp_path):
    folder = tmp_path / "gemma-scope-2b-pt-res" / "layer_7" / "width_16k" / "average_l0_71"
    folder.mkdir(parents=True)
    np.savez(folder / "params.npz", W_enc=W_ENC, b_enc=B_ENC, threshold=THRESHOLD, W_dec=W_DEC, b_dec=B_DEC)
    sae = load_sae(folder)
    assert sae.hook == HookPoint(7, "resid_post") and sae.architecture == "jumprelu"
    pre = X @ W_ENC + B_ENC  # Gemma Scope does not subtract b_dec from the input
    np.testing.assert_allclose(_encode(folder), np.where(pre > THRESHOLD, _relu(pre), 0.0), rtol=1e-5, atol=1e-5)


def test_unknown_path_and_saelens_only_architecture_are_clear_errors(tmp_path):
    with pytest.raises(SaeError, match="not found or not a known format"):
        load_sae(tmp_path / "nothing")
    folder = _saelens(tmp_path, "gated")
    with pytest.raises(SaeError, match=r"architecture 'gated' needs SAELens, which is not installed: pip install 'autointerp\[saelens\]'"):
        load_saelens_without_saelens(folder)


def test_sparsify_transcoder_reads_the_mlp_input_and_writes_its_output(tmp_path):
    """As sparsify's own encode: a transcoder does not subtract b_dec (its output bias) from its input."""
    folder = tmp_path / "sparsify-tc" / "layers.4.mlp"
    folder.mkdir(parents=True)
    save_file({"encoder.weight": np.ascontiguousarray(W_ENC.T), "encoder.bias": B_ENC, "W_dec": W_DEC, "b_dec": B_DEC},
              str(folder / "sae.safetensors"))
    (folder / "cfg.json").write_text(json.dumps({"num_latents": D_SAE, "k": K, "d_in": D_IN, "transcode": True}))
    sae = load_sae(folder)
    assert (sae.hook, sae.hook_out, sae.output_hook) == (HookPoint(4, "mlp_in"), HookPoint(4, "mlp_out"), HookPoint(4, "mlp_out"))
    assert str(sae.hook) == "blocks.4.mlp.hook_in" and sae.architecture == "topk_transcoder"
    np.testing.assert_allclose(_encode(folder), _topk(X @ W_ENC + B_ENC, K), rtol=1e-5, atol=1e-5)
    odd = folder.parent / "layers.4.mlp.act"  # the same transcoder at a module it cannot read around
    odd.mkdir()
    for name in ("sae.safetensors", "cfg.json"):
        (odd / name).write_bytes((folder / name).read_bytes())
    with pytest.raises(SaeError, match="transcoders of 'layers.4.mlp.act' are not supported"):
        load_sae(odd)


def test_gemma_scope_transcoder_path_gives_both_hooks(tmp_path):
    folder = tmp_path / "gemma-scope-2b-pt-transcoders" / "layer_3" / "width_16k" / "average_l0_76"
    folder.mkdir(parents=True)
    np.savez(folder / "params.npz", W_enc=W_ENC, b_enc=B_ENC, threshold=THRESHOLD, W_dec=W_DEC, b_dec=B_DEC)
    sae = load_sae(folder)
    assert (sae.hook, sae.hook_out, sae.architecture) == (HookPoint(3, "mlp_in"), HookPoint(3, "mlp_out"), "jumprelu_transcoder")


@pytest.mark.parametrize("case, message", [
    ("no-d_sae", r"cfg.json: field 'd_sae' is missing"),
    ("short-W_enc", r"sae_weights.safetensors: tensor 'W_enc' has shape \[8, 23\], but cfg.json \(d_in=8, d_sae=24\) gives \[8, 24\]"),
    ("no-threshold", r"sae_weights.safetensors: tensor 'threshold' is missing"),
    ("not-json", r"cfg.json is unreadable"),
])
def test_malformed_saelens_folder_without_saelens_names_file_and_field(tmp_path, case, message):
    folder = _saelens(tmp_path, "jumprelu")
    cfg = json.loads((folder / "cfg.json").read_text())
    if case == "no-d_sae":
        del cfg["d_sae"]
    (folder / "cfg.json").write_text("{oops" if case == "not-json" else json.dumps(cfg))
    weights = {"W_enc": W_ENC[:, :-1] if case == "short-W_enc" else W_ENC, "b_enc": B_ENC, "W_dec": W_DEC, "b_dec": B_DEC}
    if case != "no-threshold":
        weights["threshold"] = THRESHOLD
    save_file(weights, str(folder / "sae_weights.safetensors"))
    with pytest.raises(SaeError, match=message):
        load_saelens_without_saelens(folder)


def test_malformed_sparsify_and_gemma_scope_files_name_the_tensor(tmp_path):
    folder = tmp_path / "run" / "layers.3"
    folder.mkdir(parents=True)
    save_file({"encoder.weight": np.ascontiguousarray(W_ENC.T), "encoder.bias": B_ENC[:-1], "W_dec": W_DEC, "b_dec": B_DEC},
              str(folder / "sae.safetensors"))
    (folder / "cfg.json").write_text(json.dumps({"num_latents": D_SAE, "d_in": D_IN}))
    with pytest.raises(SaeError, match=r"cfg.json: field 'k' is missing"):
        load_sae(folder)
    (folder / "cfg.json").write_text(json.dumps({"num_latents": D_SAE, "d_in": D_IN, "k": K}))
    with pytest.raises(SaeError, match=r"sae.safetensors: tensor 'encoder.bias' has shape \[23\]"):
        load_sae(folder)
    npz = tmp_path / "params.npz"
    np.savez(npz, W_enc=W_ENC, b_enc=B_ENC, threshold=THRESHOLD[:3])
    with pytest.raises(SaeError, match=r"params.npz: tensor 'threshold' has shape \[3\]"):
        load_sae(npz, hook="blocks.1.hook_resid_post")
