"""Training glue: the skorch net, callbacks and batched inference."""

from ._callbacks import RestoreBestWeights
from ._checkpoint import EpochCheckpoint, resume_from_checkpoint
from ._data import RowDataset
from ._net import VAENet, batched, history_frame, make_vae_net, resolve_device

__all__ = [
    "VAENet",
    "RowDataset",
    "make_vae_net",
    "RestoreBestWeights",
    "EpochCheckpoint",
    "resume_from_checkpoint",
    "resolve_device",
    "batched",
    "history_frame",
]
