"""Read and write single-cell images as (OME-)TIFF with channel names and pixel sizes.

cellgen holds one cell as an array ``(C, [Z,] Y, X)``. Files on disk come in many
axis orders (``ZCYX`` from Allen Cell, ``CYX`` from crops, ``TCZYX`` from
microscopes, plain ``YX`` planes), so :func:`read_image` reorders whatever axes
the file declares into that layout and returns what it knows about the channels
and the voxel size beside it. :func:`write_ome_tiff` writes the same layout back
as an OME-TIFF that Fiji, napari and :func:`read_image` open with the channel
names intact.
"""

from __future__ import annotations

import math
import numbers
import os
import xml.etree.ElementTree as ET
from collections.abc import Sequence

import numpy as np
import tifffile

from ..utils._validation import check_channel_index
from ._atomic import atomic_file
from ._paths import _expanduser

__all__ = ["read_image", "write_ome_tiff"]

# Length units of OME (PhysicalSize*Unit) and ImageJ ("unit"), in micrometres.
_TO_MICRONS = {
    "m": 1e6, "cm": 1e4, "mm": 1e3, "µm": 1.0, "μm": 1.0, "um": 1.0, "micron": 1.0,
    "microns": 1.0, "\\u00b5m": 1.0, "nm": 1e-3, "pm": 1e-6, "å": 1e-4, "angstrom": 1e-4,
}
# OME pixel types: anything else would make an OME-TIFF that Fiji refuses.
_OME_DTYPES = {np.dtype(t) for t in ("uint8", "uint16", "uint32", "int8", "int16", "int32",
                                     "float32", "float64")}


def _microns(value, unit) -> float | None:
    """A length in micrometres, or None when missing, unknown or not positive."""
    if value is None:
        return None
    factor = _TO_MICRONS.get(str(unit if unit is not None else "µm").strip().lower())
    try:
        size = float(value) * factor if factor is not None else math.nan
    except (TypeError, ValueError):
        return None
    return size if math.isfinite(size) and size > 0 else None


def _ome_info(xml: str) -> tuple[list[str | None], dict[str, float | None]]:
    """Channel names and physical sizes of the first image of an OME-XML string."""
    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return [], {}
    pixels = next((el for el in root.iter() if el.tag.rsplit("}", 1)[-1] == "Pixels"), None)
    if pixels is None:
        return [], {}
    names = [ch.get("Name") for ch in pixels if ch.tag.rsplit("}", 1)[-1] == "Channel"]
    sizes = {ax: _microns(pixels.get(f"PhysicalSize{ax}"), pixels.get(f"PhysicalSize{ax}Unit"))
             for ax in "ZYX"}
    return names, sizes


def _imagej_info(tif: tifffile.TiffFile, n_channels: int):
    """Channel labels and voxel size from ImageJ hyperstack metadata."""
    meta = tif.imagej_metadata or {}
    labels = meta.get("Labels")
    names: list[str | None] = []
    # ImageJ keeps one label per plane with the channel varying fastest. A label
    # names a channel only if every plane of that channel carries it; labels that
    # change along Z name slices, not channels.
    if isinstance(labels, list) and len(labels) >= n_channels and len(labels) % n_channels == 0:
        names = [str(labels[c]) if labels[c] and len(set(labels[c::n_channels])) == 1
                 else None for c in range(n_channels)]
    unit = meta.get("unit", "pixel")
    sizes: dict[str, float | None] = {"Z": _microns(meta.get("spacing"), unit)}
    page = tif.pages.first
    for ax, tag in (("X", "XResolution"), ("Y", "YResolution")):
        res = page.tags.get(tag)
        # TIFF stores a resolution (pixels per unit) as a rational (num, den).
        num, den = res.value if res is not None and len(res.value) == 2 else (0, 0)
        sizes[ax] = _microns(den / num, unit) if num else None
    return names, sizes


# tifffile's axis codes that may stand for channels: samples (RGB), an unnamed
# image sequence, unknown, and emission wavelength (lambda).
_CHANNEL_LIKE = "SIQE"


