"""One exported feature document -> the rows of Neuronpedia's tables (their Prisma schema's column names): Neuron,
Activation, Explanation (with its explanation type) and ExplanationScore (with its score type), plus the config
rows those types name. tests/fixtures/neuronpedia-schema/upload-schema.json holds the columns, from their schema."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from activations.vocab import OutcomeStatus, SampleKind, ScoreRole

_QUANTILE = re.compile(rf"{SampleKind.QUANTILE}:(\d+)")
CREATOR_NAME = "autointerp"


def slug(name: str) -> str:
    """Neuronpedia ids: lower-case letters, digits, dashes and underscores ("google/gemma-3-270m" ->
    "google-gemma-3-270m")."""
    return re.sub(r"[^a-z0-9_-]+", "-", name.lower()).strip("-") or "x"


def source_id(doc: dict) -> str:
    """"<layer>-<set>": an SAE's name (kept whole when it already starts with the layer, as Neuronpedia's own
    sources imported here do), or "mlp-neurons" for MLP neurons."""
    layer = doc["layer"]
    if doc["kind"] != "sae_latent":
        return f"{layer}-mlp-neurons"
    name = slug(doc["sae"] or "sae")
    return name if name.startswith(f"{layer}-") else f"{layer}-{name}"


def _id(*parts: object) -> str:
    """A stable 25-character id (Neuronpedia's cuid length): the same feature exported twice gets the same ids,
    so a second import adds nothing (their import skips conflicting ids)."""
    return "ai" + hashlib.sha1(json.dumps(parts, default=str).encode()).hexdigest()[:23]


def neuron_row(doc: dict, model_id: str, source: str, creator_id: str) -> dict[str, Any]:
    row: dict[str, Any] = {"modelId": model_id, "layer": source, "index": str(doc["index"]), "creatorId": creator_id,
                           "sourceSetName": source.partition("-")[2],
                           "maxActApprox": doc["max_activation"] if doc["max_activation"] is not None else 0.0}
    if doc["firing_fraction"] is not None:  # unknown stays out of the row, never a made-up 0
        row["frac_nonzero"] = doc["firing_fraction"]
    logits = doc.get("logits") or {}
    for side, strs, values in (("promoted", "pos_str", "pos_values"), ("suppressed", "neg_str", "neg_values")):
        if logits.get(side):
            row[strs] = [token for token, _ in logits[side]]
            row[values] = [value for _, value in logits[side]]
    if doc.get("neighbours"):
        row["topkCosSimIndices"] = [n["index"] for n in doc["neighbours"]]
        row["topkCosSimValues"] = [n["similarity"] for n in doc["neighbours"]]
    return row


def bins(records: list[dict]) -> dict[str, tuple[float, float]]:
    """Each sample kind's (binMin, binMax), as Neuronpedia marks them: top examples -1, the random sample an
    interval starting at 0, a quantile bin the interval of its examples' peaks (ascending with the bin)."""
    peaks: dict[str, list[float]] = {}
    for r in records:
        peaks.setdefault(r["sample"], []).append(r["max_activation"])
    out = {}
    for sample, values in peaks.items():
        if sample == SampleKind.TOP:
            out[sample] = (-1.0, max(values))
        elif sample == SampleKind.RANDOM:
            out[sample] = (0.0, max(values))
        else:
            out[sample] = (min(values), max(values))
    return out


def quantile_order_kept(records: list[dict]) -> bool:
    """Whether the quantile bins' lower bounds rise with the bin and stay above the random one's 0, so an
    importer reading bins by ascending binMin (ours, Neuronpedia's viewer) gets each record's sample back."""
    by_bin = sorted((int(m.group(1)), low) for sample, (low, _) in bins(records).items()
                    if (m := _QUANTILE.fullmatch(sample)))
    lows = [low for _, low in by_bin]
    return all(low > 0 for low in lows) and all(a < b for a, b in zip(lows, lows[1:]))


def activation_rows(doc: dict, model_id: str, source: str, creator_id: str) -> list[dict[str, Any]]:
    sample_bins = bins(doc["records"])
    rows = []
    for r in doc["records"]:
        values = r["activations"]
        peak = max(range(len(values)), key=values.__getitem__)
        bin_min, bin_max = sample_bins[r["sample"]]
        row: dict[str, Any] = {
            "id": _id("activation", model_id, source, doc["index"], r["sample"], r["position"], r["tokens"], values),
            "modelId": model_id, "layer": source, "index": str(doc["index"]), "tokens": r["tokens"],
            "values": values, "maxValue": values[peak], "maxValueTokenIndex": peak, "minValue": min(values),
            "creatorId": creator_id, "binMin": bin_min, "binMax": bin_max, "qualifyingTokenIndex": peak,
        }
        if r["corpus"] is not None:
            row["dataSource"] = r["corpus"]
        if r["document"] is not None:
            row["dataIndex"] = f"{r['document']}@{r['offset']}" if r["offset"] is not None else r["document"]
        rows.append(row)
    return rows


def explanation_type(e: dict) -> str:
    return f"autointerp-{slug(e['prompt_version'] or 'imported')}"


def score_type(s: dict) -> str:
    role = "" if s["role"] == ScoreRole.OWN else f"-{s['role']}"
    return f"autointerp-{slug(s['method'])}-{slug(s['subset'])}{role}"


def explanation_rows(doc: dict, model_id: str, source: str, creator_id: str
                     ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], int]:
    """(Explanation rows, ExplanationScore rows, scores left out as undefined: Neuronpedia's value is required).
    Failed explanations have no text to show and stay out."""
    explanations, scores, undefined = [], [], 0
    for e in doc["explanations"]:
        if e["status"] != OutcomeStatus.OK or not e["text"]:
            continue
        eid = _id("explanation", model_id, source, doc["index"], e["id"], e["text"], e["explainer"])
        explanations.append({"id": eid, "modelId": model_id, "layer": source, "index": str(doc["index"]),
                             "description": e["text"], "authorId": creator_id, "typeName": explanation_type(e),
                             "explanationModelName": e["explainer"]})
        for s in e["scores"]:
            if s["value"] is None:
                undefined += 1
                continue
            details = {k: s[k] for k in ("method", "subset", "role", "simulator", "imported", "scoring_version",
                                         "ci_low", "ci_high", "n_records")}
            scores.append({"id": _id("score", eid, s["id"], s["method"], s["subset"], s["role"], s["simulator"]),
                           "value": s["value"], "explanationId": eid, "explanationScoreTypeName": score_type(s),
                           "explanationScoreModelName": s["simulator"], "initiatedByUserId": creator_id,
                           "jsonDetails": json.dumps(details)})
    return explanations, scores, undefined


