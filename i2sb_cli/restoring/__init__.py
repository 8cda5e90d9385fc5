"""Restoring pictures: each run's models found, hashed, loaded and checked once (`prepare`), the
loop over pictures (`loop`), the bridge's start x1 (`start`), chains of models (`chain`), tiled
network calls (`tiling`), the split across processes (`split`), the views of a run (`spread`,
`trajectory`), the NFE sweep (`sweep`) and the speed benchmark (`bench`)."""
