"""`collect --executor ray`: the corpus is cut into shards (document ranges, shards.py); each shard is a Ray
task on a device of its own (a GPU when the cluster has them) that runs the streaming sampler over its
windows and returns the samplers' states; the driver merges them (exactly: see activations.sampling) and
builds and stores the records as a local collection does.

Every finished shard's states are checkpointed on the driver's disk, so a collection killed midway resumes
with the shards it lacks; the checkpoints go once every target is stored. A worker process keeps the model
it loaded for the next shard it gets.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from activations.assemble import build_feature_records
from activations.collect import stream_windows
from activations.collect_config import CollectConfig, Target
from activations.corpus import Corpus, open_corpus
from activations.records import FeatureRecords
from activations.sampling import SamplerState, StreamingSampler
from autointerp.executors.cluster import connect
from autointerp.executors.shards import Shard, plan_shards, shard_windows
from llm_client.local_models import LoadedModel, cache_dir, load_model, use_cache_dir

_loaded: dict[tuple[str, str, str | None], LoadedModel] = {}  # per worker process: the model of earlier shards


def collect_shard(model_name: str, device: str, dtype: str | None, corpus: tuple[str, str | None],
                  targets: list[Target], config: CollectConfig, shard: Shard, models_dir: Path) -> list[SamplerState]:
    """One Ray task: the samplers' states (one per target, in order) after the shard's windows. `models_dir`:
    the driver's cache folder (AUTOINTERP_CACHE), where converted models are kept. `corpus`: the spec and text
    column the driver opened."""
    use_cache_dir(models_dir)
    key = (model_name, device, dtype)
    if key not in _loaded:
        _loaded.clear()  # one model per worker process at a time
        _loaded[key] = load_model(model_name, device=device, dtype=dtype)
    loaded = _loaded[key]
    windows = shard_windows(open_corpus(*corpus), loaded.tokenizer, config, shard)
    samplers = stream_windows(loaded.model, loaded.tokenizer, windows, targets, config)
    return [samplers[t].state() for t in targets]


@dataclass(frozen=True)
class RayCollectJob:
    address: str = "auto"
    workers: int = 2  # shards in flight at once
    shards: int = 8
    checkpoint_dir: Path = Path("autointerp-shards")


class ShardCheckpoints:
    """Finished shards' states on disk, one file per shard, under a folder named by what was asked."""

    def __init__(self, root: Path, what: dict[str, Any]) -> None:
        digest = hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()[:16]
        self.folder = root / digest

    def _path(self, shard: Shard) -> Path:
        return self.folder / f"shard-{shard.index:05d}.pt"

    def load(self, shard: Shard) -> list[SamplerState] | None:
        path = self._path(shard)
        return torch.load(path, weights_only=False) if path.exists() else None

    def save(self, shard: Shard, states: list[SamplerState]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        partial = self._path(shard).with_suffix(".partial")
        torch.save(states, partial)
        partial.replace(self._path(shard))  # a file that exists is whole

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
        try:
            self.folder.parent.rmdir()  # the root too, once no other collection keeps shards there
        except OSError:
            pass


class RayCollector:
    """The streaming pass on a Ray cluster (run_collect's `collector`)."""

    def __init__(self, job: RayCollectJob, *, model_spec: str, corpus_spec: str, device: str, dtype: str | None,
                 log: Callable[[str], None] = print, text_column: str | None = None) -> None:
        self.job, self.model_spec, self.device, self.dtype, self.log = job, model_spec, device, dtype, log
        self.corpus = (corpus_spec, text_column)
        self.checkpoints: ShardCheckpoints | None = None

    def collect(self, model: Any, tokenizer: Any, corpus: Corpus, targets: list[Target], model_name: str,
                config: CollectConfig, progress: Callable[[int], None]) -> dict[Target, list[FeatureRecords]]:
        ray = connect(self.job.address)
        shards = plan_shards(corpus, tokenizer, config, self.job.shards)
        self.checkpoints = ShardCheckpoints(self.job.checkpoint_dir, {
            "model": model_name, "corpus": corpus.name, "targets": [str(t) for t in targets],
            "config": asdict(config), "shards": [asdict(s) for s in shards]})
        states: dict[int, list[SamplerState]] = {}
        for shard in shards:
            if (saved := self.checkpoints.load(shard)) is not None:
                states[shard.index] = saved
                progress(shard.n_tokens)
        if states:
            self.log(f"resuming: {len(states)} of {len(shards)} shards from checkpoints in {self.checkpoints.folder}")
        self.log(f"collecting {len(shards) - len(states)} shards on Ray, {self.job.workers} at a time")
        gpus = ray.cluster_resources().get("GPU", 0)
        use_gpu = gpus >= 1 and self.device in ("auto", "cuda")
        task = ray.remote(collect_shard).options(num_gpus=1 if use_gpu else 0, num_cpus=1, max_retries=2)
        targets_ref = ray.put(targets)
        todo = [s for s in shards if s.index not in states]
        pending: dict[Any, Shard] = {}
        while todo or pending:
            while todo and len(pending) < self.job.workers:
                shard = todo.pop(0)
                ref = task.remote(model_name, "cuda" if use_gpu else self.device, self.dtype, self.corpus,
                                  targets_ref, config, shard, cache_dir())
                pending[ref] = shard
            ready, _ = ray.wait(list(pending), num_returns=1)
            shard = pending.pop(ready[0])
            states[shard.index] = ray.get(ready[0])
            self.checkpoints.save(shard, states[shard.index])
            progress(shard.n_tokens)
        results = {}
        for i, target in enumerate(targets):
            merged = StreamingSampler.from_state(states[shards[0].index][i])
            for shard in shards[1:]:
                merged.merge(states[shard.index][i])
            results[target] = merged.result()
        return build_feature_records(results, corpus, tokenizer, model_name, config)

    def stored(self) -> None:
        if self.checkpoints is not None:
            self.checkpoints.remove()