# config/<file>.jsonl -> the table folder and column whose values name its rows.
CONFIG_KEYS = {"explanation_type": ("explanations", "typeName"),
               "explanation_model_type": ("explanations", "explanationModelName"),
               "explanation_score_type": ("explanation_scores", "explanationScoreTypeName"),
               "explanation_score_model": ("explanation_scores", "explanationScoreModelName")}


def config_rows(named: dict[str, set[str]], creator_id: str) -> dict[str, list[dict[str, Any]]]:
    """The type and model rows the explanations and scores name (Neuronpedia's config/*.jsonl)."""
    def row(key: str, name: str) -> dict[str, Any]:
        base = {"name": name, "displayName": name, "creatorName": CREATOR_NAME}
        short = name.removeprefix("autointerp-")
        return {
            "explanation_type": {**base, "creatorId": creator_id,
                                 "description": f"autointerp explainer, prompt version {short}"},
            "explanation_model_type": {**base, "description": f"explainer model {name}"},
            "explanation_score_type": {**base, "creatorId": creator_id,
                                       "description": f"autointerp score {short} (method-subset[-role])"},
            "explanation_score_model": {**base, "description": f"simulator or judge {name}"},
        }[key]

    return {key: [row(key, name) for name in sorted(names)] for key, names in named.items()}


def source_rows(model_id: str, source: str, creator_id: str) -> dict[str, dict[str, Any]]:
    """The sourceset.jsonl and source.jsonl rows of one source."""
    set_name = source.partition("-")[2]
    return {
        "sourceset": {"modelId": model_id, "name": set_name, "description": f"{set_name} (autointerp export)",
                      "creatorName": CREATOR_NAME, "creatorId": creator_id, "urls": []},
        "source": {"id": source, "modelId": model_id, "setName": set_name, "creatorId": creator_id,
                   "hasDashboards": True},
    }
