"""Per-cell, per-channel intensity normalization (the Statistical Cell's first step)."""

from __future__ import annotations

from numbers import Integral

import numpy as np
from sklearn.base import _fit_context
from sklearn.utils._param_validation import StrOptions

from ._base import _ImageTransformer

__all__ = ["IntensityNormalizer"]

#: Histogram bins for the mode of floating-point images.
_N_BINS = 1024
#: Integer ranges up to this many values get an exact bincount; wider ones np.unique.
_MAX_BINCOUNT = 1 << 24


def _integer_mode(values: np.ndarray) -> float:
    """Most frequent value of an integer array (the smallest one on ties)."""
    lo, hi = int(values.min()), int(values.max())
    if hi - lo < _MAX_BINCOUNT:
        # Offsetting by the minimum keeps bincount's table as short as the range;
        # an unsigned offset cannot overflow, so uint8/uint16 need no widening copy.
        if values.dtype.kind == "u":
            shifted = values - values.dtype.type(lo)
            if shifted.dtype.itemsize >= 8:  # bincount refuses uint64
                shifted = shifted.astype(np.int64)
        else:
            shifted = values.astype(np.int64) - lo
        uniq, counts = None, np.bincount(shifted.ravel())
    else:
        uniq, counts = np.unique(values, return_counts=True)
    if lo < hi:
        # The background is never the brightest value: a pile of pixels there is
        # saturation (a noisy background spreads over many values, each rarer).
        counts[-1] = 0
    peak = int(np.argmax(counts))
    return float(lo + peak if uniq is None else uniq[peak])


def _float_mode(values: np.ndarray) -> float:
    """Background level of a floating-point array: the peak of a fine histogram.

    The most populated of ``_N_BINS`` equal bins between the minimum and the
    maximum is found, and the median of the values in that bin is returned, so
    that a constant background is recovered exactly rather than as a bin centre.
    """
    values = values.ravel()
    lo, hi = float(values.min()), float(values.max())
    if hi <= lo:
        return lo
    scale = _N_BINS / (hi - lo)
    # float32 arithmetic keeps the bins (and so the mode) of ordinary images as they
    # have always been, but overflows to inf where the range exceeds float32's (values
    # near +-3.4e38) or is so narrow that the scale does: bin in float64 there.
    limit = float(np.finfo(values.dtype).max)
    work = values if max(hi - lo, scale) <= limit else values.astype(np.float64)
    idx = ((work - lo) * scale).astype(np.intp)
    np.minimum(idx, _N_BINS - 1, out=idx)
    counts = np.bincount(idx, minlength=_N_BINS)
    counts[-1] = 0  # the brightest bin is saturation, not background (see _integer_mode)
    peak = np.argmax(counts)
    return float(np.median(values[idx == peak]))


