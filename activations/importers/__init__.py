"""Readers (and writers) of public interpretability data formats: OpenAI neuron-explainer JSON and
Neuronpedia dashboard JSON. They produce the record model's types; storage persists them."""

from activations.importers.common import ImportedExplanation, ImportedFeature, ImportedScoredSequence, ImportFormatError
from activations.importers.detect import parse_file

__all__ = ["ImportFormatError", "ImportedExplanation", "ImportedFeature", "ImportedScoredSequence", "parse_file"]
