"""SAEs and transcoders through SAELens itself: folders written by SAELens's own `save_model`, loaded by
`load_sae`, give exactly SAELens's `encode`; malformed folders fail naming the file and field; `saelens:` specs
parse and fail clearly offline (nothing is downloaded); without the package, a clear install hint."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from activations.hooks import HookPoint
from activations.sae import SaeError, load_sae
from activations.sae_files import load_saelens_without_saelens
from activations.sae_lens_loader import split_spec
from tests.saelens_files import D_MODEL, D_SAE, SAE_ARCHITECTURES, TRANSCODER_ARCHITECTURES, write_saelens

sae_lens = pytest.importorskip("sae_lens")  # the `saelens` extra; the test extra installs it
X = torch.randn(3, 7, D_MODEL, generator=torch.Generator().manual_seed(1)) * 2


def _saelens_encode(folder, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return sae_lens.SAE.load_from_disk(folder).encode(x)


@pytest.mark.parametrize("architecture", SAE_ARCHITECTURES + TRANSCODER_ARCHITECTURES)
def test_every_architecture_encodes_exactly_as_saelens(tmp_path, architecture):
    hook = "blocks.6.mlp.hook_in" if "transcoder" in architecture else "blocks.6.hook_resid_post"
    folder = write_saelens(tmp_path / architecture, architecture, hook=hook)
    sae = load_sae(folder)
    assert (sae.format, sae.architecture, sae.d_in, sae.d_sae) == ("saelens", architecture, D_MODEL, D_SAE)
    assert sae.loader == f"sae_lens {sae_lens.__version__}"
    ours, theirs = sae.encode(X), _saelens_encode(folder, X)
    assert torch.equal(ours, theirs)
    assert (ours > 0).any() and (ours == 0).any()
    assert torch.equal(sae.W_dec, load_file(str(folder / "sae_weights.safetensors"))["W_dec"])
    if "transcoder" in architecture:
        assert (sae.hook, sae.hook_out, sae.output_hook) == (HookPoint(6, "mlp_in"), HookPoint(6, "mlp_out"), HookPoint(6, "mlp_out"))
    else:
        assert (sae.hook, sae.hook_out, sae.output_hook) == (HookPoint(6, "resid_post"), None, HookPoint(6, "resid_post"))


def test_normalised_input_and_the_transcoder_hook_names_saelens_releases_use(tmp_path):
    folder = write_saelens(tmp_path / "tc", "jumprelu_transcoder", hook="blocks.3.hook_mlp_in",
                           hook_out="blocks.3.hook_mlp_out", normalize="constant_norm_rescale")
    sae = load_sae(folder)
    assert (sae.hook, sae.hook_out) == (HookPoint(3, "mlp_in"), HookPoint(3, "mlp_out"))
    assert torch.equal(sae.encode(X * 50), _saelens_encode(folder, X * 50))
    assert load_sae(write_saelens(tmp_path / "ln2", "transcoder", hook="blocks.2.ln2.hook_normalized",
                                  hook_out="blocks.2.hook_mlp_out")).hook == HookPoint(2, "mlp_in")


@pytest.mark.parametrize("architecture", ["standard", "jumprelu", "topk"])
def test_our_reader_without_saelens_gives_saelens_latents(tmp_path, architecture):
    """The fallback for a machine without the extra reads SAELens's own files to the same numbers."""
    folder = write_saelens(tmp_path / architecture, architecture, normalize="constant_norm_rescale")
    ours = load_saelens_without_saelens(folder).encode(X)
    np.testing.assert_allclose(ours.numpy(), _saelens_encode(folder, X).numpy(), rtol=1e-5, atol=1e-5)


def _break(folder, case: str) -> None:
    cfg = json.loads((folder / "cfg.json").read_text())
    weights = load_file(str(folder / "sae_weights.safetensors"))
    if case == "no-d_in":
        del cfg["d_in"]
    elif case == "no-architecture":
        del cfg["architecture"]
    elif case == "unknown-architecture":
        cfg["architecture"] = "frobnicated"
    elif case == "no-k":
        del cfg["k"]
    elif case == "short-W_dec":
        weights["W_dec"] = weights["W_dec"][:, :-1].contiguous()
    elif case == "no-b_gate":
        del weights["b_gate"]
    (folder / "cfg.json").write_text(json.dumps(cfg))
    save_file(weights, str(folder / "sae_weights.safetensors"))


