"""Reads for people and for scorers: ranked queries, comparisons, feature pages, exports, stored simulations."""
