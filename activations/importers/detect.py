"""Read a file, recognise its format, and parse it completely before anything is written."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from activations.importers.common import ImportedFeature, ImportFormatError
from activations.importers.delphi_cache import hookpoint_dirs
from activations.importers.neuronpedia import is_neuronpedia, parse_neuronpedia
from activations.importers.neuronpedia_rows import is_activation_row, parse_activation_rows
from activations.importers.openai_format import (
    DEFAULT_OPENAI_MODEL,
    is_explanation_results,
    is_neuron_record,
    parse_explanation_results,
    parse_neuron_record,
)

FORMATS_HELP = ("OpenAI NeuronRecord JSON, OpenAI explanation JSON/JSONL, Neuronpedia dashboard JSON, or Neuronpedia "
                "Activation rows (activations/batch-<n>.jsonl.gz)")


def is_delphi_cache(path: Path) -> bool:
    """A delphi latent cache: a folder whose subfolders (or itself) hold .safetensors shards.
    It imports as a whole (activations.importers.delphi_records), not file by file."""
    return path.is_dir() and bool(hookpoint_dirs(path))


def _load_documents(path: Path) -> list[tuple[str, object]]:
    # Neuronpedia's exports are gzipped JSON Lines.
    text = gzip.decompress(path.read_bytes()).decode("utf-8") if path.suffix == ".gz" else path.read_text("utf-8")
    if path.suffix == ".jsonl" or path.name.endswith(".jsonl.gz"):
        docs = []
        for n, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    docs.append((f"{path}:{n}", json.loads(line)))
                except json.JSONDecodeError as exc:
                    raise ImportFormatError(f"{path}: line {n} is not valid JSON ({exc.msg})") from None
        return docs
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ImportFormatError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if isinstance(obj, list):
        return [(f"{path}[{i}]", item) for i, item in enumerate(obj)]
    return [(str(path), obj)]


def parse_file(path: str | Path, *, model: str | None = None) -> list[ImportedFeature]:
    """Every feature in the file, fully validated. `model` names the subject model of OpenAI files (which
    do not say; default gpt2-xl) and overrides a Neuronpedia file's model_id when given."""
    path = Path(path)
    out: list[ImportedFeature] = []
    rows: list[tuple[str, dict]] = []  # Activation rows make features only together
    for source, obj in _load_documents(path):
        if is_activation_row(obj):
            rows.append((source, obj))
        elif is_neuronpedia(obj):
            out.extend(parse_neuronpedia(obj, source, model))
        elif is_neuron_record(obj):
            out.append(parse_neuron_record(obj, source, model or DEFAULT_OPENAI_MODEL))
        elif is_explanation_results(obj):
            out.append(parse_explanation_results(obj, source, model or DEFAULT_OPENAI_MODEL))
        else:
            keys = ", ".join(list(obj)[:8]) if isinstance(obj, dict) else type(obj).__name__
            raise ImportFormatError(f"{source}: unrecognised format (top-level keys: {keys}); expected {FORMATS_HELP}")
    return out + parse_activation_rows(rows, model)
