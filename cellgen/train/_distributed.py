"""Data-parallel training across processes with PyTorch's DistributedDataParallel.

A script launched with ``torchrun`` (or ``accelerate launch``) runs once per
process; every process holds the same cells and calls ``fit``. cellgen then
joins the process group the launcher describes, wraps the network in
DistributedDataParallel (gradients are averaged over processes at every step),
gives each process its own share of every training epoch, evaluates the whole
validation split in every process, and keeps one history for all of them with
skorch's :class:`~skorch.history.DistributedHistory`, so that every process
picks the same best epoch and ends with the same weights.
"""

from __future__ import annotations

import itertools
import os

import torch
import torch.distributed as dist

__all__ = ["distributed_world", "make_distributed_history"]

_FITS = itertools.count()


def distributed_world() -> tuple[int, int] | None:
    """Rank and number of processes of a distributed run, or ``None`` when alone.

    Joins the default process group when a launcher set ``WORLD_SIZE`` above 1
    and the script has not joined one itself (NCCL with GPUs, Gloo on CPUs).

    Returns
    -------
    world : tuple of (int, int) or None
        ``(rank, world_size)``, or ``None`` for a single process.

    Examples
    --------
    >>> from cellgen.train import distributed_world
    >>> distributed_world() is None   # a plain Python process
    True
    """
    if not dist.is_available():
        return None
    if not dist.is_initialized():
        if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
            return None
        if torch.cuda.is_available():
            # One GPU per process, and a group that carries CPU tensors too (a fit
            # with device="cpu", the seed broadcast).
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
            dist.init_process_group("cpu:gloo,cuda:nccl")
        else:
            dist.init_process_group("gloo")
    if dist.get_world_size() <= 1:
        return None
    return dist.get_rank(), dist.get_world_size()


def make_distributed_history(rank: int, world_size: int):
    """A skorch history shared by every process of the default process group.

    Each ``fit`` gets a fresh key prefix in the group's key-value store; all
    processes call ``fit`` in the same order, so they agree on it.

    Parameters
    ----------
    rank : int
        This process's rank.
    world_size : int
        Number of processes.

    Returns
    -------
    history : skorch.history.DistributedHistory
        Batch records of all processes, merged.

    Examples
    --------
    >>> from cellgen.train import make_distributed_history  # needs a process group
    """
    from skorch.history import DistributedHistory
    from torch.distributed.distributed_c10d import _get_default_store

    store = dist.PrefixStore(f"cellgen-history-{next(_FITS)}", _get_default_store())
    return DistributedHistory(store=store, rank=rank, world_size=world_size)
