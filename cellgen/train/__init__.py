"""Training glue: the skorch net, callbacks and batched inference."""

from ._callbacks import RestoreBestWeights
from ._checkpoint import EpochCheckpoint, checkpoint_signature, resume_from_checkpoint
from ._data import RowDataset
from ._distributed import distributed_world, make_distributed_history
from ._modules import plain_module
from ._net import (
    VAENet,
    batched,
    history_frame,
    make_vae_net,
    resolve_device,
    resolve_precision,
)

__all__ = [
    "VAENet",
    "RowDataset",
    "make_vae_net",
    "RestoreBestWeights",
    "EpochCheckpoint",
    "resume_from_checkpoint",
    "checkpoint_signature",
    "resolve_device",
    "resolve_precision",
    "plain_module",
    "distributed_world",
    "make_distributed_history",
    "batched",
    "history_frame",
]
