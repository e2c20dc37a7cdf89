"""Opening a database, the schema and its codecs, and single-entity reads and writes."""
