"""Cache the cells of a manifest as one ``.npy`` file opened as a memory map.

A collection too large for memory still fits on disk. :func:`cache_manifest`
reads the images chunk by chunk into a float32 ``.npy`` file and hands back a
read-only memory map of it, which cellgen's estimators take like any other
float32 array: the operating system pages cells in as a batch needs them. A
sidecar JSON records what the cache was built from, so the next call reopens it
at once instead of reading thousands of TIFFs, and a changed manifest is caught
instead of silently served stale.
"""

from __future__ import annotations

import hashlib
import json
import numbers
from pathlib import Path

import numpy as np
import pandas as pd

from ._atomic import atomic_file
from ._manifest import (
    _check_no_blank_paths,
    _image_path,
    _read_into,
    _read_table,
    _resolve_paths,
    _Stacker,
)
from ._paths import _expanduser

__all__ = ["cache_manifest"]

_FORMAT = "cellgen.io.cache_manifest/1"


def _describe_preprocessor(preprocessor) -> str | None:
    """A text that changes when the preprocessor's parameters change."""
    if preprocessor is None:
        return None
    try:  # scikit-learn estimators: never abbreviate the parameters
        return preprocessor.__repr__(N_CHAR_MAX=1_000_000)
    except TypeError:
        return repr(preprocessor)


def _build_key(table, root, path_column, channels, preprocessor) -> dict:
    """What the cache depends on, comparable without reading an image."""
    if channels is not None:
        channels = [channels] if isinstance(channels, (str, numbers.Integral)) else list(channels)
        channels = [c if isinstance(c, str) else int(c) for c in channels]
    # The files the paths name, not the text: two folders written by save_cells list
    # the same relative names.
    files = [str(_image_path(p, Path(root)).resolve(strict=False)) for p in table[path_column]]
    digest = hashlib.sha256("\n".join(files).encode()).hexdigest()
    return {"n_rows": len(table), "paths_sha256": digest, "channels": channels,
            "preprocessor": _describe_preprocessor(preprocessor)}


def _stale_reason(cache_path: Path, sidecar: Path, key: dict) -> str | None:
    """Why an existing cache cannot be reused, or None if it can."""
    try:
        built = json.loads(sidecar.read_text())
    except (OSError, ValueError):
        return f"its sidecar '{sidecar}', which records what it was built from, is missing " \
               "or unreadable"
    if built.get("format") != _FORMAT:
        return f"'{sidecar}' was not written by cache_manifest"
    if built.get("n_rows") != key["n_rows"]:
        return f"it holds {built.get('n_rows')} cells but the manifest lists {key['n_rows']}"
    if built.get("paths_sha256") != key["paths_sha256"]:
        return "the manifest's image paths differ from those it was built from"
    if built.get("channels") != key["channels"]:
        return f"it was built with channels={built.get('channels')}, not {key['channels']}"
    if built.get("preprocessor") != key["preprocessor"]:
        return f"it was built with preprocessor={built.get('preprocessor')}, not " \
               f"{key['preprocessor']}"
    try:
        X = np.load(cache_path, mmap_mode="r")
    except (OSError, ValueError) as exc:
        return f"it cannot be opened as a .npy file ({exc})"
    if list(X.shape) != built.get("shape") or X.dtype != np.float32:
        return f"its array ({X.shape}, {X.dtype}) does not match its sidecar"
    return None


def _open(cache_path: Path, sidecar: Path, table: pd.DataFrame):
    built = json.loads(sidecar.read_text())
    X = np.load(cache_path, mmap_mode="r")
    pixel_size = built["pixel_size"]
    table.attrs.update(channel_names=list(built["channel_names"]),
                       pixel_size=None if pixel_size is None else tuple(pixel_size))
    return X, table


