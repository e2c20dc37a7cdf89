"""OpenAI neuron-explainer formats: NeuronRecord JSON and explanation (NeuronSimulationResults) JSON/JSONL.

Their public data is GPT-2 XL; the files do not name the model, so the caller supplies it.
"""

from __future__ import annotations

from typing import Any, TypeGuard

from activations.importers.common import (
    Fields,
    ImportedExplanation,
    ImportedFeature,
    ImportedScoredSequence,
    with_balanced_splits,
)
from activations.records import (
    ActivationRecord,
    FeatureId,
    FeatureRecords,
    FeatureStats,
    RecordError,
    interleaved_data_split,
)
from activations.vocab import SampleKind

DEFAULT_OPENAI_MODEL = "gpt2-xl"
SCORE_KEYS = {"ev_correlation_score": "ev_correlation", "rsquared_score": "rsquared",
              "absolute_dev_explained_score": "absolute_dev_explained"}


def is_neuron_record(obj: object) -> TypeGuard[dict[str, Any]]:
    return isinstance(obj, dict) and (obj.get("dataclass_name") == "NeuronRecord"
                                      or "most_positive_activation_records" in obj)


def is_explanation_results(obj: object) -> TypeGuard[dict[str, Any]]:
    return isinstance(obj, dict) and "scored_explanations" in obj


def _feature_id(f: Fields, obj: dict, path: str, model: str) -> FeatureId:
    nid = f.get(obj, "neuron_id", path)
    return FeatureId(model=model, layer=f.int_(nid, "layer_index", f"{path}.neuron_id"), kind="mlp_neuron",
                     index=f.int_(nid, "neuron_index", f"{path}.neuron_id"))


def _records(f: Fields, raw: list, path: str, sample: str, fid: FeatureId) -> list[ActivationRecord]:
    out = []
    for i, rec in enumerate(raw):
        rpath = f"{path}[{i}]"
        tokens = f.strings(f.get(rec, "tokens", rpath), f"{rpath}.tokens")
        acts = f.numbers(f.get(rec, "activations", rpath), f"{rpath}.activations")
        try:
            out.append(ActivationRecord(tokens, acts, sample=sample, data_split=interleaved_data_split(i),
                                        label=rpath, feature=fid))
        except RecordError as exc:
            raise f.record_error(rpath, exc) from None
    return out


def parse_neuron_record(obj: dict, source: str, model: str = DEFAULT_OPENAI_MODEL) -> ImportedFeature:
    f = Fields(source)
    fid = _feature_id(f, obj, "", model)
    records = _records(f, f.list_(obj, "most_positive_activation_records", ""), "most_positive_activation_records",
                       SampleKind.TOP, fid)
    records += _records(f, f.list_(obj, "random_sample", "", required=False), "random_sample", SampleKind.RANDOM, fid)
    for q, bin_records in enumerate(f.list_(obj, "random_sample_by_quantile", "", required=False)):
        records += _records(f, bin_records, f"random_sample_by_quantile[{q}]", SampleKind.quantile(q), fid)
    if not records:
        raise f.fail("most_positive_activation_records", "no activation records in the file")
    records = with_balanced_splits(records, fid)
    boundaries = f.numbers(f.get(obj, "quantile_boundaries", "", required=False, default=[]), "quantile_boundaries")
    stats = FeatureStats(
        max_activation=max(r.max_activation for r in records),
        mean=f.number(f.get(obj, "mean", "", required=False), "mean", allow_none=True),
        variance=f.number(f.get(obj, "variance", "", required=False), "variance", allow_none=True),
        quantile_boundaries=tuple(boundaries),
    )
    extra = {k: obj[k] for k in ("skewness", "kurtosis") if obj.get(k) is not None}
    return ImportedFeature(records=FeatureRecords(fid, records, stats), feature=fid, extra=extra)


def parse_explanation_results(obj: dict, source: str, model: str = DEFAULT_OPENAI_MODEL) -> ImportedFeature:
    f = Fields(source)
    fid = _feature_id(f, obj, "", model)
    explanations = []
    for i, se in enumerate(f.list_(obj, "scored_explanations", "")):
        path = f"scored_explanations[{i}]"
        text = f.get(se, "explanation", path)
        if not isinstance(text, str) or not text.strip():
            raise f.fail(f"{path}.explanation", "expected a non-empty string")
        sim = f.get(se, "scored_simulation", path, required=False)
        scores: dict[str, float | None] = {}
        sequences = []
        if sim is not None:
            spath = f"{path}.scored_simulation"
            for key, method in SCORE_KEYS.items():
                if key in sim:
                    scores[method] = f.number(sim[key], f"{spath}.{key}", allow_none=True)
            for j, seq in enumerate(f.list_(sim, "scored_sequence_simulations", spath, required=False)):
                qpath = f"{spath}.scored_sequence_simulations[{j}]"
                simulation = f.get(seq, "simulation", qpath)
                tokens = f.strings(f.get(simulation, "tokens", f"{qpath}.simulation"), f"{qpath}.simulation.tokens")
                expected = f.numbers(f.get(simulation, "expected_activations", f"{qpath}.simulation"),
                                     f"{qpath}.simulation.expected_activations")
                true = f.numbers(f.get(seq, "true_activations", qpath), f"{qpath}.true_activations")
                if not (len(tokens) == len(expected) == len(true)):
                    raise f.fail(qpath, f"{len(tokens)} tokens, {len(expected)} expected and {len(true)} true "
                                        "activations")
                ev = f.number(seq.get("ev_correlation_score"), f"{qpath}.ev_correlation_score", allow_none=True)
                sequences.append(ImportedScoredSequence(tokens, true, expected, ev))
        explanations.append(ImportedExplanation(text=text.strip(), scores=scores, sequences=sequences))
    return ImportedFeature(records=None, feature=fid, explanations=explanations)

