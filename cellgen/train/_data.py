"""A torch Dataset over rows of (possibly memory-mapped) arrays."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from torch.utils.data import Dataset

__all__ = ["RowDataset"]


def as_tensor(a) -> torch.Tensor:
    """``torch.as_tensor`` of an array-like, copying read-only numpy data.

    torch warns on every read-only array (a memory map opened with mode "r", a
    broadcast view) because its tensor could write to it; nothing here writes, but
    a copy of one row or batch is cheap and keeps the warning away from users.
    """
    a = np.asarray(a) if not isinstance(a, torch.Tensor) else a
    if isinstance(a, np.ndarray) and not a.flags.writeable:
        a = a.copy()
    return torch.as_tensor(a)


class RowDataset(Dataset):
    """Rows ``indices`` of an array, or of a dictionary of aligned arrays, read on demand.

    Each item is read when the DataLoader asks for it, so training on a
    memory-mapped collection never loads it whole, and the train/validation
    split costs no copy.

    Parameters
    ----------
    data : array-like or dict of array-like
        Anything indexable by row (ndarray, ``np.memmap``, a channel view);
        dictionaries yield dictionaries of tensors.
    indices : array-like of int or None, default=None
        Rows to expose, in order; ``None`` means all rows.
    flip_axes : tuple of int, default=()
        Augmentation: each item is flipped along each of these axes of its
        images (negative, counted from the end: ``-1`` is X, ``-2`` is Y) with
        probability one half, every image of an item the same way. The draws
        come from torch's random generator, so a seeded fit is reproducible.

    Examples
    --------
    >>> import numpy as np
    >>> from cellgen.train import RowDataset
    >>> ds = RowDataset({"x": np.zeros((4, 1, 2, 2), "float32"), "c": np.arange(4)}, [1, 3])
    >>> len(ds), int(ds[1][0]["c"])
    (2, 3)
    """

    def __init__(self, data, indices=None, flip_axes=()):
        self.data = data
        self.flip_axes = tuple(flip_axes)
        first = next(iter(data.values())) if isinstance(data, Mapping) else data
        n = len(first)
        self.indices = np.arange(n) if indices is None else np.asarray(indices, dtype=np.int64)

    def __len__(self):
        return len(self.indices)

    def _row(self, array, i):
        return as_tensor(array[i])

    def __getitem__(self, i):
        j = int(self.indices[i])
        if isinstance(self.data, Mapping):
            x = {k: self._row(v, j) for k, v in self.data.items()}
        else:
            x = self._row(self.data, j)
        if self.flip_axes:
            dims = [a for a in self.flip_axes if bool(torch.rand(()) < 0.5)]
            if dims:
                # Images are (C, [Z,] Y, X); labels and other scalars are left alone.
                def flip(t):
                    return t.flip(dims) if t.dim() >= 3 else t
                x = {k: flip(v) for k, v in x.items()} if isinstance(x, dict) else flip(x)
        # skorch expects (X, y) pairs; these models are unsupervised.
        return x, 0
