"""Input validation for image arrays and structure labels.

Every public entry point of cellgen funnels its arrays through these helpers so
that a wrong input fails early, with a message that names the argument, what was
expected and what was given, instead of a torch traceback deep in a network.
"""

from __future__ import annotations

import numbers

import numpy as np
import pandas as pd

from ._arrays import RowView

__all__ = ["check_images", "check_labels", "check_n_samples", "check_channel_index"]


def _describe(arr: np.ndarray) -> str:
    return f"array of shape {arr.shape} and dtype {arr.dtype}"


def _count_non_finite(X, chunk_bytes=1 << 20):
    """NaN/inf count, read in chunks so large or memory-mapped arrays need no full copy."""
    rows = max(1, chunk_bytes // max(1, int(np.prod(X.shape[1:])) * 4))
    n_bad = 0
    for start in range(0, X.shape[0], rows):
        block = np.asarray(X[start:start + rows])
        if block.dtype.kind == "f":
            n_bad += int(block.size - np.count_nonzero(np.isfinite(block)))
    return n_bad


def check_images(
    X,
    *,
    name: str = "X",
    spatial_ndim: int | None = None,
    n_channels: int | None = None,
    spatial_shape: tuple[int, ...] | None = None,
    min_channels: int = 1,
    fitted_what: str = "during fit",
) -> np.ndarray:
    """Validate a batch of images and return it as a C-contiguous float32 array.

    Parameters
    ----------
    X : array-like of shape (n_cells, n_channels, [Z,] Y, X)
        Images, one cell per row. 2D images have four axes, 3D images five.
    name : str, default="X"
        Name of the argument, used in error messages.
    spatial_ndim : {2, 3} or None, default=None
        Required number of spatial axes; ``None`` accepts 2 or 3.
    n_channels : int or None, default=None
        Required number of channels (for example the count seen in ``fit``).
    spatial_shape : tuple of int or None, default=None
        Required spatial shape (for example the shape seen in ``fit``).
    min_channels : int, default=1
        Smallest acceptable number of channels.
    fitted_what : str, default="during fit"
        Where the required shape comes from, for the error message.

    Returns
    -------
    X : ndarray of float32
        The validated images, C-contiguous, native byte order.

    Raises
    ------
    TypeError
        If ``X`` is not numeric (strings, objects, complex numbers).
    ValueError
        If ``X`` is empty, has the wrong number of axes, channels or spatial
        shape, or holds NaN or infinite values.

    Examples
    --------
    >>> import numpy as np
    >>> from cellgen.utils import check_images
    >>> check_images(np.zeros((2, 3, 16, 16), dtype=np.uint8)).dtype
    dtype('float32')
    """
    if X is None:
        raise TypeError(f"{name} must be an array of images, got None.")
    if hasattr(X, "detach") and hasattr(X, "cpu"):  # a torch tensor
        X = X.detach().cpu()
        if str(X.dtype) == "torch.bfloat16":  # numpy has no bfloat16
            X = X.float()
        X = X.numpy()
    # A view (made inside cellgen from images validated here) and a float32 memory
    # map pass through uncopied: they may not fit in memory.
    view = isinstance(X, RowView)
    lazy = view or (
        isinstance(X, np.memmap) and X.dtype == np.float32 and X.flags.c_contiguous)
    try:
        arr = X if lazy else np.asarray(X)
    except Exception as exc:  # ragged nested lists and the like
        raise ValueError(
            f"{name} could not be converted to an array of images: {exc}"
        ) from exc
    if arr.dtype.kind in "OUSV" or arr.dtype.kind == "c" or arr.dtype == bool:
        if arr.dtype.kind == "c":
            raise TypeError(
                f"{name} must hold real numbers; got complex values ({_describe(arr)})."
            )
        if arr.dtype == bool:
            arr = arr.astype(np.float32)
        else:
            raise TypeError(
                f"{name} must be a numeric array of images; got {_describe(arr)}."
            )
    if arr.ndim not in (4, 5):
        raise ValueError(
            f"{name} must have 4 axes (n_cells, n_channels, Y, X) for 2D images or "
            f"5 axes (n_cells, n_channels, Z, Y, X) for 3D images; got {arr.ndim} "
            f"axes with shape {arr.shape}."
        )
    if spatial_ndim is not None and arr.ndim - 2 != spatial_ndim:
        raise ValueError(
            f"{name} has {arr.ndim - 2} spatial axes (shape {arr.shape}) but "
            f"{spatial_ndim} were expected ({fitted_what})."
        )
    if arr.shape[0] == 0:
        raise ValueError(f"{name} is empty: it holds 0 cells (shape {arr.shape}).")
    if any(s == 0 for s in arr.shape[1:]):
        raise ValueError(f"{name} has an axis of length 0: shape {arr.shape}.")
    if arr.shape[1] < min_channels:
        raise ValueError(
            f"{name} must have at least {min_channels} channels; got {arr.shape[1]} "
            f"(shape {arr.shape})."
        )
    if n_channels is not None and arr.shape[1] != n_channels:
        raise ValueError(
            f"{name} has {arr.shape[1]} channels but {n_channels} were expected "
            f"({fitted_what}); shape {arr.shape}."
        )
    if spatial_shape is not None and tuple(arr.shape[2:]) != tuple(spatial_shape):
        raise ValueError(
            f"{name} has spatial shape {tuple(arr.shape[2:])} but "
            f"{tuple(spatial_shape)} was expected ({fitted_what}). Resize, pad or "
            "crop the images to that shape."
        )
    # Memory-mapped float32 collections pass through uncopied (they may not fit
    # in memory); everything else becomes a native, C-contiguous float32 array.
    with np.errstate(over="ignore"):  # an overflow is reported below, by name
        out = arr if lazy else np.ascontiguousarray(arr, dtype=np.float32)
    n_bad = 0 if view else _count_non_finite(out)
    if n_bad:
        overflow = ""
        if out is not arr and arr.dtype.kind == "f" and arr.dtype.itemsize > 4:
            n_orig = _count_non_finite(arr)
            if n_orig < n_bad:
                # Finite float64 values beyond float32's range become inf in the cast.
                overflow = (f" ({n_bad - n_orig} of them finite in {arr.dtype} but beyond "
                            f"float32's range, ±{np.finfo(np.float32).max:.3g}; rescale "
                            "the images, for example with IntensityNormalizer)")
        raise ValueError(
            f"{name} contains {n_bad} NaN or infinite values{overflow}; remove or replace "
            "them before passing the images."
        )
    return out


def check_labels(y, n_samples: int, *, name: str = "y", known=None) -> np.ndarray:
    """Validate structure labels against a number of cells and known classes.

    Parameters
    ----------
    y : array-like of shape (n_samples,) or a single label
        One label per cell. A single label (a string or a number) is broadcast to
        every cell.
    n_samples : int
        The number of cells the labels must match.
    name : str, default="y"
        Name of the argument, used in error messages.
    known : array-like or None, default=None
        The labels seen during ``fit``; any other label raises an error that lists
        them.

    Returns
    -------
    y : ndarray of shape (n_samples,)
        The labels as a one-dimensional array.

    Raises
    ------
    ValueError
        If the labels are missing, of the wrong length, contain NaN, or include a
        label outside ``known``.

    Examples
    --------
    >>> from cellgen.utils import check_labels
    >>> check_labels("nucleoli", 3, known=["nucleoli", "cell_periphery"]).tolist()
    ['nucleoli', 'nucleoli', 'nucleoli']
    """
    if y is None:
        raise ValueError(
            f"{name} is required: pass the structure label of each cell "
            f"(an array of {n_samples} labels, or one label for all)."
        )
    if hasattr(y, "to_numpy"):
        y = y.to_numpy()
    if isinstance(y, (str, bytes, numbers.Number, np.generic)):
        y = np.full(n_samples, y, dtype=object if isinstance(y, str) else None)
    if isinstance(y, (list, tuple)) and any(
            not isinstance(v, (str, bytes)) and pd.api.types.is_scalar(v) and pd.isna(v)
            for v in y):
        # np.asarray(["a", nan]) would make the NaN the string 'nan'.
        raise ValueError(f"{name} contains missing (None, NaN or NA) labels.")
    arr = np.asarray(y)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise ValueError(
            f"{name} must be one label per cell, a 1D array; got shape {arr.shape}."
        )
    if arr.shape[0] != n_samples:
        raise ValueError(
            f"{name} has {arr.shape[0]} labels but the images hold {n_samples} "
            "cells; pass one label per cell."
        )
    if arr.dtype.kind == "f" and np.isnan(arr).any():
        raise ValueError(f"{name} contains NaN labels.")
    if arr.dtype.kind == "O" and pd.isna(arr).any():  # None, NaN, pd.NA, NaT
        raise ValueError(f"{name} contains missing (None, NaN or NA) labels.")
    if known is not None:
        known_list = np.asarray(known).tolist()
        known_set = set(known_list)
        unknown = sorted({v for v in set(arr.tolist()) if v not in known_set}, key=repr)
        if unknown:
            # repr, not str: the label 0 and the label "0" must not look alike.
            raise ValueError(
                f"{name} contains structure labels not seen during fit: "
                f"{', '.join(map(repr, unknown))}. Known labels: "
                f"{', '.join(map(repr, known_list))}."
            )
    return arr


def check_n_samples(n_samples, name: str = "n_samples") -> int:
    """Validate a positive count of cells to generate.

    Parameters
    ----------
    n_samples : int
        Number of cells requested.
    name : str, default="n_samples"
        Name of the argument, used in error messages.

    Returns
    -------
    n_samples : int
        The validated count.

    Raises
    ------
    TypeError
        If ``n_samples`` is not an integer.
    ValueError
        If ``n_samples`` is smaller than 1.

    Examples
    --------
    >>> from cellgen.utils import check_n_samples
    >>> check_n_samples(4)
    4
    """
    if isinstance(n_samples, bool) or not isinstance(n_samples, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {n_samples!r}.")
    if n_samples < 1:
        raise ValueError(f"{name} must be at least 1, got {n_samples}.")
    return int(n_samples)


def check_channel_index(index, n_channels: int, name: str) -> int:
    """Validate a channel index (negative counts from the end).

    Parameters
    ----------
    index : int
        The channel index.
    n_channels : int
        Number of channels of the images.
    name : str
        Name of the argument, used in error messages.

    Returns
    -------
    index : int
        The non-negative index.

    Raises
    ------
    TypeError
        If ``index`` is not an integer.
    ValueError
        If ``index`` is out of range.

    Examples
    --------
    >>> from cellgen.utils import check_channel_index
    >>> check_channel_index(-1, 3, "structure_channel")
    2
    """
    if isinstance(index, bool) or not isinstance(index, numbers.Integral):
        raise TypeError(f"{name} must be an integer channel index, got {index!r}.")
    if not -n_channels <= index < n_channels:
        raise ValueError(
            f"{name}={index} is out of range for images with {n_channels} channels."
        )
    return int(index) % n_channels

