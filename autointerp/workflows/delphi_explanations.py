"""A delphi run's explanations and classifier scores as imported features: each explanation belongs to latent
<index> of SAE <module> at the layer the module names (as the latent cache imports them), with the run's
provenance (explainer model and provider, the run folder), and its score files scored here under this project's
method names where delphi's definition matches (scorer.delphi_scores)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from activations.importers.common import ImportedExplanation, ImportedFeature, ImportedScore, ImportProvenance
from activations.importers.delphi_run import DelphiLatent, DelphiRun, DelphiScoreFile
from activations.records import FeatureId
from scorer.delphi_scores import delphi_scorer_config, delphi_scores, delphi_subset

DELPHI = "import:delphi"  # the explainer and simulator of everything imported from a delphi run
_PROVENANCE_KEYS = ("model", "explainer_model", "explainer_provider", "explainer", "name")


@dataclass
class DelphiItems:
    features: list[ImportedFeature]
    skipped: dict[str, list[str]] = field(default_factory=dict)  # why not imported as scores -> score files


def delphi_run_items(run: DelphiRun, model: str, cache_items: list[ImportedFeature]) -> DelphiItems:
    """`cache_items` (the run's latent cache, possibly empty) with the run's explanations attached; latents the
    cache does not hold become features without records."""
    by_feature = {item.feature: item for item in cache_items}
    out = DelphiItems(list(cache_items))
    for latent in run.latents:
        fid = FeatureId(model, latent.layer, "sae_latent", latent.index, sae=latent.module)
        item = by_feature.get(fid)
        if item is None:
            item = ImportedFeature(records=None, feature=fid, sae_info={
                "layer": latent.layer, "meta": {"source": "delphi", "hookpoint": latent.module}})
            by_feature[fid] = item
            out.features.append(item)
        item.explanations.append(_explanation(run, latent, out.skipped))
    for file in run.unread:
        out.skipped.setdefault("delphi's simulation scores (aggregates per quantile, not per-example judgements) "
                               "are not read", []).append(str(file))
    return out


def _explanation(run: DelphiRun, latent: DelphiLatent, skipped: dict[str, list[str]]) -> ImportedExplanation:
    params: dict[str, Any] = {"source": "delphi", "run": str(run.path),
                              **{k: run.config[k] for k in _PROVENANCE_KEYS if k in run.config}}
    # Identified by the run's whole configuration: another run of other settings is another explanation.
    provenance = ImportProvenance(DELPHI, {"import": "delphi", "run_config": run.config}, params, str(latent.path))
    scored: list[ImportedScore] = []
    for file in latent.scores:
        scored += _scores(run, file, skipped)
    return ImportedExplanation(latent.explanation, scored=scored, provenance=provenance)


def _scores(run: DelphiRun, file: DelphiScoreFile, skipped: dict[str, list[str]]) -> list[ImportedScore]:
    mapping = delphi_subset(file.scorer, run.config)
    if isinstance(mapping, str):
        skipped.setdefault(mapping, []).append(str(file.path))
        return []
    kind, subset = mapping
    config = delphi_scorer_config(file.scorer, run.config)
    details = {"delphi_file": str(file.path)}
    return [ImportedScore(s.method, s.subset, s.value, s.undefined_reason, DELPHI, config, s.n_records, s.ci_low,
                          s.ci_high, {**s.details, **details})
            for s in delphi_scores(kind, subset, file.examples)]
