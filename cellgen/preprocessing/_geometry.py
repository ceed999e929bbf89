"""Change the grid of the images: voxel size, array shape, projection to 2D."""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
from scipy import ndimage as ndi
from sklearn.base import _fit_context
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from ..utils import check_images
from ._base import _ImageTransformer

__all__ = ["VoxelResampler", "PadCrop", "MaxProjector"]


def _per_axis(value, ndim: int, name: str, *, allow_none=False):
    """A positive finite number per spatial axis, from a scalar or a sequence."""
    if value is None and allow_none:
        return None
    if isinstance(value, Real) and not isinstance(value, bool):
        value = (value,) * ndim
    try:
        out = tuple(float(v) for v in value)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be a number or a sequence of numbers, got {value!r}.") \
            from exc
    if len(out) != ndim:
        raise ValueError(
            f"{name} has {len(out)} values but the images have {ndim} spatial axes; give one "
            f"value per axis ({'Z, Y, X' if ndim == 3 else 'Y, X'}) or a single number."
        )
    if not all(np.isfinite(v) and v > 0 for v in out):
        raise ValueError(f"{name} must be positive and finite, got {value!r}.")
    return out


def _pad_crop(X: np.ndarray, shape: tuple[int, ...], fill_value: float) -> np.ndarray:
    """Centre-pad or centre-crop the spatial axes of ``X`` to ``shape`` by indexing only.

    Along each axis the smaller extent sits at offset ``(larger - smaller) // 2``
    inside the larger one, for padding and cropping alike, so a crop undoes a pad.
    """
    out = np.full(X.shape[:2] + tuple(shape), fill_value, dtype=np.float32)
    src, dst = [slice(None)] * 2, [slice(None)] * 2
    for size_in, size_out in zip(X.shape[2:], shape):
        start = abs(size_out - size_in) // 2
        inner = slice(start, start + min(size_in, size_out))
        src.append(inner if size_in > size_out else slice(None))
        dst.append(inner if size_out > size_in else slice(None))
    out[tuple(dst)] = X[tuple(src)]
    return out