class IntensityNormalizer(_ImageTransformer):
    """Rescale every channel of every cell to [0, 1] after removing its background.

    With ``method="mode"`` (the Statistical Cell, section 6.1.2), each channel
    of each cell has its most frequent intensity (the background) subtracted,
    negative values set to zero and is divided by its maximum. With
    ``method="percentile"``, the low and high percentiles of each channel are
    mapped to 0 and 1, for images without a dominant background level.

    Each cell is normalized on its own: nothing is learned in ``fit`` beyond the
    number of channels and the dimensionality, and ``transform`` accepts any
    number of cells of any spatial shape.

    Parameters
    ----------
    method : {"mode", "percentile"}, default="mode"
        ``"mode"``: subtract the most frequent value, zero the negatives, divide
        by the maximum. For integer images the mode is exact (a count of every
        value). For floating-point images it is the peak of a 1024-bin histogram
        between the channel's minimum and maximum (the median of the values in
        the most populated bin), so pass raw integer images where you have them.
        Either way, the channel's brightest value (or bin) is never taken for
        the background, so saturated pixels cannot blank a channel.
        ``"percentile"``: ``(x - p_low) / (p_high - p_low)``.
    percentiles : tuple of two floats, default=(1.0, 99.8)
        Low and high percentiles (in [0, 100]) used by ``method="percentile"``.
    clip : bool, default=True
        Clip the output to [0, 1]. For ``"mode"`` this is the paper's
        zeroing of pixels darker than the background; with ``clip=False`` they
        stay negative. For ``"percentile"`` it clips both ends.
    n_jobs : int or None, default=None
        Number of parallel workers over chunks of cells (threads). ``None``
        means 1 unless in a :func:`joblib.parallel_config` context; ``-1`` all
        cores.

    Attributes
    ----------
    n_channels_in_ : int
        Number of channels seen in ``fit``.
    spatial_ndim_ : int
        Number of spatial axes seen in ``fit`` (2 or 3).
    spatial_shape_in_ : tuple of int
        Spatial shape seen in ``fit``.

    See Also
    --------
    CellAligner : The next step of the paper's preprocessing.

    Notes
    -----
    A channel that holds a single value (all background) becomes all zeros,
    never NaN; so does a channel whose two percentiles coincide.

    With ``method="mode"`` and ``clip=False``, a channel is divided by its
    maximum minus its mode, so pixels darker than the background may fall below
    -1. A channel with nothing above its mode (which happens only when float32
    rounds an integer mode above 2**24 onto the maximum) is divided by its
    largest deviation below the mode instead, into [-1, 0].

    Floating-point images whose range exceeds float32's (values near
    ±3.4e38) are binned and rescaled in float64, so they normalize like any
    other; NaN and infinite values are rejected.

    ``set_output`` is accepted (so that ``Pipeline.set_output`` works), but the
    output is always a float32 ndarray: images have no tabular form.

    Examples
    --------
    >>> import numpy as np
    >>> from cellgen.preprocessing import IntensityNormalizer
    >>> X = np.full((1, 1, 4, 4), 100, dtype=np.uint16)
    >>> X[0, 0, 1:3, 1:3] = [[120, 140], [160, 180]]
    >>> Xn = IntensityNormalizer().fit_transform(X)
    >>> Xn[0, 0]
    array([[0.  , 0.  , 0.  , 0.  ],
           [0.  , 0.25, 0.5 , 0.  ],
           [0.  , 0.75, 1.  , 0.  ],
           [0.  , 0.  , 0.  , 0.  ]], dtype=float32)
    """

    _parameter_constraints = {
        "method": [StrOptions({"mode", "percentile"})],
        "percentiles": ["array-like"],
        "clip": ["boolean"],
        "n_jobs": [Integral, None],
    }

    def __init__(self, method="mode", percentiles=(1.0, 99.8), clip=True, n_jobs=None):
        self.method = method
        self.percentiles = percentiles
        self.clip = clip
        self.n_jobs = n_jobs

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Check the images and record their number of channels and dimensionality.

        Parameters
        ----------
        X : array-like of shape (n_cells, n_channels, [Z,] Y, X)
            Images, integer or floating point.
        y : None
            Ignored.

        Returns
        -------
        self : IntensityNormalizer
            The fitted transformer.
        """
        self._check_percentiles()
        self._validate_fit_input(X)
        return self

    def _check_percentiles(self):
        try:
            lo, hi = (float(p) for p in self.percentiles)
        except (TypeError, ValueError):
            lo = hi = np.nan  # fails the range check below
        if not 0.0 <= lo < hi <= 100.0:
            raise ValueError(
                "percentiles must be two numbers (low, high) with 0 <= low < high <= 100, "
                f"got {self.percentiles!r}."
            )
        return lo, hi

    def transform(self, X):
        """Normalize each channel of each cell to [0, 1].

        Parameters
        ----------
        X : array-like of shape (n_cells, n_channels, [Z,] Y, X)
            Images with the number of channels and dimensionality seen in ``fit``.
            Integer images get an exact mode; keep them integer.

        Returns
        -------
        X_out : ndarray of float32, same shape as X
            Normalized images, in [0, 1] when ``clip=True``.
        """
        Xf = self._validate_transform_input(X)
        # The mode of integer data is exact, so look at the dtype before float32.
        if isinstance(X, (np.ndarray, list, tuple)):
            raw = np.asarray(X)
        elif hasattr(X, "detach") and hasattr(X, "cpu"):  # a torch tensor, as numpy
            raw = X.detach().cpu().numpy()
        elif getattr(getattr(X, "dtype", None), "kind", "") in ("i", "u"):
            raw = np.asarray(X)  # h5py, zarr, xarray...: the same exact mode
        else:
            raw = None
        lo, hi = self._check_percentiles()
        if self.method == "percentile":
            return self._map_cells(lambda x: self._by_percentiles(x, lo, hi), [Xf], self.n_jobs)
        integer = raw is not None and raw.dtype.kind in "ui"
        return self._map_cells(
            lambda x, r: self._by_mode(x, r if integer else None), [Xf, raw if integer else Xf],
            self.n_jobs)

    def _by_mode(self, X, raw):
        """Subtract each channel's mode, zero the negatives, divide by the maximum."""
        modes = np.empty(X.shape[:2], dtype=np.float32)
        for i in range(X.shape[0]):
            for c in range(X.shape[1]):
                modes[i, c] = _integer_mode(raw[i, c]) if raw is not None else _float_mode(X[i, c])
        out = self._rescale(X, modes)
        if out is None:
            # A channel spanning more than float32 can hold (values near +-3.4e38)
            # overflowed in the subtraction; float64 cannot. The scaled values fit float32
            # again: the mode lies at least one bin (1/1024 of the range) below the maximum.
            out = self._rescale(X.astype(np.float64), modes.astype(np.float64))
            out = out.astype(np.float32)
        return out

    def _rescale(self, X, modes):
        """``X`` minus each channel's mode, over its peak; None if the subtraction overflowed."""
        bcast = (slice(None), slice(None)) + (None,) * (X.ndim - 2)
        with np.errstate(over="ignore"):  # detected below, and handled by the caller
            out = X - modes[bcast]
        if self.clip:
            np.maximum(out, 0.0, out=out)
        flat = out.reshape(X.shape[0], X.shape[1], -1)
        peak = flat.max(axis=-1)
        low = np.zeros_like(peak) if self.clip else flat.min(axis=-1)
        if not (np.isfinite(peak).all() and np.isfinite(low).all()):
            return None
        if not self.clip:
            # A channel with nothing above its mode (float32 can round an integer
            # mode above 2**24 onto the maximum) would be left unscaled, in raw
            # intensity units: scale it by its deepest value instead, into [-1, 0].
            peak = np.where(peak > 0, peak, -low)
        # An all-background channel has peak 0: leave it at zero instead of 0 / 0.
        scale = np.where(peak > 0, peak, 1.0)
        out /= scale.astype(out.dtype)[bcast]
        return out

    def _by_percentiles(self, X, lo, hi):
        """Map the low and high percentiles of each channel to 0 and 1."""
        flat = X.reshape(X.shape[0], X.shape[1], -1)
        p_lo, p_hi = np.percentile(flat, [lo, hi], axis=-1)
        scale = p_hi - p_lo
        bcast = (slice(None), slice(None)) + (None,) * (X.ndim - 2)
        out = (X - p_lo.astype(np.float32)[bcast]) / np.where(
            scale > 0, scale, np.inf).astype(np.float32)[bcast]
        if self.clip:
            np.clip(out, 0.0, 1.0, out=out)
        return out
