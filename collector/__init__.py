"""Acquisition: one module per protocol, each a Source that yields ReadingBatches."""