def _to_cell_layout(data: np.ndarray, axes: str) -> np.ndarray:
    """Reorder an array with tifffile axes into (C, [Z,] Y, X)."""
    axes = axes.upper()
    if "Y" not in axes or "X" not in axes:
        raise ValueError(f"axes {axes!r} lack a Y or X axis; cannot read them as an image.")
    # Length-1 axes that cellgen has no use for (one time point, one sample per
    # pixel, a single Z plane) are dropped.
    keep = [i for i, a in enumerate(axes) if a in "CYX" or data.shape[i] > 1]
    data = data.reshape([data.shape[i] for i in keep])
    axes = "".join(axes[i] for i in keep)
    extra = [a for a in axes if a not in "CZYX"]
    if extra and "C" not in axes and len(extra) == 1 and extra[0] in _CHANNEL_LIKE:
        # One unnamed stack axis (RGB samples, pages of a plain multi-page TIFF, a
        # spectral axis) is taken as the channels; time points or positions are not.
        axes = axes.replace(extra[0], "C")
    elif extra:
        raise ValueError(
            f"axes {axes!r} with shape {data.shape} hold more than channels, Z, Y and X "
            f"(extra axes {extra}); cellgen reads one time point and one position per "
            "cell. Save each cell as its own (C, [Z,] Y, X) image."
        )
    if "C" not in axes:
        data, axes = data[np.newaxis], "C" + axes
    order = [axes.index(a) for a in "CZYX" if a in axes]
    return np.transpose(data, order)


def _select_channels(channels, names: list[str], source: str) -> list[int]:
    if isinstance(channels, (str, numbers.Integral)):
        channels = [channels]
    try:
        wanted = list(channels)
    except TypeError:
        raise TypeError(
            f"channels must be a channel name, an index or a list of them; got {channels!r}."
        ) from None
    if not wanted:
        raise ValueError("channels is empty; pass at least one channel name or index.")
    index = []
    for ch in wanted:
        if isinstance(ch, str):
            if ch not in names:
                raise ValueError(
                    f"Channel {ch!r} is not in {source}; available channels: {names}."
                )
            if names.count(ch) > 1:
                raise ValueError(
                    f"Channel name {ch!r} names {names.count(ch)} channels of {source} "
                    f"({names}); select them by index instead."
                )
            index.append(names.index(ch))
        else:
            index.append(check_channel_index(ch, len(names), "channels"))
    return index


def read_image(path, *, channels=None) -> tuple[np.ndarray, dict]:
    """Read one cell image from a TIFF or OME-TIFF file as ``(C, [Z,] Y, X)``.

    The axes the file declares (OME-XML, ImageJ or tifffile metadata) are
    reordered so that channels come first and Z, when present, comes before Y
    and X. Axes of length 1 other than C, Y and X (a single time point or Z
    plane, one sample per pixel) are dropped, so ``TCZYX`` with one time point
    reads as ``(C, Z, Y, X)`` and a ``YX`` plane as ``(1, Y, X)``. A plain TIFF
    with one unnamed stack axis (a multi-page file without metadata, or RGB
    samples) is read with that axis as the channels.

    Parameters
    ----------
    path : str or path-like
        The TIFF file; a leading ``~`` is expanded to the home folder.
    channels : str, int or list of str or int, default=None
        Channels to return, by OME channel name or by index (negative indices
        count from the end), in the order given. ``None`` returns all channels.

    Returns
    -------
    image : ndarray of shape (n_channels, [Z,] Y, X)
        The pixels in the file's data type (native byte order).
    info : dict
        ``channel_names`` (list of str: OME ``Channel/@Name``, else ImageJ
        labels, else ``"ch0"``, ``"ch1"``, ...), ``pixel_size`` (tuple of float
        or None, in micrometres per spatial axis, ``(Z, Y, X)`` or ``(Y, X)``;
        ``None`` where the file does not say), ``axes`` (the file's axes
        string, for example ``"ZCYX"``) and ``path`` (str).

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ValueError
        If the file is not a readable TIFF, its axes cannot be read as one cell,
        or a requested channel name is not in the file (the message lists the
        available names).

    See Also
    --------
    write_ome_tiff : Write an image in the same layout.
    load_manifest : Read many cells listed in a CSV file.

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> from pathlib import Path
    >>> from cellgen.io import read_image, write_ome_tiff
    >>> path = Path(tempfile.mkdtemp()) / "cell.ome.tif"
    >>> cell = np.arange(2 * 4 * 5, dtype=np.uint16).reshape(2, 4, 5)
    >>> write_ome_tiff(path, cell, channel_names=["DNA", "membrane"], pixel_size=(0.1, 0.1))
    >>> image, info = read_image(path, channels="membrane")
    >>> image.shape, image.dtype, info["channel_names"], info["pixel_size"]
    ((1, 4, 5), dtype('uint16'), ['membrane'], (0.1, 0.1))
    """
    path = _expanduser(path)
    if not path.is_file():
        raise FileNotFoundError(f"No such image file: '{path}'.")
    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            axes = series.axes
            data = series.asarray()
            if tif.is_ome and tif.ome_metadata:
                names, sizes = _ome_info(tif.ome_metadata)
            elif tif.is_imagej:
                n_ch = series.shape[axes.index("C")] if "C" in axes else 1
                names, sizes = _imagej_info(tif, n_ch)
            else:
                names, sizes = [], {}
    except Exception as exc:  # tifffile raises many types for a damaged file
        raise ValueError(f"Could not read '{path}' as a TIFF image: {exc}") from exc
    try:
        image = _to_cell_layout(data, axes)
    except ValueError as exc:
        raise ValueError(f"Could not read '{path}' as one cell: {exc}") from exc
    if not image.dtype.isnative:
        image = image.astype(image.dtype.newbyteorder("="))
    n_channels = image.shape[0]
    if len(names) != n_channels:
        names = [None] * n_channels
    names = [n if n else f"ch{i}" for i, n in enumerate(names)]
    spatial = "ZYX" if image.ndim == 4 else "YX"
    info = {
        "channel_names": names,
        "pixel_size": tuple(sizes.get(ax) for ax in spatial),
        "axes": axes,
        "path": str(path),
    }
    if channels is not None:
        index = _select_channels(channels, names, f"'{path}'")
        image = image[index]
        info["channel_names"] = [names[i] for i in index]
    return image, info