class VoxelResampler(_ImageTransformer):
    """Resample images from a physical voxel size to another, by default cubic voxels.

    The Statistical Cell rescales its 3D images to cubic voxels before padding
    them. The output has ``round(shape * voxel_size / target_voxel_size)`` voxels
    along each axis, and every output voxel is exactly ``target_voxel_size``
    wide: the scale factor is the physical ratio, not the ratio of the rounded
    shapes, so objects keep their physical size.

    Parameters
    ----------
    voxel_size : float or tuple of float
        Physical size of an input voxel along each spatial axis, in any unit
        (for example ``(0.29, 0.108, 0.108)`` micrometres for Z, Y, X). A single
        number means isotropic.
    target_voxel_size : float, tuple of float or None, default=None
        Physical size of an output voxel, same unit. ``None``: the smallest
        input voxel size along every axis (cubic voxels without losing
        resolution).
    order : int, default=1
        Spline order of the interpolation, 0 to 5; use 0 for masks.
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
        Spatial shape seen in ``fit``.
    voxel_size_ : tuple of float
        Input voxel size per spatial axis.
    target_voxel_size_ : tuple of float
        Output voxel size per spatial axis.
    spatial_shape_out_ : tuple of int
        Output spatial shape for inputs of shape ``spatial_shape_in_``.

    Notes
    -----
    The grids are aligned on the centre of the field of view (the convention of
    :func:`scipy.ndimage.zoom` with ``grid_mode=True``): the centre of the
    output maps to the centre of the input, and the outer edges of the first
    and last voxels coincide up to the rounding of the shape. Output samples
    that fall within that rounding margin outside the input take the value of
    the nearest input voxel. Downsampling does not low-pass filter first;
    smooth the images beforehand if aliasing matters.

    ``set_output`` is accepted, but the output is always a float32 ndarray.

    Examples
    --------
    >>> import numpy as np
    >>> from cellgen.preprocessing import VoxelResampler
    >>> X = np.zeros((1, 2, 10, 32, 32), dtype=np.float32)
    >>> VoxelResampler(voxel_size=(0.3, 0.1, 0.1)).fit_transform(X).shape
    (1, 2, 30, 32, 32)
    """

    _parameter_constraints = {
        "voxel_size": [Interval(Real, 0, None, closed="neither"), "array-like"],
        "target_voxel_size": [Interval(Real, 0, None, closed="neither"), "array-like", None],
        "order": [Interval(Integral, 0, 5, closed="both")],
        "n_jobs": [Integral, None],
    }

    def __init__(self, voxel_size, target_voxel_size=None, order=1, n_jobs=None):
        self.voxel_size = voxel_size
        self.target_voxel_size = target_voxel_size
        self.order = order
        self.n_jobs = n_jobs

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Check the images and resolve the input and output voxel sizes.

        Parameters
        ----------
        X : array-like of shape (n_cells, n_channels, [Z,] Y, X)
            Images.
        y : None
            Ignored.

        Returns
        -------
        self : VoxelResampler
            The fitted transformer.
        """
        X = self._validate_fit_input(X)
        ndim = self.spatial_ndim_
        self.voxel_size_ = _per_axis(self.voxel_size, ndim, "voxel_size")
        target = _per_axis(self.target_voxel_size, ndim, "target_voxel_size", allow_none=True)
        self.target_voxel_size_ = target or (min(self.voxel_size_),) * ndim
        self.spatial_shape_out_ = self._out_shape(self.spatial_shape_in_)
        return self

    def _out_shape(self, shape):
        return tuple(max(1, int(round(s * v / t)))
                     for s, v, t in zip(shape, self.voxel_size_, self.target_voxel_size_))

    def transform(self, X):
        """Resample every channel of every cell to the target voxel size.

        Parameters
        ----------
        X : array-like of shape (n_cells, n_channels, [Z,] Y, X)
            Images with the number of channels and dimensionality seen in ``fit``.

        Returns
        -------
        X_out : ndarray of float32 of shape (n_cells, n_channels, *spatial_out)
            Resampled images, ``spatial_out = round(shape * voxel / target)``.
        """
        X = self._validate_transform_input(X)
        shape_in = np.asarray(X.shape[2:], dtype=np.float64)
        shape_out = self._out_shape(X.shape[2:])
        step = np.asarray(self.target_voxel_size_) / np.asarray(self.voxel_size_)
        # Input coordinate of output voxel o: centre_in + (o - centre_out) * step.
        offset = (shape_in - 1) / 2 - (np.asarray(shape_out) - 1) / 2 * step

        def resample(chunk):
            out = np.empty(chunk.shape[:2] + shape_out, dtype=np.float32)
            for i in range(chunk.shape[0]):
                for ch in range(chunk.shape[1]):
                    # A 1D matrix is the diagonal: scipy's faster zoom-and-shift path.
                    ndi.affine_transform(chunk[i, ch], step, offset, output_shape=shape_out,
                                         output=out[i, ch], order=self.order, mode="nearest")
            return out

        return self._map_cells(resample, [X], self.n_jobs)


class PadCrop(_ImageTransformer):
    """Centre-pad or centre-crop every spatial axis to a fixed shape.

    The Statistical Cell pads its aligned 3D cells to 128 x 96 x 64. Padding
    and cropping only copy pixels (no resampling), so content is preserved
    exactly; ``inverse_transform`` restores the shape seen in ``fit``, and
    returns the input exactly when ``transform`` only padded.

    Parameters
    ----------
    shape : tuple of int
        Output spatial shape, one size per spatial axis (``(Z, Y, X)`` for 3D
        images, ``(Y, X)`` for 2D).
    fill_value : float, default=0.0
        Value of the padded pixels.

    Attributes
    ----------
    n_channels_in_ : int
        Number of channels seen in ``fit``.
    spatial_ndim_ : int
        Number of spatial axes seen in ``fit`` (2 or 3).
    spatial_shape_in_ : tuple of int
        Spatial shape seen in ``fit``, restored by ``inverse_transform``.

    Notes
    -----
    Along an axis where the sizes differ by an odd number, the extra pixel of
    padding goes after the content (and a crop drops the extra pixel at the
    end): the content starts at ``(larger - smaller) // 2``.

    ``set_output`` is accepted, but the output is always a float32 ndarray.

    Examples
    --------
    >>> import numpy as np
    >>> from cellgen.preprocessing import PadCrop
    >>> X = np.ones((1, 1, 2, 3))
    >>> pc = PadCrop((4, 4)).fit(X)
    >>> pc.transform(X)[0, 0]
    array([[0., 0., 0., 0.],
           [1., 1., 1., 0.],
           [1., 1., 1., 0.],
           [0., 0., 0., 0.]], dtype=float32)
    >>> pc.inverse_transform(pc.transform(X)).shape
    (1, 1, 2, 3)
    """

    _parameter_constraints = {
        "shape": ["array-like"],
        "fill_value": [Real],
    }

    def __init__(self, shape, fill_value=0.0):
        self.shape = shape
        self.fill_value = fill_value

    def _target(self, ndim):
        shape = self.shape
        if isinstance(shape, (str, bytes)) or not hasattr(shape, "__len__") or any(
                isinstance(s, bool) or not isinstance(s, Integral) for s in shape):
            raise TypeError(f"shape must be a tuple of positive integers, got {shape!r}.")
        if any(s < 1 for s in shape):
            raise ValueError(f"shape must be a tuple of positive integers, got {shape!r}.")
        if len(shape) != ndim:
            raise ValueError(
                f"shape {tuple(shape)} has {len(shape)} axes but the images have {ndim} spatial "
                f"axes; give one size per axis ({'Z, Y, X' if ndim == 3 else 'Y, X'})."
            )
        return tuple(int(s) for s in shape)

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Check the images and ``shape``; record the input shape for ``inverse_transform``.

        Parameters
        ----------
        X : array-like of shape (n_cells, n_channels, [Z,] Y, X)
            Images.
        y : None
            Ignored.

        Returns
        -------
        self : PadCrop
            The fitted transformer.
        """
        X = self._validate_fit_input(X)
        self._target(self.spatial_ndim_)
        return self

    def transform(self, X):
        """Pad or crop every cell to ``shape`` about the centre.

        Parameters
        ----------
        X : array-like of shape (n_cells, n_channels, [Z,] Y, X)
            Images with the number of channels and dimensionality seen in ``fit``
            (any spatial size).

        Returns
        -------
        X_out : ndarray of float32 of shape (n_cells, n_channels, *shape)
            Padded or cropped images.
        """
        X = self._validate_transform_input(X)
        return _pad_crop(X, self._target(self.spatial_ndim_), self.fill_value)

    def inverse_transform(self, X):
        """Crop or pad back to the spatial shape seen in ``fit``.

        Parameters
        ----------
        X : array-like of shape (n_cells, n_channels, *shape)
            Output of ``transform``.

        Returns
        -------
        X_out : ndarray of float32 of shape (n_cells, n_channels, *spatial_shape_in_)
            Images of the original shape; exactly the input of ``transform``
            where it only padded.
        """
        check_is_fitted(self, "n_channels_in_")
        X = check_images(X, n_channels=self.n_channels_in_, spatial_ndim=self.spatial_ndim_,
                         spatial_shape=self._target(self.spatial_ndim_),
                         fitted_what="the output shape of transform")
        return _pad_crop(X, self.spatial_shape_in_, self.fill_value)


