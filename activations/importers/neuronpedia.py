"""Neuronpedia dashboard JSON: `{model_id, layer, sae_set, features: [{feature_index, frac_nonzero,
activations: [{tokens, values, bin_min, bin_max, ...}], ...}]}`.

Activation groups map to our sample kinds: `bin_min == -1` marks the top-activating examples; the other bins are
activation-interval samples, the lowest of which (starting at 0, holding almost every token) is in effect
a random sample; the rest become quantile:<i>, in ascending order of their interval.
"""

from __future__ import annotations

from typing import Any, TypeGuard

from activations.importers.common import Fields, ImportedFeature, with_balanced_splits
from activations.records import (
    ActivationRecord,
    FeatureId,
    FeatureRecords,
    FeatureStats,
    RecordError,
    interleaved_data_split,
)
from activations.vocab import SampleKind

DASHBOARD_EXTRA_KEYS = ("pos_str", "pos_values", "neg_str", "neg_values", "n_prompts_total", "n_tokens_in_prompt",
                        "dataset")


def is_neuronpedia(obj: object) -> TypeGuard[dict[str, Any]]:
    return isinstance(obj, dict) and "features" in obj and ("model_id" in obj or "sae_set" in obj)


def sae_name(layer: int, sae_set: str) -> str:
    """Neuronpedia's source id for an SAE, e.g. layer 0 of res-jb -> "0-res-jb"."""
    return f"{layer}-{sae_set}"


def _sample_of_bins(f: Fields, activations: list, path: str) -> list[str]:
    mins = []
    for i, act in enumerate(activations):
        bin_min = f.number(f.get(act, "bin_min", f"{path}[{i}]", required=False, default=-1), f"{path}[{i}].bin_min")
        mins.append(bin_min)
    return samples_of_bins(mins)


def samples_of_bins(bin_mins: list[float]) -> list[str]:
    """Each example's sample kind from its bin's lower bound: -1 top, the bin starting at 0 random, the other
    bins quantile:<i> in ascending order (the dashboard JSON and the export's Activation rows alike)."""
    interval_bins = sorted({m for m in bin_mins if m != -1})
    names = {}
    for rank, m in enumerate(interval_bins):
        first_quantile = 1 if interval_bins[0] == 0 else 0
        names[m] = SampleKind.RANDOM if rank == 0 and m == 0 else SampleKind.quantile(rank - first_quantile)
    return [SampleKind.TOP if m == -1 else names[m] for m in bin_mins]


def parse_neuronpedia(obj: dict, source: str, model: str | None = None) -> list[ImportedFeature]:
    f = Fields(source)
    model = model or f.get(obj, "model_id", "")
    layer = f.int_(obj, "layer", "")
    sae_set = f.get(obj, "sae_set", "")
    if not isinstance(model, str) or not model:
        raise f.fail("model_id", "expected a model name")
    if not isinstance(sae_set, str) or not sae_set:
        raise f.fail("sae_set", "expected an SAE set name")
    out = []
    for i, feat in enumerate(f.list_(obj, "features", "")):
        path = f"features[{i}]"
        fid = FeatureId(model=model, layer=layer, kind="sae_latent", index=f.int_(feat, "feature_index", path),
                        sae=sae_name(layer, sae_set))
        acts = f.list_(feat, "activations", path)
        samples = _sample_of_bins(f, acts, f"{path}.activations")
        records: list[ActivationRecord] = []
        positions: dict[str, int] = {}
        for j, (act, sample) in enumerate(zip(acts, samples)):
            rpath = f"{path}.activations[{j}]"
            tokens = f.strings(f.get(act, "tokens", rpath), f"{rpath}.tokens")
            values = f.numbers(f.get(act, "values", rpath), f"{rpath}.values")
            position = positions.get(sample, 0)
            positions[sample] = position + 1
            try:
                records.append(ActivationRecord(tokens, values, sample=sample,
                                                data_split=interleaved_data_split(position), label=rpath, feature=fid))
            except RecordError as exc:
                raise f.record_error(rpath, exc) from None
        records = with_balanced_splits(records, fid)
        frac = f.number(f.get(feat, "frac_nonzero", path, required=False), f"{path}.frac_nonzero", allow_none=True)
        stats = FeatureStats(max_activation=max((r.max_activation for r in records), default=0.0), firing_fraction=frac)
        extra = {k: feat[k] for k in DASHBOARD_EXTRA_KEYS if k in feat}
        out.append(ImportedFeature(records=FeatureRecords(fid, records, stats), feature=fid, extra=extra,
                                   sae_info={"layer": layer, "meta": {"sae_set": sae_set, "source": "neuronpedia"}}))
    return out
