"""`autointerp collect`: parse what to collect (layers, SAE, sampler settings) and hand it to the
collection run (`autointerp.workflows.collect_run`)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from autointerp.cli import summary
from autointerp.cli.errors import Command
from autointerp.cli.options import db_option
from llm_client.local_models import cache_dir
from storage.core.db import Database

if TYPE_CHECKING:
    from activations.collect_config import Target


def parse_layers(text: str | None) -> list[int]:
    if not text:
        return []
    try:
        layers = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise click.BadParameter(
            f"{text!r}: give layer numbers separated by commas, e.g. 3,5", param_hint="--layers"
        ) from None
    if any(layer < 0 for layer in layers):
        raise click.BadParameter(f"{text!r}: layers must be >= 0", param_hint="--layers")
    return layers


def build_targets(layers: list[int], sae_path: str | None, sae_hook: str | None, sae_name: str | None,
                  sae_hook_out: str | None = None) -> list[Target]:
    from activations.collect_config import neuron_target, sae_target  # torch
    from activations.sae import load_sae

    if sae_path is None:
        if not layers:
            raise click.UsageError("give --layers (e.g. --layers 6) or an --sae to collect")
        return [neuron_target(layer) for layer in layers]
    if len(layers) > 1:
        raise click.UsageError("an SAE hooks one layer: give at most one --layers value with --sae")
    sae = load_sae(sae_path, hook=sae_hook, layer=layers[0] if layers else None, name=sae_name, hook_out=sae_hook_out)
    if layers and sae.hook is not None and sae.hook.layer != layers[0]:
        raise click.UsageError(f"SAE {sae.name} hooks layer {sae.hook.layer} ({sae.hook}), not --layers {layers[0]}; "
                               "drop --layers or pass --sae-hook")
    return [sae_target(sae)]


@click.command("collect", cls=Command, short_help=summary("collect"))
@click.option("--model", "model_spec", default="gemma-3-270m", show_default=True,
              help="Embedded name, HF id or path (local: prefix optional).")
@click.option("--layers", default=None,
              help="Layers whose MLP neurons to collect, e.g. 3,5 (with --sae: the SAE's layer).")
@click.option("--sae", "sae_path", default=None,
              help="SAE or transcoder: a folder/file (SAELens, sparsify, OpenAI .pt, Gemma Scope params.npz) or "
                   "saelens:RELEASE/SAE_ID (downloads; pip install 'autointerp[saelens]').")
@click.option("--sae-hook", default=None,
              help="Override where the SAE reads: blocks.6.hook_resid_post, layers.6.mlp, or a site "
                   "(resid_post, resid_pre, mlp_in, mlp_out, mlp_act).")
@click.option("--sae-hook-out", default=None,
              help="Override where a transcoder writes (its decoder's point, for neighbours and logit lens), "
                   "e.g. blocks.6.hook_mlp_out or mlp_out.")
@click.option("--sae-name", default=None, help="Name to store the SAE under (default: from its path).")
@click.option("--corpus", "corpus_spec", default="wikipedia", show_default=True,
              help="wikipedia, a .txt/.jsonl/.parquet file or folder, or hf:<dataset>[:<config>][@<split>]: a "
                   "Hugging Face dataset id (streamed) or local dataset folder, split train by default "
                   "(pip install autointerp[hf]).")
@click.option("--text-column", default=None,
              help="The column (.parquet, hf:) or field (.jsonl) holding the text "
                   "(default: the first of text, content, document).")
@click.option("--tokens", "max_tokens", type=click.IntRange(min=1), default=100_000, show_default=True,
              help="Scored tokens to run.")
@click.option("--ctx-len", type=click.IntRange(min=2), default=64, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=None,
              help="Windows per forward pass (default 16 on CPU, 128 on CUDA).")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--dtype", default=None,
              help="float32, float16 or bfloat16 (default: bfloat16 on CUDA, float32 on CPU).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--top-k", type=click.IntRange(min=1), default=20, show_default=True)
@click.option("--n-random", type=click.IntRange(min=1), default=20, show_default=True)
@click.option("--n-quantiles", type=click.IntRange(min=1), default=5, show_default=True)
@click.option("--per-quantile", type=click.IntRange(min=1), default=5, show_default=True)
@click.option("--signed", is_flag=True,
              help="Also keep each feature's --top-k most negative windows (sample 'bottom'), for features with two "
                   "sides (the MLP neurons of gated models, AbsTopK latents): `explain --polarity negative|both` "
                   "explains and scores that side. See docs/collecting.md.")
@click.option("--overwrite", is_flag=True, help="Redo layers that are already collected.")
@click.option("--executor", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="local: one pass in this process; ray: the corpus cut into --shards, each a Ray task on its own "
                   "device (a GPU when the cluster has them), merged exactly.")
@click.option("--ray-address", default="auto", show_default=True,
              help="Ray cluster to join (auto: the running one, else start one on this machine).")
@click.option("--workers", type=click.IntRange(min=1), default=2, show_default=True,
              help="With --executor ray: shards in flight at once (one device each).")
@click.option("--shards", type=click.IntRange(min=1), default=8, show_default=True,
              help="With --executor ray: document ranges the corpus is cut into.")
@click.option("--checkpoint-dir", type=click.Path(file_okay=False), default=None,
              help="With --executor ray: where finished shards are kept until the layers are stored, so a killed "
                   "collect resumes (default: beside a SQLite database, else the user cache dir).")
@db_option
def collect_command(
    model_spec: str, layers: str | None, sae_path: str | None, sae_hook: str | None, sae_hook_out: str | None,
    sae_name: str | None, corpus_spec: str, text_column: str | None, max_tokens: int, ctx_len: int,
    batch_size: int | None, device: str,
    dtype: str | None, seed: int, top_k: int, n_random: int, n_quantiles: int, per_quantile: int, signed: bool,
    overwrite: bool,
    executor: str, ray_address: str, workers: int, shards: int, checkpoint_dir: str | None, db_url: str,
) -> None:
    """Collect activation records for every MLP neuron of --layers (or every latent of --sae).

    Layers already collected are skipped (--overwrite redoes them); each layer is stored in one transaction.

    \b
    Examples:
      autointerp collect --model gemma-3-270m --layers 6 --tokens 100000
      autointerp collect --model smollm2-135m --layers 3,5 --corpus docs/ --ctx-len 32
      autointerp collect --layers 6 --corpus hf:Salesforce/wikitext:wikitext-103-raw-v1@validation
      autointerp collect --layers 6 --corpus pages.parquet --text-column body
      autointerp collect --layers 6 --sae ./my-sae --sae-hook blocks.6.hook_resid_post
      autointerp collect --sae saelens:gemma-scope-2-270m-pt-res/layer_5_width_16k_l0_small
      autointerp collect --layers 6 --signed
    """
    from activations.collect_config import CollectConfig  # torch
    from activations.sae import SIGNED_ARCHITECTURES
    from activations.sampling import SamplerConfig
    from autointerp.workflows.collect_run import run_collect

    targets = build_targets(parse_layers(layers), sae_path, sae_hook, sae_name, sae_hook_out)
    signed_sae = next((t.sae for t in targets if t.sae and t.sae.architecture in SIGNED_ARCHITECTURES), None)
    if signed_sae is not None and not signed:
        signed = True
        click.echo(f"SAE {signed_sae.name} is {signed_sae.architecture}: its latents are signed, so both sides are "
                   "collected (as --signed)", err=True)
    if batch_size is None:
        batch_size = 128 if device.startswith("cuda") or (device == "auto" and _cuda()) else 16
    config = CollectConfig(
        ctx_len=ctx_len, max_tokens=max_tokens, batch_size=batch_size,
        sampler=SamplerConfig(top_k=top_k, n_random=n_random, n_quantiles=n_quantiles, per_quantile=per_quantile,
                              seed=seed, bottom_k=top_k if signed else 0),
    )
    db = Database(db_url)
    log = lambda msg: click.echo(msg, err=True)  # noqa: E731
    collector = None
    if executor == "ray":
        from autointerp.executors.ray_collect import RayCollectJob, RayCollector

        folder = Path(checkpoint_dir) if checkpoint_dir else _default_checkpoints(db)
        collector = RayCollector(RayCollectJob(ray_address, workers, shards, folder), model_spec=model_spec,
                                 corpus_spec=corpus_spec, text_column=text_column, device=device, dtype=dtype,
                                 log=log)
    run_collect(db, model_spec, targets, corpus_spec, config, text_column=text_column, device=device, dtype=dtype,
                overwrite=overwrite, show_progress=True, log=log, collector=collector)


def _default_checkpoints(db: Database) -> Path:
    if db.url.startswith("sqlite:///") and db.url != "sqlite:///:memory:":
        return Path(db.url[len("sqlite:///"):] + ".shards").absolute()
    return cache_dir() / "collect-shards"


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


COMMANDS = [collect_command]
