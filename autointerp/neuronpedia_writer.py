"""Write feature documents as the files Neuronpedia's import reads (the layout of their dataset exports):

    DIR/config/explanation_type.jsonl, explanation_model_type.jsonl, explanation_score_type.jsonl,
               explanation_score_model.jsonl
    DIR/<model>/<source>/sourceset.jsonl, source.jsonl
    DIR/<model>/<source>/features/batch-<n>.jsonl.gz        Neuron rows
    DIR/<model>/<source>/activations/batch-<n>.jsonl.gz     Activation rows
    DIR/<model>/<source>/explanations/batch-<n>.jsonl.gz    Explanation rows
    DIR/<model>/<source>/explanation_scores/batch-<n>.jsonl.gz   ExplanationScore rows

Batches of 1024 features, as their exports hold. Gzip headers carry no time, so the same data writes the same
bytes."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autointerp import neuronpedia_rows as rows

BATCH_FEATURES = 1024


@dataclass
class NeuronpediaExport:
    """What was written: counts, and the features whose rows say less than the database (for the summary)."""

    features: int = 0
    activations: int = 0
    explanations: int = 0
    scores: int = 0
    undefined_scores: int = 0
    sources: list[str] = field(default_factory=list)
    without_records: list[str] = field(default_factory=list)
    bins_out_of_order: list[str] = field(default_factory=list)


class _Source:
    """The open batch files of one <model>/<source> folder."""

    def __init__(self, folder: Path, model_id: str, source: str, creator_id: str) -> None:
        self.folder, self.n_features = folder, 0
        self.files: dict[str, gzip.GzipFile] = {}
        folder.mkdir(parents=True)
        for name, row in rows.source_rows(model_id, source, creator_id).items():
            (folder / f"{name}.jsonl").write_text(json.dumps(row) + "\n", encoding="utf-8")

    def write(self, table: str, table_rows: list[dict[str, Any]]) -> None:
        if not table_rows:
            return
        if table not in self.files:
            batch = self.n_features // BATCH_FEATURES
            path = self.folder / table / f"batch-{batch}.jsonl.gz"
            path.parent.mkdir(exist_ok=True)
            self.files[table] = gzip.GzipFile(path, "wb", mtime=0)
        self.files[table].write(b"".join(json.dumps(r, ensure_ascii=False).encode() + b"\n" for r in table_rows))

    def end_feature(self) -> None:
        self.n_features += 1
        if self.n_features % BATCH_FEATURES == 0:
            self.close()

    def close(self) -> None:
        for fh in self.files.values():
            fh.close()
        self.files = {}


def write_neuronpedia(docs: Iterable[dict], out: Path, *, creator_id: str) -> NeuronpediaExport:
    """Write every document under `out` (an empty folder that exists)."""
    result = NeuronpediaExport()
    sources: dict[tuple[str, str], _Source] = {}
    named: dict[str, set[str]] = {key: set() for key in rows.CONFIG_KEYS}  # the types the rows name
    try:
        for doc in docs:
            model_id, source = rows.slug(doc["model"]), rows.source_id(doc)
            if (model_id, source) not in sources:
                sources[model_id, source] = _Source(out / model_id / source, model_id, source, creator_id)
                result.sources.append(f"{model_id}/{source}")
            _write_feature(sources[model_id, source], doc, model_id, source, creator_id, result)
            explanations, scores, undefined = rows.explanation_rows(doc, model_id, source, creator_id)
            for table, table_rows in (("explanations", explanations), ("explanation_scores", scores)):
                sources[model_id, source].write(table, table_rows)
            sources[model_id, source].end_feature()
            written = {"explanations": explanations, "explanation_scores": scores}
            for key, (table, column) in rows.CONFIG_KEYS.items():
                named[key].update(r[column] for r in written[table])
            result.explanations += len(explanations)
            result.scores += len(scores)
            result.undefined_scores += undefined
    finally:
        for src in sources.values():
            src.close()
    _write_config(out / "config", rows.config_rows(named, creator_id))
    return result


def _write_feature(src: _Source, doc: dict, model_id: str, source: str, creator_id: str,
                   result: NeuronpediaExport) -> None:
    name = f"{model_id}/{source}/{doc['index']}"
    src.write("features", [rows.neuron_row(doc, model_id, source, creator_id)])
    activations = rows.activation_rows(doc, model_id, source, creator_id)
    src.write("activations", activations)
    result.features += 1
    result.activations += len(activations)
    if not activations:
        result.without_records.append(name)
    elif not rows.quantile_order_kept(doc["records"]):
        result.bins_out_of_order.append(name)


def _write_config(folder: Path, config: dict[str, list[dict[str, Any]]]) -> None:
    folder.mkdir()
    for name, config_rows in config.items():
        (folder / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in config_rows), encoding="utf-8")
