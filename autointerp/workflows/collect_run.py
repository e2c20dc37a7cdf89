"""`collect` as a run: load the subject model, stream the corpus once for every target, and store each
layer in one transaction, marked complete. Resumable by layer: a layer a finished collection stored is
skipped (or redone with `overwrite`). The run row says running / done / failed / interrupted, so a stopped
run never leaves a layer that looks complete."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any, Protocol

from activations.collect import check_targets, collect
from activations.collect_config import CollectConfig, Target
from activations.corpus import Corpus, open_corpus
from activations.evidence import feature_evidence
from activations.hooks import n_layers
from activations.records import FeatureRecords
from activations.sae import describe
from activations.vocab import RunKind
from autointerp.runtime.interrupts import sigterm_interrupts
from autointerp.runtime.progress import ProgressDisplay
from autointerp.runtime.run_record import RunRecord
from llm_client.local_models import load_model, local_model_name
from storage.core.db import Database
from storage.records.collection_store import layer_corpus, save_layer


class Collector(Protocol):
    """Another way to run the streaming pass (the Ray executor's shards): `collect`'s signature, and a call
    once every target is stored (to drop what it kept for resuming)."""

    def collect(self, model: Any, tokenizer: Any, corpus: Corpus, targets: list[Target], model_name: str,
                config: CollectConfig, progress: Callable[[int], None]) -> dict[Target, list[FeatureRecords]]: ...

    def stored(self) -> None: ...


def run_collect(
    db: Database, model_spec: str, targets: list[Target], corpus_spec: str, config: CollectConfig, *,
    text_column: str | None = None, device: str = "auto", dtype: str | None = None, overwrite: bool = False,
    show_progress: bool = True, log: Callable[[str], None] = print, collector: Collector | None = None,
) -> dict[str, Any]:
    """Collect and store every target not already complete; returns what was stored per target. `collector`
    replaces the in-process streaming pass (default: this process, one pass). `text_column`: the corpus's
    (see activations.corpus.open_corpus)."""
    name = local_model_name(model_spec)
    corpus = open_corpus(corpus_spec, text_column)  # first: a bad spec fails at once, and skips name the corpus
    with db.session() as session:
        stored_from = {t: layer_corpus(session, name, t.layer, t.kind, t.sae_name) for t in targets}
    todo = [t for t in targets if overwrite or stored_from[t] is None]
    for target in targets:
        if target not in todo:
            was = stored_from[target]
            note = "," if was == corpus.name else f" from corpus {was}, not {corpus.name};"
            log(f"{target}: already collected{note} skipped (use --overwrite to redo it)")
    if not todo:
        return {"skipped": len(targets)}
    loaded = load_model(name, device=device, dtype=dtype)
    check_targets(loaded.model, todo)  # before any forward pass, and before a run row exists
    # The SAEs' descriptions (loader, architecture, hooks) too: another loader or file may give other latents.
    run_config = {"model": name, "corpus": corpus.name, "targets": [str(t) for t in todo], "device": loaded.device,
                  "dtype": str(loaded.dtype), "saes": [describe(t.sae) for t in todo if t.sae is not None],
                  **asdict(config)}
    stored: dict[str, Any] = {}
    with sigterm_interrupts(), RunRecord(db, RunKind.COLLECT, run_config, total=len(todo)) as record:
        start = time.perf_counter()
        with ProgressDisplay(config.max_tokens, label="collect", unit="tok", show=show_progress) as display:
            results = (collector.collect if collector is not None else collect)(
                loaded.model, loaded.tokenizer, corpus, todo, name, config, display.advance)
        log(f"collected {', '.join(map(str, results))} in {time.perf_counter() - start:.1f} s")
        for target, features in results.items():
            start = time.perf_counter()
            # Neighbours and logit lens come from the weights: once per target, beside its records.
            evidence = feature_evidence(loaded.model, loaded.tokenizer, target)
            log(f"{target}: {_evidence_note(target, evidence)} in {time.perf_counter() - start:.1f} s")
            start = time.perf_counter()
            with db.session() as session, session.begin():
                n = save_layer(session, record.run_id, name, features, n_layers=n_layers(loaded.model),
                               sae_info=_sae_info(target), extras=evidence)
            dead = sum(1 for f in features if f.stats is not None and f.stats.dead)
            stored[str(target)] = {"features": len(features), "dead": dead, "records": n}
            log(f"{target}: stored {len(features)} features ({dead} dead), {n} records in "
                f"{time.perf_counter() - start:.1f} s")
            record.details["layers"] = stored
            record.stats.done += 1
    if collector is not None:
        collector.stored()
    return stored


def _evidence_note(target: Target, evidence: dict[int, dict[str, Any]]) -> str:
    if not evidence:
        return "no neighbours or logit lens (the SAE file has no decoder weights)"
    return f"neighbours and logit lens of {len(evidence)} features"


def _sae_info(target: Target) -> dict[str, Any] | None:
    if target.sae is None:
        return None
    info = describe(target.sae)
    return {"name": info["name"], "layer": target.layer, "hook": info["hook"], "width": info["d_sae"],
            "architecture": info["architecture"], "path": info["path"], "meta": info}