@pytest.mark.parametrize("architecture, case, message", [
    ("standard", "no-d_in", r"SAE config .*/cfg.json: field 'd_in' is missing"),
    ("standard", "no-architecture", r"SAE config .*/cfg.json: field 'architecture' is missing"),
    ("standard", "unknown-architecture", r"SAE config .*/cfg.json: field 'architecture' is 'frobnicated', which SAELens does not load; it loads .*gated"),
    ("topk", "no-k", r"SAE config .*/cfg.json: field 'k' is missing"),
    ("transcoder", "short-W_dec", r"SAE weights .*/sae_weights.safetensors: tensor 'W_dec' has shape \[32, 639\], but cfg.json \(d_in=640, d_sae=32, d_out=640\) gives \[32, 640\]"),
    ("gated", "no-b_gate", r"SAE weights .*/sae_weights.safetensors: tensor 'b_gate' is missing"),
])
def test_malformed_saelens_folder_is_one_error_naming_file_and_field(tmp_path, architecture, case, message):
    folder = write_saelens(tmp_path / "sae", architecture)
    _break(folder, case)
    with pytest.raises(SaeError, match=message):
        load_sae(folder)


def test_spec_splits_at_the_known_release():
    releases = ["gpt2-small-res-jb", "gemma-scope-2-270m-pt-res", "gemma-scope-2-270m-pt-res-all"]
    assert split_spec("gpt2-small-res-jb/blocks.6.hook_resid_pre", releases) == ("gpt2-small-res-jb", "blocks.6.hook_resid_pre")
    assert split_spec("gemma-scope-2-270m-pt-res-all/layer_5/w16k", releases) == ("gemma-scope-2-270m-pt-res-all", "layer_5/w16k")
    assert split_spec("someone/their-saes/layer_3", releases) == ("someone/their-saes", "layer_3")  # a Hub repo id
    with pytest.raises(SaeError, match=r"saelens:gpt2-small-res-j: no SAELens release \(close: gpt2-small-res-jb\)"):
        split_spec("gpt2-small-res-j", releases)


