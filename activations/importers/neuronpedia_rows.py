"""Neuronpedia's export files of Activation rows (`<model>/<source>/activations/batch-<n>.jsonl.gz`, one row
per example: `{modelId, layer: "<layer>-<set>", index: "<i>", tokens, values, binMin, ...}`), as their dataset
exports and `autointerp export --format neuronpedia` write them.

Rows are grouped into features by (modelId, layer, index); bins map to sample kinds as the dashboard JSON's do
(neuronpedia.samples_of_bins). The file names no data split, so splits are drawn as for any import."""

from __future__ import annotations

from typing import Any, TypeGuard

from activations.importers.common import Fields, ImportedFeature, ImportFormatError, with_balanced_splits
from activations.importers.neuronpedia import samples_of_bins
from activations.records import (
    ActivationRecord,
    FeatureId,
    FeatureRecords,
    FeatureStats,
    RecordError,
    interleaved_data_split,
)

ROW_KEYS = ("modelId", "layer", "index", "tokens", "values")


def is_activation_row(obj: object) -> TypeGuard[dict[str, Any]]:
    return isinstance(obj, dict) and all(key in obj for key in ROW_KEYS)


def split_source_id(source_id: str, where: str) -> tuple[int, str]:
    """"6-res-jb" -> (6, "res-jb"): Neuronpedia's source ids start with the layer."""
    layer, _, set_name = source_id.partition("-")
    if not layer.isdigit() or not set_name:
        raise ImportFormatError(f"{where}: field 'layer': expected a source id '<layer>-<set>' such as '6-res-jb', "
                                f"got {source_id!r}")
    return int(layer), set_name


def parse_activation_rows(rows: list[tuple[str, dict]], model: str | None = None) -> list[ImportedFeature]:
    """Every feature the rows hold (`rows`: (where, row) pairs, `where` naming the file and line)."""
    groups: dict[tuple[str, str, str], list[tuple[str, dict]]] = {}
    for where, row in rows:
        f = Fields(where)
        key = (_text(f, row, "modelId"), _text(f, row, "layer"), _text(f, row, "index"))
        groups.setdefault(key, []).append((where, row))
    return [_feature(model or model_id, source_id, index, members)
            for (model_id, source_id, index), members in groups.items()]


def _text(f: Fields, row: dict, key: str) -> str:
    value = f.get(row, key, "")
    if isinstance(value, bool) or not isinstance(value, (str, int)) or str(value) == "":
        raise f.fail(key, f"expected a non-empty string, got {value!r}")
    return str(value)


def _feature(model: str, source_id: str, index: str, members: list[tuple[str, dict]]) -> ImportedFeature:
    where = members[0][0]
    layer, set_name = split_source_id(source_id, where)
    if not index.isdigit():
        raise ImportFormatError(f"{where}: field 'index': expected a feature index, got {index!r}")
    fid = FeatureId(model=model, layer=layer, kind="sae_latent", index=int(index), sae=source_id)
    bin_mins = [Fields(w).number(r.get("binMin", -1), "binMin") if r.get("binMin") is not None else -1.0
                for w, r in members]
    records: list[ActivationRecord] = []
    positions: dict[str, int] = {}
    for (w, row), sample in zip(members, samples_of_bins(bin_mins)):
        f = Fields(w)
        position = positions.get(sample, 0)
        positions[sample] = position + 1
        try:
            records.append(ActivationRecord(f.strings(row["tokens"], "tokens"), f.numbers(row["values"], "values"),
                                            sample=sample, data_split=interleaved_data_split(position), label=w,
                                            feature=fid))
        except RecordError as exc:
            raise f.record_error("values", exc) from None
    records = with_balanced_splits(records, fid)
    stats = FeatureStats(max_activation=max(r.max_activation for r in records))
    return ImportedFeature(records=FeatureRecords(fid, records, stats), feature=fid,
                           sae_info={"layer": layer, "meta": {"sae_set": set_name, "source": "neuronpedia"}})
