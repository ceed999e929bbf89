"""Align cells by their major axis, centre them on the nucleus and flip them by skew.

Every parameter comes from intensity-weighted moments of the input image: the
second moments of the cell channel give the major axis, the first moments of the
nucleus channel the centre, the third moments of the cell channel (along the
output axes) the flips. Rotation, translation and flips are then composed into a
single affine map, so each channel is resampled once.
"""

from __future__ import annotations

from numbers import Integral

import numpy as np
import pandas as pd
from scipy import ndimage as ndi
from sklearn.base import _fit_context
from sklearn.utils._param_validation import Interval, Options

from ..utils import check_channel_index, check_images
from ._base import _ImageTransformer

__all__ = ["CellAligner", "alignment_parameters"]

#: Moments whose eigenvalues differ by less than this fraction count as round: angle 0.
_ISOTROPY_TOL = 1e-3
#: A standardized skew smaller than this in magnitude is treated as symmetric: no flip.
_SKEW_TOL = 1e-3
_AXIS_NAMES = ("z", "y", "x")


def _centred_coords(n_pix: int, mean: np.ndarray) -> np.ndarray:
    """Pixel coordinates minus a per-cell mean, shape (n_cells, n_pix)."""
    return np.arange(n_pix, dtype=np.float64)[None, :] - mean[:, None]


def _plane_moments(W: np.ndarray) -> dict:
    """Central moments up to order 3 of non-negative weights ``W`` (n, Y, X), in float64.

    Moments are normalized by the mass ``m00`` (a cell without mass gets zeros).
    Keys name the powers of (y, x): ``mu20`` is the variance along Y.
    """
    m00 = W.sum(axis=(1, 2))
    safe = np.where(m00 > 0, m00, 1.0)
    wy, wx = W.sum(axis=2), W.sum(axis=1)
    dy = _centred_coords(W.shape[1], wy @ np.arange(W.shape[1]) / safe)
    dx = _centred_coords(W.shape[2], wx @ np.arange(W.shape[2]) / safe)
    # Row sums of W * dx and W * dx**2 (batched mat-vec) give the mixed moments.
    w_dx = np.matmul(W, dx[:, :, None])[..., 0]
    w_dx2 = np.matmul(W, (dx * dx)[:, :, None])[..., 0]
    mom = {
        "m00": m00,
        "mu20": (wy * dy**2).sum(1), "mu02": (wx * dx**2).sum(1), "mu11": (w_dx * dy).sum(1),
        "mu30": (wy * dy**3).sum(1), "mu03": (wx * dx**3).sum(1),
        "mu21": (w_dx * dy**2).sum(1), "mu12": (w_dx2 * dy).sum(1),
    }
    return {k: (v if k == "m00" else v / safe) for k, v in mom.items()}


