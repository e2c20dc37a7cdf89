"""Everything SQL, in one subpackage per concern; the layers above import from these:

- `storage.core`: opening a database (`db`), the schema, codecs, single-entity reads and writes (`repository`)
- `storage.records`: the activation store (windows, records, collections, bulk and imported features)
- `storage.results`: what runs produce (explanations, simulations, scores, example scores) and run rows
- `storage.reads`: ranked queries, comparisons, feature pages and exports, the scorers' extra inputs
- `storage.search`: semantic search over explanations (embeddings, the ANN index)
- `storage.queue`: the lease table a distributed run takes its work from
"""
