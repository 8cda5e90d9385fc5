"""Checkpoints: our file format, the registry of known models, and (later) the download cache."""