@pytest.mark.slow  # SAELens reads its pretrained directory (a 40k-line YAML file) first
def test_pretrained_spec_errors_are_clear_and_nothing_is_downloaded(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # no test may reach the Hub
    with pytest.raises(SaeError, match=r"no SAELens release \(close: gpt2-small-res-jb"):
        load_sae("saelens:gpt2-small-res-jbb/blocks.6.hook_resid_pre")
    with pytest.raises(SaeError, match=r"release 'gpt2-small-res-jb' has no SAE 'blocks.66.hook_resid_pre'"):
        load_sae("saelens:gpt2-small-res-jb/blocks.66.hook_resid_pre")
    for spec in ("gpt2-small-res-jb/blocks.6.hook_resid_pre", "gemma-scope-2-270m-pt-res/layer_5_width_16k_l0_small"):
        with pytest.raises(SaeError, match=rf"saelens:{spec}: HF_HUB_OFFLINE is set, and SAELens loads {spec} from the "
                                           r"Hugging Face Hub. Unset HF_HUB_OFFLINE, or once online save it"):
            load_sae(f"saelens:{spec}")


def test_without_the_package_saelens_specs_and_architectures_ask_for_the_extra(tmp_path, monkeypatch):
    standard = write_saelens(tmp_path / "standard", "standard")
    gated = write_saelens(tmp_path / "gated", "gated")
    monkeypatch.setitem(sys.modules, "sae_lens", None)  # `import sae_lens` now fails as if it were not installed
    hint = r"needs SAELens, which is not installed: pip install 'autointerp\[saelens\]'"
    with pytest.raises(SaeError, match=r"--sae saelens:gpt2-small-res-jb/blocks.6.hook_resid_pre " + hint):
        load_sae("saelens:gpt2-small-res-jb/blocks.6.hook_resid_pre")
    with pytest.raises(SaeError, match=r"architecture 'gated' " + hint):
        load_sae(gated)
    sae = load_sae(standard)  # a standard SAE still loads, by our own reader
    assert sae.loader == "autointerp" and sae.module is None and sae.hook == HookPoint(6, "resid_post")


def _collect(db_url: str, folder, *extra: str):
    from click.testing import CliRunner

    from autointerp.cli.collect import collect_command

    return CliRunner().invoke(collect_command, ["--model", "local:gemma-3-270m", "--layers", "6", "--sae", str(folder),
                                                "--tokens", "2000", "--ctx-len", "32", "--batch-size", "16",
                                                "--db", db_url, *extra])


def test_malformed_folder_fails_the_cli_before_anything_is_written(tmp_path):
    folder = write_saelens(tmp_path / "sae", "transcoder", hook="blocks.6.mlp.hook_in")
    _break(folder, "short-W_dec")
    db_file = tmp_path / "never.db"
    result = _collect(f"sqlite:///{db_file}", folder)
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 1 and len(lines) == 1, result.output
    assert lines[0].startswith("Error: SAE weights ") and "sae_weights.safetensors: tensor 'W_dec' has shape" in lines[0]
    assert not db_file.exists()  # no database, no run row, no half-written layer


@pytest.fixture(scope="module")
def gemma():
    from llm_client.local_models import load_model

    return load_model("gemma-3-270m", device="cpu")


def _activations_at(gemma, record, hook: HookPoint) -> torch.Tensor:
    """[tokens, 640] at `hook` for a record's window, from a plain forward pass of its tokens (BOS first, as
    collection feeds every window)."""
    from activations.corpus import open_corpus
    from activations.windows import bos_prefix

    tok, model = gemma.tokenizer, gemma.model
    doc = next(d for d in open_corpus().documents() if d.id == record.provenance.document)
    ids = tok(doc.text, add_special_tokens=False).input_ids[record.provenance.offset:][:len(record.tokens)]
    assert [tok.decode([i]) for i in ids] == list(record.tokens)
    prefix = bos_prefix(tok)
    seen: list[torch.Tensor] = []
    handle = model.model.layers[hook.layer].mlp.register_forward_pre_hook(lambda _m, args: seen.append(args[0]))
    with torch.inference_mode():
        out = model(torch.tensor([prefix + ids]), output_hidden_states=True)
    handle.remove()
    acts = seen[0] if hook.site == "mlp_in" else out.hidden_states[hook.layer + 1]  # [0]: the embeddings
    return acts[0, len(prefix):]


@pytest.mark.slow
@pytest.mark.parametrize("architecture, hook_name", [("gated", "blocks.6.hook_resid_post"),
                                                     ("jumprelu_transcoder", "blocks.6.mlp.hook_in")])
def test_cli_collect_stores_saelens_latents(tmp_path, sqlite_url, gemma, architecture, hook_name):
    """`autointerp collect --sae <SAELens folder>`: the stored records' activations are SAELens's own encode of
    the model's activations at the SAE's input hook; a transcoder's logit lens reads its decoder at its output."""
    from sqlalchemy import select

    from activations.evidence import logit_lens
    from activations.hooks import parse_hook
    from storage.core.db import Database
    from storage.core.schema import Feature
    from storage.records.record_store import load_feature_records

    folder = write_saelens(tmp_path / architecture, architecture, hook=hook_name, normalize="constant_norm_rescale")
    result = _collect(sqlite_url, folder)
    assert result.exit_code == 0, result.output
    hook = parse_hook(hook_name)
    with Database(sqlite_url).session() as s:
        feats = s.scalars(select(Feature).where(Feature.kind == "sae_latent").order_by(Feature.index)).all()
        assert len(feats) == D_SAE and feats[0].layer == 6
        row = feats[0].sae
        assert (row.hook, row.architecture, row.meta["loader"]) == (str(hook), architecture, f"sae_lens {sae_lens.__version__}")
        assert row.meta["hook_out"] == ("blocks.6.hook_mlp_out" if "transcoder" in architecture else None)
        live = [f for f in feats if not f.dead][:4]
        records = [load_feature_records(s, f) for f in live]
        logits = {f.index: f.extra["logits"] for f in live}
    assert len(live) == 4
    theirs = sae_lens.SAE.load_from_disk(folder)
    for fr in records:
        for record in fr.select(samples=["top"])[:2]:
            with torch.no_grad():
                expected = theirs.encode(_activations_at(gemma, record, hook))[:, fr.feature.index]
            np.testing.assert_allclose(record.activations, expected.numpy(), rtol=1e-3, atol=1e-3)
    lens = logit_lens(gemma.model, gemma.tokenizer, theirs.W_dec.detach()[[f.index for f in live]])
    assert [logits[f.index] for f in live] == lens


@pytest.mark.slow
def test_an_abstopk_sae_is_collected_on_both_sides(tmp_path, sqlite_url):
    """AbsTopK latents are signed: `collect` keeps their most negative records (as --signed) without being asked,
    and says so."""
    from sqlalchemy import func, select

    from storage.core.db import Database
    from storage.core.schema import ActivationRecordRow, Run

    folder = write_saelens(tmp_path / "abstopk", "abstopk")
    result = _collect(sqlite_url, folder)
    assert result.exit_code == 0, result.output
    assert "its latents are signed, so both sides are collected" in result.output
    with Database(sqlite_url).session() as s:
        bottom = s.scalar(select(func.count()).select_from(ActivationRecordRow)
                          .where(ActivationRecordRow.sample == "bottom"))
        run = s.scalars(select(Run)).one()
    assert bottom > 0 and run.config["sampler"]["bottom_k"] == run.config["sampler"]["top_k"]
