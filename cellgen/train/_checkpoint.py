"""Per-epoch checkpoints that survive a kill, and resuming from them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from skorch.callbacks import Callback
from skorch.history import History

from ..io._atomic import atomic_file
from ._modules import plain_module

__all__ = ["EpochCheckpoint", "resume_from_checkpoint", "checkpoint_signature"]

LAST = "last.pt"
BEST = "best.pt"


def _atomic_save(obj, path):
    """torch.save to a temporary file beside ``path``, then rename: never a torn file."""
    with atomic_file(path) as tmp:
        torch.save(obj, tmp)


def _weights(net):
    return {k: v.detach().to("cpu", copy=True) for k, v in plain_module(net).state_dict().items()}


class EpochCheckpoint(Callback):
    """Save the training state after every epoch, atomically, keeping only the last and the best.

    ``last.pt`` holds the weights, the optimizer state, the history, the torch
    random state and a signature of the run; ``best.pt`` the weights of the
    epoch with the best validation loss (of the last epoch without a
    validation split). Both are written to a temporary file and renamed, so a
    kill at any moment leaves the previous, loadable checkpoint. They hold
    tensors and plain values only and load with ``torch.load(weights_only=True)``.

    Parameters
    ----------
    directory : str or path-like
        Folder of the checkpoints (created).
    signature : dict
        Plain values describing the run (model, data size, seed); resuming
        checks them.

    Examples
    --------
    >>> from cellgen.train import EpochCheckpoint
    >>> EpochCheckpoint("checkpoints", signature={"seed": 0}).directory
    'checkpoints'
    """

    def __init__(self, directory, signature=None):
        self.directory = directory
        self.signature = signature

    def on_epoch_end(self, net, **kwargs):
        """Write ``best.pt`` when the epoch improved, then ``last.pt``."""
        if getattr(net, "world", None) is not None and net.world[0] != 0:
            return  # in a distributed fit, rank 0 writes for every process
        folder = Path(self.directory)
        folder.mkdir(parents=True, exist_ok=True)
        row = net.history[-1]
        weights = _weights(net)
        # Best first: a kill between the two writes then leaves a best.pt that
        # the resumed run reproduces exactly, never a stale one.
        if row.get("valid_loss_best", "valid_loss" not in row):
            _atomic_save({"module": weights, "epoch": int(row["epoch"])}, folder / BEST)
        state = {
            "module": weights,
            "optimizer": net.optimizer_.state_dict(),
            "history": json.dumps(net.history.to_list()),
            "rng": torch.get_rng_state(),
            "signature": json.dumps(self.signature, sort_keys=True),
        }
        scaler = getattr(net, "scaler_", None)
        if scaler is not None:
            # float16 training: without its loss scale, a resumed run would skip
            # steps again while the scale settles.
            state["scaler"] = scaler.state_dict()
        _atomic_save(state, folder / LAST)


def _load_last(last):
    try:
        return torch.load(last, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"{last} could not be loaded: {exc}") from exc


def checkpoint_signature(directory):
    """Return the run signature stored in a checkpoint folder, or ``None``.

    Parameters
    ----------
    directory : str or path-like
        Folder written by :class:`EpochCheckpoint`.

    Returns
    -------
    signature : dict or None
        The signature of the run that wrote ``last.pt``; ``None`` when there is
        no checkpoint.

    Raises
    ------
    ValueError
        If ``last.pt`` exists but cannot be loaded.

    Examples
    --------
    >>> from cellgen.train import checkpoint_signature
    >>> checkpoint_signature("no-such-folder") is None
    True
    """
    last = Path(directory) / LAST
    return json.loads(_load_last(last)["signature"]) if last.is_file() else None


def resume_from_checkpoint(net, directory, signature):
    """Load ``last.pt`` (and ``best.pt``) into an initialized net; return the epochs done.

    Parameters
    ----------
    net : VAENet
        An initialized net of the same model.
    directory : str or path-like
        Folder written by :class:`EpochCheckpoint`.
    signature : dict
        The run's signature; a checkpoint of another run raises ValueError.

    Returns
    -------
    n_epochs : int
        Epochs already trained (0 when there is no checkpoint).

    Examples
    --------
    >>> from cellgen.train import resume_from_checkpoint
    >>> resume_from_checkpoint(None, "no-such-folder", {})
    0
    """
    last = Path(directory) / LAST
    if not last.is_file():
        return 0
    state = _load_last(last)
    saved = json.loads(state["signature"])
    if saved != json.loads(json.dumps(signature, sort_keys=True)):
        differ = sorted(k for k in set(saved) | set(signature)
                        if saved.get(k) != json.loads(json.dumps(signature.get(k))))
        raise ValueError(
            f"{last} was written by a different run: {differ} differ ({saved}; this run "
            f"is {signature}). Use another checkpoint_dir, or delete that one to start "
            "afresh."
        )
    plain_module(net).load_state_dict(state["module"])
    net.optimizer_.load_state_dict(state["optimizer"])
    if "scaler" in state and getattr(net, "scaler_", None) is not None:
        net.scaler_.load_state_dict(state["scaler"])
    net.history = History(json.loads(state["history"]))
    for _, cb in net.callbacks_:
        # Scores decide which epoch is "best"; they must remember the epochs before.
        name = getattr(cb, "name", None)
        if hasattr(cb, "best_score_") and name in net.history[-1]:
            scores = np.asarray(net.history[:, name], dtype=float)
            cb.best_score_ = scores.min() if cb.lower_is_better else scores.max()
        if hasattr(cb, "best_state_"):
            best = Path(directory) / BEST
            if best.is_file():
                kept = torch.load(best, map_location="cpu", weights_only=True)
                cb.best_state_, cb.best_epoch_ = kept["module"], kept["epoch"]
    torch.set_rng_state(state["rng"])
    return len(net.history)