def cache_manifest(manifest, cache_path, *, root=None, path_column="path", channels=None,
                   preprocessor=None, chunk_size=256, n_jobs=None, verbose=False,
                   overwrite=False) -> tuple[np.memmap, pd.DataFrame]:
    """Read the cells of a manifest into a float32 ``.npy`` cache and memory-map it.

    The array is the one :func:`load_manifest` would return with
    ``dtype="float32"``, but it lives on disk: it is built ``chunk_size`` cells
    at a time and returned as a read-only :class:`numpy.memmap`, so collections
    larger than memory can be passed to the estimators' ``fit`` and
    ``transform`` (they take any C-contiguous float32 array, memory maps
    included, without copying). A sidecar ``cache_path + ".json"`` records the
    number of rows, a hash of the image paths, ``channels``, the
    ``preprocessor``'s parameters, the channel names and the pixel size. A later
    call with the same manifest and arguments reopens the cache without reading
    any image.

    Parameters
    ----------
    manifest : str, path-like or pandas.DataFrame
        A CSV file or a table with one row per cell, as for :func:`load_manifest`
        (a leading ``~`` in its path is expanded to the home folder).
    cache_path : str or path-like
        The ``.npy`` file to build or reuse. Its folder must exist. A leading
        ``~`` is expanded.
    root : str or path-like, default=None
        Folder that relative paths are resolved against (see :func:`load_manifest`);
        a leading ``~`` is expanded.
    path_column : str, default="path"
        Column holding the image paths.
    channels : str, int or list of str or int, default=None
        Channels to read from every file; ``None`` reads all of them.
    preprocessor : object with ``fit_transform``, default=None
        Applied to each group of equally shaped cells before they are stored
        (see :func:`load_manifest`). Its ``repr`` identifies it in the sidecar,
        so one whose ``repr`` changes between sessions (a lambda, say) makes the
        cache look stale.
    chunk_size : int, default=256
        Number of cells read and held in memory at a time. The first chunk
        fixes the cells' shape.
    n_jobs : int, default=None
        Number of threads reading files (``None`` means 1; -1 all cores).
    verbose : bool, default=False
        Whether to show a progress bar while building.
    overwrite : bool, default=False
        Whether to rebuild a cache that does not match the manifest and
        arguments (a matching cache is always reused; delete it to force a
        rebuild, for example after editing the images in place).

    Returns
    -------
    X : numpy.memmap of shape (n_cells, n_channels, [Z,] Y, X)
        The cells as read-only float32, in manifest order.
    metadata : pandas.DataFrame
        The manifest rows with a fresh index, with ``attrs["channel_names"]``
        and ``attrs["pixel_size"]`` as in :func:`load_manifest`.

    Raises
    ------
    ValueError
        If the cache exists but is stale (built from other paths, channels or
        preprocessor) and ``overwrite`` is False, and for the reasons listed in
        :func:`load_manifest`.
    FileNotFoundError
        If the manifest, an image or the cache's folder is missing.

    See Also
    --------
    load_manifest : Read the same array into memory.

    Notes
    -----
    A failed build leaves neither a cache nor a temporary file behind: the
    array is written to a hidden ``.npy`` in the same folder and renamed to
    ``cache_path`` only when complete. The cache does not notice images that
    are edited in place under the same paths.

    Examples
    --------
    >>> import tempfile, numpy as np, pandas as pd
    >>> from pathlib import Path
    >>> from cellgen.io import cache_manifest, save_cells
    >>> folder = Path(tempfile.mkdtemp())
    >>> cells = np.random.RandomState(0).rand(5, 2, 8, 8).astype(np.float32)
    >>> _ = save_cells(folder / "cells", cells, channel_names=["DNA", "membrane"])
    >>> X, metadata = cache_manifest(folder / "cells" / "manifest.csv", folder / "cells.npy")
    >>> type(X).__name__, X.shape, X.flags.writeable, np.array_equal(X, cells)
    ('memmap', (5, 2, 8, 8), False, True)
    >>> X, metadata = cache_manifest(folder / "cells" / "manifest.csv", folder / "cells.npy")
    """
    table, root, source = _read_table(manifest, root, path_column)
    cache_path = _expanduser(cache_path)
    sidecar = cache_path.with_name(cache_path.name + ".json")
    if not cache_path.parent.is_dir():
        raise FileNotFoundError(f"Folder '{cache_path.parent}' of the cache does not exist.")
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, numbers.Integral) \
            or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer; got {chunk_size!r}.")
    _check_no_blank_paths(table, path_column, source)
    key = _build_key(table, root, path_column, channels, preprocessor)
    if cache_path.exists():
        reason = _stale_reason(cache_path, sidecar, key)
        if reason is None:
            return _open(cache_path, sidecar, table)
        if not overwrite:
            raise ValueError(
                f"The cache '{cache_path}' is stale: {reason}. Pass overwrite=True to rebuild "
                f"it from the images, or delete '{cache_path}' and '{sidecar}'."
            )

    paths = _resolve_paths(table, root, path_column, source)
    with atomic_file(cache_path, suffix=".npy") as tmp:
        def allocate(shape, dtype):
            return np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=shape)

        stacker = _Stacker(len(paths), allocate, source, np.dtype(np.float32))
        try:
            X = _read_into(stacker, paths, channels=channels, preprocessor=preprocessor,
                           dtype=np.float32, n_jobs=n_jobs, chunk_size=chunk_size,
                           verbose=verbose)
            X.flush()
            shape = list(X.shape)
        finally:
            # Close the map before the file is renamed or removed.
            stacker.out = X = None
        attrs = stacker.attrs()
        # The old sidecar goes before the new array takes its place: a kill between
        # the rename and the new sidecar must leave a cache reported stale, never
        # new cells described by the old arguments.
        sidecar.unlink(missing_ok=True)
    built = dict(key, format=_FORMAT, shape=shape, dtype="float32", **attrs)
    with atomic_file(sidecar) as tmp:
        tmp.write_text(json.dumps(built, indent=1))
    return _open(cache_path, sidecar, table)