def _check_write_args(image, channel_names, pixel_size):
    """Validate what write_ome_tiff accepts; return the array, names and sizes."""
    image = np.asarray(image)
    if image.dtype == bool:
        image = image.astype(np.uint8)
    elif image.dtype == np.float16:
        image = image.astype(np.float32)
    if image.dtype.kind not in "uif":
        raise TypeError(f"image must be a numeric array; got dtype {image.dtype}.")
    if image.dtype.newbyteorder("=") not in _OME_DTYPES:
        raise TypeError(
            f"OME-TIFF cannot store dtype {image.dtype}; cast the image to one of "
            f"{sorted(str(t) for t in _OME_DTYPES)} first."
        )
    if image.ndim not in (3, 4):
        raise ValueError(
            "image must be one cell with 3 axes (C, Y, X) or 4 axes (C, Z, Y, X); got "
            f"shape {image.shape}. For a batch of cells use save_cells."
        )
    if 0 in image.shape:
        raise ValueError(f"image has an axis of length 0: shape {image.shape}.")
    n_channels, n_spatial = image.shape[0], image.ndim - 1
    if channel_names is not None:
        # Names often come as an array or Index (metadata.attrs, a DataFrame's
        # columns); a set or a dict has no order to match the channels by.
        ordered = isinstance(channel_names, Sequence) or (
            hasattr(channel_names, "__array__") and np.ndim(channel_names) == 1)
        if isinstance(channel_names, str) or not ordered:
            raise TypeError(
                "channel_names must be a list of str (or another ordered sequence of them: "
                f"a tuple, a 1D array, a pandas Index); got {channel_names!r}."
            )
        channel_names = list(channel_names)
        if len(channel_names) != n_channels:
            raise ValueError(
                f"channel_names has {len(channel_names)} names but the image has "
                f"{n_channels} channels (shape {image.shape})."
            )
        if not all(isinstance(n, str) and n for n in channel_names):
            raise TypeError(f"channel_names must be non-empty strings; got {channel_names}.")
        # numpy's str_ is a str, but plain ones keep the OME-XML writer and attrs simple.
        channel_names = [str(n) for n in channel_names]
        if len(set(channel_names)) != n_channels:
            raise ValueError(f"channel_names must be unique; got {channel_names}.")
    if pixel_size is not None:
        if isinstance(pixel_size, numbers.Real):
            pixel_size = (pixel_size,) * n_spatial
        pixel_size = tuple(pixel_size)
        if len(pixel_size) != n_spatial:
            raise ValueError(
                f"pixel_size must give one size per spatial axis ({n_spatial} for shape "
                f"{image.shape}: {'(Z, Y, X)' if n_spatial == 3 else '(Y, X)'}); got "
                f"{pixel_size}."
            )
        for s in pixel_size:
            if s is not None and not (isinstance(s, numbers.Real) and math.isfinite(s) and s > 0):
                raise ValueError(f"pixel sizes must be positive numbers or None; got {pixel_size}.")
    return image, channel_names, pixel_size


