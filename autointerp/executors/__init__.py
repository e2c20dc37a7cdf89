"""Executors that spread a run over a Ray cluster: collect shards as Ray tasks, explain and rescore as
worker actors claiming features from the database's lease table. The only place Ray is imported."""
