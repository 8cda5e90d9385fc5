"""Training a bridge network (Algorithm 1): `setup` turns a `TrainJob` into a network and
batches from `data` (photos degraded on the fly) or `pairs`; `step` is the loop, `state` its
resumable file, `validate` the held-out score, `distributed` DDP; `run.run(job)` drives them."""

from .setup import TrainJob
from .state import load_state, read_header, save_state, state_path_for
from .step import TrainLog, TrainSettings, TrainState, new_state, train

__all__ = [
    "TrainJob",
    "TrainLog",
    "TrainSettings",
    "TrainState",
    "load_state",
    "new_state",
    "read_header",
    "save_state",
    "state_path_for",
    "train",
]
