"""Semantic search over explanations: embeddings stored per explanation and the approximate-nearest-neighbour index."""
