"""Write a batch of cells as one OME-TIFF per cell plus a manifest.

Generated cells, imputed structures and reconstructions are only useful once a
person can look at them: one OME-TIFF per cell opens in Fiji or napari with the
channel names, and the manifest beside them reads straight back into cellgen
with :func:`~cellgen.io.load_manifest`.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from ._atomic import atomic_directory, check_not_working_folder
from ._paths import _expanduser
from ._tiff import _check_write_args, _write

__all__ = ["save_cells"]


def save_cells(directory, X, *, channel_names=None, metadata=None, pixel_size=None,
               prefix="cell", overwrite=False) -> pd.DataFrame:
    """Write each cell as an OME-TIFF and list them in a ``manifest.csv``.

    ``directory`` receives ``{prefix}_00000.ome.tif``, ``{prefix}_00001.ome.tif``,
    ... (one per cell, written as by :func:`write_ome_tiff`) and
    ``manifest.csv`` with a ``path`` column (relative to ``directory``)
    followed by the columns of ``metadata``. ``load_manifest(directory /
    "manifest.csv")`` returns the same cells and metadata. The folder appears
    complete or not at all: everything is written to a hidden sibling folder
    that is renamed into place at the end, and an existing folder is replaced
    only after the new one is complete.

    Parameters
    ----------
    directory : str or path-like
        Folder to create. Its parent must exist. A leading ``~`` is expanded to
        the home folder.
    X : array-like of shape (n_cells, n_channels, [Z,] Y, X)
        The cells, stored in their own data type (see :func:`write_ome_tiff`).
    channel_names : sequence of str, default=None
        One name per channel, stored in every file (a list, tuple, 1D array of
        str or :class:`pandas.Index`, as for :func:`write_ome_tiff`).
    metadata : pandas.DataFrame or dict, default=None
        One row per cell, written to the manifest after ``path`` (its index is
        not written). A ``path`` column in it, such as the source paths from
        :func:`load_manifest`, is kept as ``source_path`` (dropped when a
        ``source_path`` is already there, from an earlier save). The manifest
        is a plain CSV, so :func:`load_manifest` reads the values back as
        :func:`pandas.read_csv` infers them: ``"001"`` becomes ``1``, ``"NA"``
        a missing value, a categorical column strings.
    pixel_size : float or tuple of float, default=None
        Pixel size in micrometres, ``(Z, Y, X)`` or ``(Y, X)``.
    prefix : str, default="cell"
        Start of every file name.
    overwrite : bool, default=False
        Whether an existing non-empty ``directory`` may be replaced.

    Returns
    -------
    manifest : pandas.DataFrame
        The table written to ``manifest.csv``.

    Raises
    ------
    FileExistsError
        If ``directory`` exists and is not empty (or is a file) and
        ``overwrite`` is False.
    ValueError
        If ``X`` is not a batch of 2D or 3D cells (3D cells need more than one Z
        plane to read back as 3D), or ``channel_names``,
        ``pixel_size`` or ``metadata`` do not match it.

    See Also
    --------
    load_manifest : Read the cells back.
    write_ome_tiff : Write a single cell.

    Examples
    --------
    >>> import tempfile, numpy as np, pandas as pd
    >>> from pathlib import Path
    >>> from cellgen.io import load_manifest, save_cells
    >>> folder = Path(tempfile.mkdtemp()) / "generated"
    >>> X = np.random.RandomState(0).rand(4, 3, 16, 16).astype(np.float32)
    >>> manifest = save_cells(folder, X, channel_names=["membrane", "DNA", "structure"],
    ...                       metadata=pd.DataFrame({"structure": ["nucleoli"] * 4}))
    >>> manifest.columns.tolist(), manifest["path"][0]
    (['path', 'structure'], 'cell_00000.ome.tif')
    >>> X_back, metadata = load_manifest(folder / "manifest.csv")
    >>> np.array_equal(X_back, X), metadata.attrs["channel_names"]
    (True, ['membrane', 'DNA', 'structure'])
    """
    # Refused before anything else, whatever overwrite says.
    directory = check_not_working_folder(_expanduser(directory))
    X = np.asarray(X)
    if X.ndim not in (4, 5) or X.shape[0] == 0:
        raise ValueError(
            "X must be a non-empty batch of cells with 4 axes (n_cells, C, Y, X) or 5 axes "
            f"(n_cells, C, Z, Y, X); got shape {X.shape}. For a single cell use "
            "write_ome_tiff."
        )
    if X.ndim == 5 and X.shape[2] == 1:
        raise ValueError(
            f"X holds 3D cells with a single Z plane (shape {X.shape}); they would read back "
            "as 2D cells, since read_image drops a Z axis of length 1. Save X[:, :, 0] as 2D "
            "cells instead."
        )
    if not isinstance(prefix, str) or not prefix or os.sep in prefix or "/" in prefix:
        raise ValueError(f"prefix must be a non-empty file name part; got {prefix!r}.")
    first, channel_names, pixel_size = _check_write_args(X[0], channel_names, pixel_size)
    X = X.astype(first.dtype, copy=False)  # bool and float16 are stored widened
    manifest = pd.DataFrame({"path": [f"{prefix}_{i:05d}.ome.tif" for i in range(len(X))]})
    if metadata is not None:
        metadata = pd.DataFrame(metadata).reset_index(drop=True)
        if len(metadata) != len(X):
            raise ValueError(
                f"metadata has {len(metadata)} rows but X holds {len(X)} cells; pass one "
                "row per cell."
            )
        if "path" in metadata.columns:
            # Cells saved, loaded and saved again: the first source is the one to keep.
            metadata = (metadata.drop(columns="path") if "source_path" in metadata.columns
                        else metadata.rename(columns={"path": "source_path"}))
        manifest = pd.concat([manifest, metadata], axis=1)
    if directory.exists():
        if not directory.is_dir():
            raise FileExistsError(f"'{directory}' exists and is not a folder.")
        if any(directory.iterdir()) and not overwrite:
            raise FileExistsError(
                f"Folder '{directory}' exists and is not empty; pass overwrite=True to replace "
                "it, or choose another folder."
            )
    elif not directory.parent.is_dir():
        raise FileNotFoundError(f"Cannot create '{directory}': '{directory.parent}' does not "
                                "exist.")
    with atomic_directory(directory) as tmp:
        for name, cell in zip(manifest["path"], X):
            _write(os.fspath(tmp / name), cell, channel_names, pixel_size)
        manifest.to_csv(tmp / "manifest.csv", index=False)
    # The same attrs as load_manifest would give for the folder just written.
    n_channels, n_spatial = X.shape[1], X.ndim - 2
    manifest.attrs.update(
        channel_names=channel_names or [f"ch{i}" for i in range(n_channels)],
        pixel_size=pixel_size or (None,) * n_spatial,
    )
    return manifest