def _write(path, image, channel_names, pixel_size) -> None:
    """Write validated arguments to ``path`` (not atomic)."""
    metadata: dict = {"axes": "CZYX" if image.ndim == 4 else "CYX"}
    if channel_names is not None:
        metadata["Channel"] = {"Name": channel_names}
    if pixel_size is not None:
        for ax, size in zip("ZYX"[3 - len(pixel_size):], pixel_size):
            if size is not None:
                metadata[f"PhysicalSize{ax}"] = float(size)
    # minisblack: without it a 3-channel uint8 cell could be taken for RGB.
    tifffile.imwrite(path, image, ome=True, photometric="minisblack", metadata=metadata)


def write_ome_tiff(path, image, *, channel_names=None, pixel_size=None, overwrite=True) -> None:
    """Write one cell ``(C, [Z,] Y, X)`` as an OME-TIFF with channel names and pixel sizes.

    The file opens in Fiji (Bio-Formats) and napari with one named channel per
    image channel, and :func:`read_image` returns exactly the array written.
    The write is atomic: the data go to a temporary file in the same folder,
    which replaces ``path`` only once complete; on any error the temporary file
    is removed and ``path`` is left as it was.

    Parameters
    ----------
    path : str or path-like
        Destination, conventionally ending in ``.ome.tif``. Its folder must exist.
        A leading ``~`` is expanded to the home folder.
    image : array-like of shape (n_channels, [Z,] Y, X)
        One cell. Stored in its own data type: uint8, uint16, uint32, int8,
        int16, int32, float32 or float64 (bool is stored as uint8, float16 as
        float32). A single Z plane ``(C, 1, Y, X)`` is read back as 2D.
    channel_names : sequence of str, default=None
        One unique name per channel, stored as OME ``Channel/@Name``: a list,
        tuple, 1D array of str or :class:`pandas.Index`. ``None`` stores no
        names (readers then show ``ch0``, ``ch1``, ...).
    pixel_size : float or tuple of float or None, default=None
        Size of a pixel in micrometres, per spatial axis: ``(Z, Y, X)`` for 3D,
        ``(Y, X)`` for 2D; a single number applies to every axis and ``None``
        entries are left unset.
    overwrite : bool, default=True
        Whether an existing file at ``path`` may be replaced.

    Raises
    ------
    FileExistsError
        If ``path`` exists and ``overwrite`` is False.
    FileNotFoundError
        If the folder of ``path`` does not exist.
    TypeError
        If the data type cannot be stored in an OME-TIFF, or ``channel_names``
        is not a sequence of non-empty strings.
    ValueError
        If ``image`` is not one 2D or 3D cell, ``channel_names`` or
        ``pixel_size`` do not match its shape, or two channels share a name.

    See Also
    --------
    read_image : Read the file back.
    save_cells : Write a batch of cells and their manifest.

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> from pathlib import Path
    >>> from cellgen.io import read_image, write_ome_tiff
    >>> path = Path(tempfile.mkdtemp()) / "cell3d.ome.tif"
    >>> cell = np.random.RandomState(0).rand(3, 4, 8, 8).astype(np.float32)
    >>> write_ome_tiff(path, cell, channel_names=["membrane", "DNA", "structure"],
    ...                pixel_size=(0.29, 0.108, 0.108))
    >>> image, info = read_image(path)
    >>> np.array_equal(image, cell), info["axes"], info["pixel_size"]
    (True, 'CZYX', (0.29, 0.108, 0.108))
    """
    path = _expanduser(path)
    image, channel_names, pixel_size = _check_write_args(image, channel_names, pixel_size)
    if not path.parent.is_dir():
        raise FileNotFoundError(f"Cannot write '{path}': folder '{path.parent}' does not exist.")
    if path.exists() and not overwrite:
        raise FileExistsError(f"'{path}' exists; pass overwrite=True to replace it.")
    if path.is_dir():
        raise IsADirectoryError(f"Cannot write '{path}': it is a folder.")
    with atomic_file(path) as tmp:
        _write(os.fspath(tmp), image, channel_names, pixel_size)
