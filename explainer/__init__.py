"""Explainers: a feature's train-split records -> explanation text, through versioned prompt templates."""

from explainer.explain import FORMATS, POLARITIES, ExplanationResult, explain, explain_many, resolve_format
from explainer.parsing import parse_explanation
from explainer.prompts import PROMPT_VERSIONS

__all__ = ["FORMATS", "POLARITIES", "PROMPT_VERSIONS", "ExplanationResult", "explain", "explain_many",
           "parse_explanation", "resolve_format"]