def _centroids(V: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Intensity-weighted centroid of each cell of ``V`` (n, *spatial) and whether it has mass."""
    V = np.maximum(V, 0.0, dtype=np.float64)
    spatial = tuple(range(1, V.ndim))
    mass = V.sum(axis=spatial)
    safe = np.where(mass > 0, mass, 1.0)
    cent = np.empty((V.shape[0], V.ndim - 1))
    for k, ax in enumerate(spatial):
        marginal = V.sum(axis=tuple(a for a in spatial if a != ax))
        cent[:, k] = marginal @ np.arange(V.shape[ax]) / safe
    return cent, mass > 0


def _directional(mom: dict, i: int, d: np.ndarray) -> tuple[float, float]:
    """Variance and third central moment of cell ``i`` along the unit vector ``d`` = (dy, dx)."""
    a, b = d
    var = a * a * mom["mu20"][i] + 2 * a * b * mom["mu11"][i] + b * b * mom["mu02"][i]
    third = (a**3 * mom["mu30"][i] + 3 * a * a * b * mom["mu21"][i]
             + 3 * a * b * b * mom["mu12"][i] + b**3 * mom["mu03"][i])
    return var, third


def _alignments(Xa, Xc, *, axis, rotate, center, flip):
    """Per-cell affine maps (output -> input) and the parameters that define them.

    ``Xa`` is the axis channel and ``Xc`` the centre channel, shape (n, *spatial).
    Returns ``(matrices, offsets, params)``: matrices (n, d, d), offsets (n, d) for
    :func:`scipy.ndimage.affine_transform`, and a dict of per-cell arrays.
    """
    n, spatial = Xa.shape[0], Xa.shape[1:]
    ndim = len(spatial)
    # Rotation is about Z only, so the Y-X moments of the Z-summed weights are exact.
    W = np.maximum(Xa, 0.0, dtype=np.float64)
    if ndim == 3:
        W = W.sum(axis=1)
    mom = _plane_moments(W)
    nucleus, has_nucleus = _centroids(Xc)
    centre = (np.asarray(spatial, dtype=np.float64) - 1.0) / 2.0

    mu20, mu02, mu11 = mom["mu20"], mom["mu02"], mom["mu11"]
    spread = np.hypot(mu02 - mu20, 2 * mu11)
    round_ = (mom["m00"] <= 0) | (spread <= _ISOTROPY_TOL * (mu20 + mu02))
    # Orientation of the major axis, from +X towards +Y, in (-pi/2, pi/2].
    theta = np.where(round_, 0.0, 0.5 * np.arctan2(2 * mu11, mu02 - mu20))

    matrices = np.zeros((n, ndim, ndim))
    offsets = np.zeros((n, ndim))
    flips = np.zeros((n, 2), dtype=bool)
    for i in range(n):
        s, c = np.sin(theta[i]), np.cos(theta[i])
        # Rows: where output Y and output X point, in input (y, x) components;
        # both are proper rotations that send the major axis onto ``axis``.
        if not rotate:
            A = np.eye(2)
        elif axis == -1:
            A = np.array([[c, -s], [s, c]])
        else:
            A = np.array([[s, c], [-c, s]])
        if flip and mom["m00"][i] > 0:
            for k in range(2):
                var, third = _directional(mom, i, A[k])
                if var > 0 and third < -_SKEW_TOL * var**1.5:
                    A[k] = -A[k]
                    flips[i, k] = True
        pivot = nucleus[i] if center and has_nucleus[i] else centre
        M = np.eye(ndim)
        M[-2:, -2:] = A.T  # A is orthogonal: its transpose maps output back to input.
        matrices[i] = M
        offsets[i] = pivot - M @ centre
    params = {
        "angle": np.degrees(theta) if rotate else np.zeros(n),
        "shift": np.where(has_nucleus[:, None], centre - nucleus, 0.0) if center
        else np.zeros((n, ndim)),
        "flips": flips,
    }
    return matrices, offsets, params


def alignment_parameters(X, *, axis_channel=0, center_channel=1, axis=-1) -> pd.DataFrame:
    """Measure how :class:`CellAligner` would rotate, shift and flip each cell.

    Parameters
    ----------
    X : array-like of shape (n_cells, n_channels, [Z,] Y, X)
        Images.
    axis_channel : int, default=0
        Channel whose intensity-weighted second moments give the major axis and
        whose third moments give the flips (the cell body or membrane; a mask
        works).
    center_channel : int, default=1
        Channel whose intensity-weighted centroid is moved to the array centre
        (the nucleus or DNA).
    axis : {-1, -2}, default=-1
        Spatial axis the major axis is sent to: -1 for X, -2 for Y.

    Returns
    -------
    params : pandas.DataFrame
        One row per cell. ``angle``: orientation of the major axis in the
        input, in degrees from the X axis towards the Y axis (array index
        order), in (-90, 90]; 0 for a round cell or an empty axis channel.
        ``shift_z`` (3D only), ``shift_y``, ``shift_x``: the displacement of the
        centre channel's centroid, from where it is to the array centre
        ``(size - 1) / 2``; 0 when the centre channel is empty. ``flip_y``,
        ``flip_x``: whether the aligned cell is mirrored along that axis so that
        the skew of the axis channel is non-negative.

    See Also
    --------
    CellAligner : Applies these parameters.

    Examples
    --------
    >>> import numpy as np
    >>> from cellgen.preprocessing import alignment_parameters
    >>> X = np.zeros((1, 2, 9, 9))
    >>> X[0, 0, 2:7, 4] = 1.0  # a vertical bar: the major axis is along Y
    >>> X[0, 1, 5, 4] = 1.0    # the nucleus sits one pixel below the centre
    >>> alignment_parameters(X).round(1).to_dict("records")
    [{'angle': 90.0, 'shift_y': -1.0, 'shift_x': 0.0, 'flip_y': False, 'flip_x': False}]
    """
    X = check_images(X)
    if axis not in (-1, -2):
        raise ValueError(f"axis must be -1 (X) or -2 (Y), got {axis!r}.")
    a = check_channel_index(axis_channel, X.shape[1], "axis_channel")
    c = check_channel_index(center_channel, X.shape[1], "center_channel")
    _, _, p = _alignments(X[:, a], X[:, c], axis=axis, rotate=True, center=True, flip=True)
    ndim = X.ndim - 2
    table = {"angle": p["angle"]}
    for k, name in enumerate(_AXIS_NAMES[-ndim:]):
        table[f"shift_{name}"] = p["shift"][:, k]
    table["flip_y"], table["flip_x"] = p["flips"][:, 0], p["flips"][:, 1]
    return pd.DataFrame(table)


class CellAligner(_ImageTransformer):
    """Rotate each cell onto its major axis, centre its nucleus and flip it by skew.

    The Statistical Cell (section 6.1.2) aligns cells "by the major axis of the
    cell shape, centered according to the center of mass of the segmented
    nuclear region, and flipped according to image skew". For each cell:

    1. the major axis of ``axis_channel`` in the Y-X plane (intensity-weighted
       second moments; in 3D over all voxels, so the rotation is about Z only)
       is rotated onto spatial axis ``axis``;
    2. the intensity-weighted centroid of ``center_channel`` is moved to the
       array centre, ``(size - 1) / 2`` along every spatial axis (Z included);
    3. the cell is mirrored along Y and/or X where the third central moment
       (skew) of ``axis_channel`` along that axis would be negative.

    All parameters are computed on the input image, composed into one affine
    map, and every channel is resampled once with
    :func:`scipy.ndimage.affine_transform` (zeros outside the input).

    Parameters
    ----------
    axis_channel : int, default=0
        Channel that defines the major axis and the skew (cell body or
        membrane; a mask works).
    center_channel : int, default=1
        Channel whose centroid is centred (nucleus or DNA).
    rotate : bool, default=True
        Rotate onto the major axis. If False, the cell keeps its orientation
        (flips then act along the original axes).
    center : bool, default=True
        Translate the centre channel's centroid to the array centre. If False
        the rotation pivots about the array centre.
    flip : bool, default=True
        Mirror by skew.
    axis : {-1, -2}, default=-1
        Spatial axis the major axis is sent to: -1 for X, -2 for Y.
    order : int, default=1
        Spline order of the resampling, 0 to 5; use 0 for masks. Orders above
        1 can overshoot at sharp edges, so values may leave the input's range
        by a few percent.
    n_jobs : int or None, default=None
        Number of parallel workers over chunks of cells (threads). ``None``
        means 1 unless in a :func:`joblib.parallel_config` context.

    Attributes
    ----------
    n_channels_in_ : int
        Number of channels seen in ``fit``.
    spatial_ndim_ : int
        Number of spatial axes seen in ``fit`` (2 or 3).
    spatial_shape_in_ : tuple of int
        Spatial shape seen in ``fit``; ``transform`` accepts any shape and
        returns the shape it is given.

    See Also
    --------
    alignment_parameters : The angle, shift and flips of each cell, as a table.
    IntensityNormalizer : Usually applied first.

    Notes
    -----
    Edge cases: a cell whose ``axis_channel`` is all zeros is neither rotated
    nor flipped; one whose ``center_channel`` is all zeros is not shifted (it
    pivots about the array centre). A round cell (second moments whose
    eigenvalues differ by less than 0.1 %) has angle 0; a skew within 0.1 % of
    the symmetric value does not flip. Negative intensities get zero weight.

    Parts of the cell moved beyond the array border are lost; pad first
    (:class:`PadCrop`) if cells sit near the edge.

    ``set_output`` is accepted (so that ``Pipeline.set_output`` works), but the
    output is always a float32 ndarray.

    Examples
    --------
    >>> import numpy as np
    >>> from cellgen.preprocessing import CellAligner
    >>> X = np.zeros((1, 2, 9, 9))
    >>> X[0, 0, 2:7, 4] = 1.0  # a vertical bar
    >>> X[0, 1, 4, 4] = 1.0    # nucleus at the centre
    >>> Xa = CellAligner(order=0).fit_transform(X)
    >>> np.argwhere(Xa[0, 0])[:, 0]  # the bar now lies along X, on the centre row
    array([4, 4, 4, 4, 4])
    """

    _parameter_constraints = {
        "axis_channel": [Integral],
        "center_channel": [Integral],
        "rotate": ["boolean"],
        "center": ["boolean"],
        "flip": ["boolean"],
        "axis": [Options(Integral, {-1, -2})],
        "order": [Interval(Integral, 0, 5, closed="both")],
        "n_jobs": [Integral, None],
    }

    def __init__(self, axis_channel=0, center_channel=1, rotate=True, center=True, flip=True,
                 axis=-1, order=1, n_jobs=None):
        self.axis_channel = axis_channel
        self.center_channel = center_channel
        self.rotate = rotate
        self.center = center
        self.flip = flip
        self.axis = axis
        self.order = order
        self.n_jobs = n_jobs

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Check the images and the channel indices; record the input geometry.

        Parameters
        ----------
        X : array-like of shape (n_cells, n_channels, [Z,] Y, X)
            Images.
        y : None
            Ignored.

        Returns
        -------
        self : CellAligner
            The fitted transformer.
        """
        X = self._validate_fit_input(X)
        self._channels()
        return self

    def _channels(self):
        return (check_channel_index(self.axis_channel, self.n_channels_in_, "axis_channel"),
                check_channel_index(self.center_channel, self.n_channels_in_, "center_channel"))

    def transform(self, X):
        """Align every cell.

        Parameters
        ----------
        X : array-like of shape (n_cells, n_channels, [Z,] Y, X)
            Images with the number of channels and dimensionality seen in ``fit``.

        Returns
        -------
        X_out : ndarray of float32, same shape as X
            Aligned images.
        """
        X = self._validate_transform_input(X)
        return self._map_cells(self._align, [X], self.n_jobs)

    def _align(self, X):
        a, c = self._channels()
        matrices, offsets, _ = _alignments(
            X[:, a], X[:, c], axis=self.axis, rotate=self.rotate, center=self.center,
            flip=self.flip)
        # np.empty, not empty_like, which would make an unbacked memmap of a memmap chunk.
        out = np.empty(X.shape, dtype=X.dtype)
        for i in range(X.shape[0]):
            for ch in range(X.shape[1]):
                ndi.affine_transform(X[i, ch], matrices[i], offsets[i], output=out[i, ch],
                                     order=self.order, mode="constant", cval=0.0)
        return out