class MaxProjector(_ImageTransformer):
    """Project 3D images to 2D along one spatial axis (maximum or mean).

    Parameters
    ----------
    axis : int, default=0
        Spatial axis to project along: 0 for Z, 1 for Y, 2 for X (negative
        values count from the end).
    method : {"max", "mean"}, default="max"
        Maximum-intensity or mean-intensity projection.

    Attributes
    ----------
    n_channels_in_ : int
        Number of channels seen in ``fit``.
    spatial_ndim_ : int
        Number of spatial axes seen in ``fit`` (always 3).
    spatial_shape_in_ : tuple of int
        Spatial shape seen in ``fit``.

    Notes
    -----
    ``set_output`` is accepted, but the output is always a float32 ndarray.

    Examples
    --------
    >>> import numpy as np
    >>> from cellgen.preprocessing import MaxProjector
    >>> X = np.arange(24, dtype=np.float32).reshape(1, 1, 2, 3, 4)
    >>> MaxProjector().fit_transform(X)[0, 0]
    array([[12., 13., 14., 15.],
           [16., 17., 18., 19.],
           [20., 21., 22., 23.]], dtype=float32)
    """

    _parameter_constraints = {
        "axis": [Interval(Integral, -3, 2, closed="both")],
        "method": [StrOptions({"max", "mean"})],
    }

    def __init__(self, axis=0, method="max"):
        self.axis = axis
        self.method = method

    def _check_3d(self, X):
        if np.ndim(X) == 4:
            raise ValueError(
                f"MaxProjector projects 3D images (n_cells, n_channels, Z, Y, X) to 2D, but X "
                f"is already 2D (shape {np.shape(X)}); leave the projection out for 2D images."
            )

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Check that the images are 3D.

        Parameters
        ----------
        X : array-like of shape (n_cells, n_channels, Z, Y, X)
            3D images.
        y : None
            Ignored.

        Returns
        -------
        self : MaxProjector
            The fitted transformer.
        """
        self._check_3d(X)
        self._validate_fit_input(X)
        return self

    def transform(self, X):
        """Project every channel of every cell.

        Parameters
        ----------
        X : array-like of shape (n_cells, n_channels, Z, Y, X)
            3D images with the number of channels seen in ``fit``.

        Returns
        -------
        X_out : ndarray of float32 of shape (n_cells, n_channels, Y, X)
            Projections (the projected axis is removed; the shape above is for
            ``axis=0``).
        """
        self._check_3d(X)
        X = self._validate_transform_input(X)
        reduce = np.max if self.method == "max" else np.mean
        return reduce(X, axis=2 + self.axis % 3).astype(np.float32, copy=False)
