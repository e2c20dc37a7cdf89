"""Batch workflows: what explain, rescore and collect do, feature by feature, and the finishing passes after."""
