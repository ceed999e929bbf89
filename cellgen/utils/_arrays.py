"""Lazy channel selection, so that memory-mapped collections are never copied whole.

Selecting channels with fancy indexing (``X[:, [0, 1]]``) copies the whole array.
For a collection cached on disk (:func:`cellgen.io.cache_manifest`) that would pull
every cell into memory; a :class:`ChannelView` instead reads the rows a batch
needs and picks the channels then.
"""

from __future__ import annotations

import numpy as np

__all__ = ["ChannelView", "channel_view"]


class ChannelView:
    """Some channels of an image array, read row by row on demand.

    Parameters
    ----------
    base : ndarray of shape (n_cells, n_channels, [Z,] Y, X)
        The full array (often a read-only ``np.memmap``).
    channels : sequence of int
        Channels of ``base`` the view exposes, in order.

    Examples
    --------
    >>> import numpy as np
    >>> from cellgen.utils._arrays import ChannelView
    >>> X = np.arange(2 * 3 * 2 * 2, dtype="float32").reshape(2, 3, 2, 2)
    >>> v = ChannelView(X, [2, 0])
    >>> v.shape, bool((v[0:2] == X[:, [2, 0]]).all())
    ((2, 2, 2, 2), True)
    """

    def __init__(self, base, channels):
        self.base = base
        self.channels = [int(c) for c in channels]

    @property
    def shape(self):
        """Shape of the selection: ``(n_cells, len(channels), ...)``."""
        return (self.base.shape[0], len(self.channels), *self.base.shape[2:])

    @property
    def ndim(self):
        """Number of axes."""
        return self.base.ndim

    @property
    def dtype(self):
        """Data type of the underlying array."""
        return self.base.dtype

    def __len__(self):
        return self.base.shape[0]

    def __getitem__(self, rows):
        # Only row selections are supported; channels are fixed by the view.
        if isinstance(rows, (int, np.integer)):
            return np.ascontiguousarray(self.base[rows][self.channels])
        return np.ascontiguousarray(np.asarray(self.base[rows])[:, self.channels])

    def __array__(self, dtype=None, copy=None):
        out = self[:]
        return out if dtype is None else out.astype(dtype, copy=False)


def channel_view(X, channels):
    """Select ``channels`` of ``X`` without copying a large array.

    In-memory arrays are indexed directly (a small copy, and the fastest path);
    memory-mapped arrays and views are wrapped in a :class:`ChannelView`.

    Parameters
    ----------
    X : ndarray, np.memmap or ChannelView
        Images of shape ``(n_cells, n_channels, [Z,] Y, X)``.
    channels : sequence of int
        Channels to keep, in order.

    Returns
    -------
    view : ndarray or ChannelView
        The selection.

    Examples
    --------
    >>> import numpy as np
    >>> from cellgen.utils._arrays import channel_view
    >>> channel_view(np.zeros((2, 3, 4, 4)), [0, 1]).shape
    (2, 2, 4, 4)
    """
    channels = [int(c) for c in channels]
    if isinstance(X, ChannelView):
        return ChannelView(X.base, [X.channels[c] for c in channels])
    if isinstance(X, np.memmap):
        if channels == list(range(X.shape[1])):
            return X
        return ChannelView(X, channels)
    return np.ascontiguousarray(X[:, channels])
