"""Lazy channel selection, so that image collections are never copied whole.

Selecting channels with fancy indexing (``X[:, [0, 1]]``) copies the whole array,
and for a collection cached on disk (:func:`cellgen.io.cache_manifest`) pulls
every cell into memory; a :class:`ChannelView` instead reads the rows a batch
needs and picks the channels then.
"""

from __future__ import annotations

import numpy as np

__all__ = ["RowView", "ChannelView", "channel_view"]


class RowView:
    """An image array computed from another, read by rows on demand.

    Subclasses define ``shape``, ``dtype`` and ``__getitem__`` for an int, a
    slice or an array of rows, returning a C-contiguous ndarray. Views are made
    inside cellgen from arrays that :func:`~cellgen.utils.check_images` has
    already validated, so it passes them through without reading them again
    (it does not scan a view for NaN: make views of validated arrays only).

    Examples
    --------
    >>> import numpy as np
    >>> from cellgen.utils import RowView
    >>> class Doubled(RowView):
    ...     def __init__(self, base):
    ...         self.base = base
    ...     shape = property(lambda self: self.base.shape)
    ...     dtype = property(lambda self: self.base.dtype)
    ...     def __getitem__(self, rows):
    ...         return np.ascontiguousarray(2 * self.base[rows])
    >>> view = Doubled(np.ones((3, 1, 2, 2), dtype=np.float32))
    >>> len(view), view.ndim, float(np.asarray(view).sum())
    (3, 4, 24.0)
    """

    @property
    def ndim(self):
        """Number of axes."""
        return len(self.shape)

    def __len__(self):
        return self.shape[0]

    def __array__(self, dtype=None, copy=None):
        out = self[:]
        return out if dtype is None else out.astype(dtype, copy=False)


class ChannelView(RowView):
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
    >>> from cellgen.utils import ChannelView
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
    def dtype(self):
        """Data type of the underlying array."""
        return self.base.dtype

    def __getitem__(self, rows):
        # Only row selections are supported; channels are fixed by the view.
        if isinstance(rows, (int, np.integer)):
            return np.ascontiguousarray(self.base[rows][self.channels])
        return np.ascontiguousarray(np.asarray(self.base[rows])[:, self.channels])


def channel_view(X, channels):
    """Select ``channels`` of ``X`` without copying it.

    A selection of every channel in order is ``X`` itself; any other is a
    :class:`ChannelView`, which copies only the rows a batch reads (fancy
    indexing would copy the whole array, and read a memory map whole).

    Parameters
    ----------
    X : ndarray, np.memmap or RowView
        Images of shape ``(n_cells, n_channels, [Z,] Y, X)``, already
        validated by :func:`~cellgen.utils.check_images`.
    channels : sequence of int
        Channels to keep, in order.

    Returns
    -------
    view : ndarray, RowView or ChannelView
        The selection.

    Examples
    --------
    >>> import numpy as np
    >>> from cellgen.utils import channel_view
    >>> channel_view(np.zeros((2, 3, 4, 4)), [0, 1]).shape
    (2, 2, 4, 4)
    """
    channels = [int(c) for c in channels]
    if channels == list(range(X.shape[1])):
        return X
    if isinstance(X, ChannelView):
        return ChannelView(X.base, [X.channels[c] for c in channels])
    if isinstance(X, (np.ndarray, RowView)):
        return ChannelView(X, channels)
    return np.ascontiguousarray(np.asarray(X)[:, channels])
