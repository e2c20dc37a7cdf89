"""The activation store: context windows stored once, records, whole collections, bulk and imported features."""
