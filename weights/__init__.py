"""Bundled checkpoints, their manifest and model cards (shipped as package data)."""
