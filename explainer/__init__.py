"""Explainers: a feature's train-split records -> explanation text, through versioned prompt templates."""

from explainer.evidence import EvidenceError
from explainer.explain import FORMATS, POLARITIES, ExplanationResult, explain, resolve_format
from explainer.parsing import parse_explanation
from explainer.prompts import EVIDENCE_CHOICES, PROMPT_VERSIONS, prompt_version

__all__ = ["EVIDENCE_CHOICES", "FORMATS", "POLARITIES", "PROMPT_VERSIONS", "EvidenceError", "ExplanationResult",
           "explain", "parse_explanation", "prompt_version", "resolve_format"]
