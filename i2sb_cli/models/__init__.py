"""Models: our checkpoint format, the manifest of known models, the download cache, and
the import of official I2SB checkpoints."""
