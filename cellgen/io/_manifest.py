"""Read a collection of single-cell images listed in a manifest into one array.

A manifest is a table with one row per cell: a column of image paths plus any
metadata (plate, well, treatment, label ...). :func:`load_manifest` reads every
image, checks that they agree on channels and shape, and stacks them into the
``(n_cells, n_channels, [Z,] Y, X)`` array that cellgen's estimators take, with
the table beside it. The reading machinery here is shared with
:func:`~cellgen.io.cache_manifest`, which writes the same array to disk instead.
"""

from __future__ import annotations

import math
import os
import warnings
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pandas as pd
from joblib import Parallel, delayed, effective_n_jobs
from sklearn.base import clone
from tqdm.auto import tqdm

from ._paths import _expanduser
from ._tiff import read_image

__all__ = ["load_manifest"]

# Threads beat processes on BBBC021 (2 cores, 1996 deflate-compressed 68x68
# crops): tifffile decodes without the GIL and threads need not pickle the
# pixels back to the parent.
_PREFER = "threads"
# Rows read per round of parallel work: bounds what is held besides the output.
_LOAD_CHUNK = 1024
# How many offending rows an error message lists before summarising.
_MAX_LISTED = 5


def _image_path(value, root: Path) -> Path:
    """The file a manifest entry names: a path from ``root`` unless absolute or ``~``."""
    path = _expanduser(value)
    return path if path.is_absolute() else root / path


def _read_table(manifest, root, path_column):
    """Return the manifest as a DataFrame with a fresh RangeIndex, its root and a label."""
    if isinstance(manifest, pd.DataFrame):
        table = manifest.reset_index(drop=True)
        base, source = Path.cwd(), "the manifest"
    elif isinstance(manifest, (str, os.PathLike)):
        csv = _expanduser(manifest)
        if not csv.is_file():
            raise FileNotFoundError(f"Manifest file '{csv}' does not exist.")
        table = pd.read_csv(csv)
        base, source = csv.parent, f"manifest '{csv}'"
    else:
        raise TypeError(
            "manifest must be the path of a CSV file or a pandas DataFrame; got "
            f"{type(manifest).__name__}."
        )
    if path_column not in table.columns:
        raise ValueError(
            f"{source} has no column {path_column!r} of image paths; its columns are "
            f"{list(table.columns)}. Pass path_column= to name the column of paths."
        )
    if len(table) == 0:
        raise ValueError(f"{source} is empty: it lists no cells.")
    return table, (base if root is None else _expanduser(root)), source


def _listing(rows, limit=_MAX_LISTED) -> str:
    rows = list(rows)
    shown = ", ".join(str(r) for r in rows[:limit])
    return shown + (f", ... ({len(rows) - limit} more)" if len(rows) > limit else "")


def _check_no_blank_paths(table, path_column: str, source: str) -> None:
    values = table[path_column].tolist()
    blank = [i for i, v in enumerate(values)
             if not isinstance(v, (str, os.PathLike)) or not str(v).strip()]
    if blank:
        raise ValueError(f"{source} has no image path in row(s) {_listing(blank)}.")


def _resolve_paths(table, root: Path, path_column: str, source: str) -> list[Path]:
    """Absolute image paths, relative ones taken from ``root``; every file must exist."""
    _check_no_blank_paths(table, path_column, source)
    paths = [_image_path(v, root) for v in table[path_column].tolist()]
    missing = [(i, p) for i, p in enumerate(paths) if not p.is_file()]
    if missing:
        listed = "; ".join(f"row {i}: '{p}'" for i, p in missing[:_MAX_LISTED])
        more = f"; and {len(missing) - _MAX_LISTED} more" if len(missing) > _MAX_LISTED else ""
        raise FileNotFoundError(
            f"{len(missing)} of the {len(paths)} image files listed in {source} are missing "
            f"({listed}{more}). Relative paths are taken from '{root}'; pass root= if the "
            "images live elsewhere."
        )
    return paths


def read_manifest(manifest, *, root=None, path_column="path") -> tuple[pd.DataFrame, list[Path]]:
    """Read a manifest and check that every image it lists exists, without reading them.

    The checks :func:`load_manifest` makes before reading any pixel: the
    table has the column of paths, lists at least one cell, has a path in
    every row, and every file exists. Run it before a long job to fail at
    once rather than at its last chunk.

    Parameters
    ----------
    manifest : str, path-like or pandas.DataFrame
        A CSV file with one row per cell, or the table itself. A leading ``~``
        in its path is expanded to the home folder.
    root : str or path-like, default=None
        Folder that relative paths are taken from: the CSV's folder by default
        (the working directory for a DataFrame). A leading ``~`` is expanded.
    path_column : str, default="path"
        Column holding the image paths. A leading ``~`` that names a home
        folder (``~/...``, ``~user/...``) is expanded; other relative paths are
        taken from ``root``.

    Returns
    -------
    table : pandas.DataFrame
        The manifest, indexed 0..n-1.
    paths : list of pathlib.Path
        The absolute path of each row's image.

    Raises
    ------
    FileNotFoundError
        If the CSV or any listed image is missing (the message lists the rows).
    ValueError
        If the path column is absent, the manifest is empty, or a row has no path.
    TypeError
        If ``manifest`` is neither a path nor a DataFrame.

    Examples
    --------
    >>> import tempfile
    >>> import numpy as np
    >>> from cellgen.io import read_manifest, save_cells
    >>> folder = tempfile.mkdtemp()
    >>> _ = save_cells(f"{folder}/cells", np.zeros((2, 3, 8, 8), "uint8"))
    >>> table, paths = read_manifest(f"{folder}/cells/manifest.csv")
    >>> len(table), all(p.is_absolute() for p in paths)
    (2, True)
    """
    table, root, source = _read_table(manifest, root, path_column)
    return table, _resolve_paths(table, Path(root).absolute(), path_column, source)


def _out_of_range(image: np.ndarray, dtype: np.dtype) -> str | None:
    """Why ``image`` cannot be cast to the integer ``dtype`` without wrapping, or None.

    numpy's ``astype`` wraps integers around (300 becomes 44 in uint8) and turns
    NaN or too large floats into arbitrary integers, with at most a warning; a
    cell read that way looks like data. Floating-point targets are not checked:
    numpy warns when a value overflows to infinity, and a value that fits loses
    only precision.
    """
    dtype = np.dtype(dtype)
    if dtype.kind not in "iu" or np.can_cast(image.dtype, dtype, "safe"):
        return None
    info = np.iinfo(dtype)
    lo, hi = image.min(), image.max()
    # Compared as Python numbers, which are exact for every integer and float.
    lo, hi = (int(v) if image.dtype.kind in "iub" else float(v) for v in (lo, hi))
    if lo >= info.min and hi <= info.max:  # False for NaN
        return None
    return (f"holds values from {lo} to {hi}, which dtype={dtype.name} cannot hold "
            f"({info.min} to {info.max}); pass a dtype that holds them, or dtype=None to keep "
            f"the file's type ({image.dtype})")


def _add_note(exc: BaseException, note: str) -> None:
    if hasattr(exc, "add_note"):  # Python 3.11+
        exc.add_note(note)


def _preprocess(cells, rows, preprocessor, dtype):
    """Apply a fresh clone of ``preprocessor`` to each group of equally shaped cells."""
    groups = defaultdict(list)
    for k, cell in enumerate(cells):
        groups[cell.shape].append(k)
    out = [None] * len(cells)
    for shape, members in groups.items():
        batch = np.stack([cells[k] for k in members])
        try:
            # A clone per group: the caller's object stays unfitted and threads
            # never share a fitted state.
            result = np.asarray(clone(preprocessor, safe=False).fit_transform(batch))
        except Exception as exc:
            _add_note(exc, "(raised by the preprocessor on manifest rows "
                           f"{_listing(rows[k] for k in members)})")
            raise
        if result.ndim < 3 or result.shape[0] != len(members):
            raise ValueError(
                f"The preprocessor turned {len(members)} cells of shape {shape} into an "
                f"array of shape {result.shape}; it must return one (C, [Z,] Y, X) image "
                "per cell."
            )
        if dtype is not None:
            problem = _out_of_range(result, dtype)
            if problem is not None:
                raise ValueError(
                    f"The preprocessor's output for manifest rows "
                    f"{_listing(rows[k] for k in members)} {problem}."
                )
            result = result.astype(dtype, copy=False)
        for k, image in zip(members, result):
            out[k] = image
    return out


def _read_batch(rows, paths, channels, preprocessor, dtype):
    """Read the cells of some manifest rows: a list of (row, image, info) triples."""
    cells, infos = [], []
    for row, path in zip(rows, paths):
        try:
            image, info = read_image(path, channels=channels)
        except (FileNotFoundError, ValueError, TypeError) as exc:
            raise type(exc)(f"Manifest row {row}: {exc}") from exc
        if dtype is not None:
            problem = _out_of_range(image, dtype)
            if problem is not None:
                raise ValueError(f"Manifest row {row} ('{path}') {problem}.")
            image = image.astype(dtype, copy=False)
        cells.append(image)
        infos.append(info)
    if preprocessor is not None:
        cells = _preprocess(cells, rows, preprocessor, dtype)
    return list(zip(rows, cells, infos))


class _Stacker:
    """Gathers cells into one array and checks that they agree.

    ``allocate(shape, dtype)`` makes the output when the first cell arrives (in
    memory for load_manifest, a memmap for cache_manifest). Shape disagreements
    are collected over all rows so that the error can say which shape is the
    usual one and which rows are the exceptions.
    """

    def __init__(self, n_rows, allocate, source, dtype):
        self.n_rows, self.allocate, self.source, self.dtype = n_rows, allocate, source, dtype
        self.out = None
        self.shapes = {}
        self.first = None
        self.pixel_sizes = set()

    def add(self, row, image, info):
        names = info["channel_names"]
        if len(names) != image.shape[0]:  # the preprocessor changed the channels
            names = [f"ch{i}" for i in range(image.shape[0])]
        if self.first is None:
            self.first = (row, info["path"], names)
            self.out = self.allocate((self.n_rows,) + image.shape, self.dtype or image.dtype)
        elif names != self.first[2]:
            first_row, first_path, first_names = self.first
            raise ValueError(
                f"Channel names differ between files: manifest row {first_row} "
                f"('{first_path}') has {first_names} but row {row} ('{info['path']}') has "
                f"{names}. Pass channels= a list of names to read the same channels, in "
                "the same order, from every file."
            )
        if self.dtype is None and not np.can_cast(image.dtype, self.out.dtype, "safe"):
            raise ValueError(
                f"Manifest row {row} ('{info['path']}') holds {image.dtype} pixels but earlier "
                f"files hold {self.out.dtype}; pass dtype= to convert them all to one type."
            )
        self.pixel_sizes.add(tuple(info["pixel_size"]))
        self.shapes[row] = image.shape
        if image.shape == self.out.shape[1:]:
            self.out[row] = image

    def finish(self):
        counts = Counter(self.shapes.values())
        if len(counts) > 1:
            (common, n_common), *others = counts.most_common()
            parts = []
            for shape, count in others[:_MAX_LISTED]:
                rows = [r for r, s in self.shapes.items() if s == shape]
                parts.append(f"{count} row(s) have shape {shape} (rows {_listing(rows)})")
            raise ValueError(
                f"The cells listed in {self.source} do not all have the same shape: "
                f"{n_common} rows have shape {common} (the most common), but "
                + "; ".join(parts)
                + ". Cells must share one shape to be stacked: pass preprocessor= a "
                "transformer that makes them uniform, for example "
                f"cellgen.preprocessing.PadCrop({tuple(common[1:])}) to pad or crop every "
                "cell to the most common size."
            )
        return self.out

    def attrs(self):
        names = self.first[2]
        if len(self.pixel_sizes) == 1:
            pixel_size = next(iter(self.pixel_sizes))
        else:
            warnings.warn(
                f"The files listed in {self.source} declare different pixel sizes "
                f"({sorted(map(str, self.pixel_sizes))}); metadata.attrs['pixel_size'] is "
                "set to None.", UserWarning, stacklevel=3)
            pixel_size = None
        return {"channel_names": list(names), "pixel_size": pixel_size}


def _read_into(stacker, paths, *, channels, preprocessor, dtype, n_jobs, chunk_size, verbose):
    """Read ``paths`` in rounds of ``chunk_size`` rows, feeding ``stacker`` in row order."""
    n = len(paths)
    n_workers = max(1, effective_n_jobs(n_jobs))
    with Parallel(n_jobs=n_jobs, prefer=_PREFER, return_as="generator") as parallel, \
            tqdm(total=n, unit="cell", desc="Reading cells", disable=not verbose) as bar:
        for start in range(0, n, chunk_size):
            stop = min(start + chunk_size, n)
            # Several rows per task: one file takes about a millisecond, too
            # little to pay for a task each.
            size = max(1, math.ceil((stop - start) / (4 * n_workers)))
            tasks = (
                delayed(_read_batch)(list(range(i, min(i + size, stop))),
                                     paths[i:min(i + size, stop)], channels, preprocessor, dtype)
                for i in range(start, stop, size)
            )
            for batch in parallel(tasks):
                for item in batch:
                    stacker.add(*item)
                bar.update(len(batch))
    return stacker.finish()


def load_manifest(manifest, *, root=None, path_column="path", channels=None, preprocessor=None,
                  dtype="float32", n_jobs=None, verbose=False) -> tuple[np.ndarray, pd.DataFrame]:
    """Read the cells listed in a manifest into one array, with the table as metadata.

    Each row of the manifest names one image file (read by :func:`read_image`)
    holding one cell ``(C, [Z,] Y, X)``; the other columns are carried along as
    metadata. All cells must have the same channels and, after the optional
    ``preprocessor``, the same shape.

    Parameters
    ----------
    manifest : str, path-like or pandas.DataFrame
        A CSV file or a table with one row per cell. A leading ``~`` in its
        path is expanded to the home folder.
    root : str or path-like, default=None
        Folder that relative paths are resolved against. Defaults to the CSV
        file's folder, or to the current directory for a DataFrame. A leading
        ``~`` is expanded.
    path_column : str, default="path"
        Column holding the image paths. A leading ``~`` that names a home
        folder (``~/...``, ``~user/...``) is expanded; other relative paths are
        taken from ``root``.
    channels : str, int or list of str or int, default=None
        Channels to read from every file, by name or index (see
        :func:`read_image`); ``None`` reads all of them.
    preprocessor : object with ``fit_transform``, default=None
        Applied to groups of equally shaped cells ``(k, C, [Z,] Y, X)`` before
        stacking, for example an unfitted :class:`~sklearn.pipeline.Pipeline` of
        cellgen's per-cell preprocessing transformers that pads or crops every
        cell to one size. It is cloned for each group, so it must not need to
        see all cells at once.
    dtype : str, numpy dtype or None, default="float32"
        Data type of the returned array; cells are converted to it before the
        preprocessor (and the preprocessor's output after it). ``None`` keeps
        the files' type. An integer type must hold every value it receives:
        a cell with values outside its range (300 for ``"uint8"``, a negative
        value for an unsigned type, NaN) raises a ValueError instead of being
        wrapped around as :meth:`numpy.ndarray.astype` would. Fractions are
        truncated towards zero, as by ``astype``.
    n_jobs : int, default=None
        Number of threads reading files (``None`` means 1 unless in a
        :func:`joblib.parallel_config` context; -1 means all cores).
    verbose : bool, default=False
        Whether to show a progress bar.

    Returns
    -------
    X : ndarray of shape (n_cells, n_channels, [Z,] Y, X)
        The cells, in manifest order.
    metadata : pandas.DataFrame
        The manifest rows with a fresh index ``0 .. n_cells - 1``. Its
        ``attrs["channel_names"]`` holds the channel names (list of str) and
        ``attrs["pixel_size"]`` the files' pixel size in micrometres, ``(Z, Y,
        X)`` or ``(Y, X)`` (None if the files disagree; it describes the files,
        not the output of a preprocessor that rescales).

    Raises
    ------
    FileNotFoundError
        If the manifest or any image is missing; the message lists up to five
        missing files with their row numbers (counted from 0, as in
        ``metadata``) and the total.
    ValueError
        If the manifest is empty or lacks ``path_column``, a file cannot be read
        (the message names the file and its row), the files' channel names
        differ, the cells' shapes differ (the message gives the most common
        shape and the rows with other shapes), or an integer ``dtype`` cannot
        hold a cell's values (the message names the row and the range).

    See Also
    --------
    cache_manifest : The same array as a memory map on disk, for collections
        larger than memory.
    save_cells : Write cells and a manifest that this function reads back.

    Examples
    --------
    >>> import tempfile, numpy as np, pandas as pd
    >>> from pathlib import Path
    >>> from cellgen.io import load_manifest, write_ome_tiff
    >>> folder = Path(tempfile.mkdtemp())
    >>> for i in range(3):
    ...     write_ome_tiff(folder / f"c{i}.ome.tif", np.full((2, 8, 8), i, dtype=np.uint16),
    ...                    channel_names=["DNA", "membrane"])
    >>> table = pd.DataFrame({"path": [f"c{i}.ome.tif" for i in range(3)],
    ...                       "label": ["a", "b", "a"]})
    >>> table.to_csv(folder / "manifest.csv", index=False)
    >>> X, metadata = load_manifest(folder / "manifest.csv")
    >>> X.shape, X.dtype, metadata.attrs["channel_names"]
    ((3, 2, 8, 8), dtype('float32'), ['DNA', 'membrane'])
    >>> metadata["label"].tolist()
    ['a', 'b', 'a']
    """
    table, root, source = _read_table(manifest, root, path_column)
    paths = _resolve_paths(table, root, path_column, source)
    dtype = None if dtype is None else np.dtype(dtype)
    stacker = _Stacker(len(paths), lambda shape, dt: np.empty(shape, dtype=dt), source, dtype)
    X = _read_into(stacker, paths, channels=channels, preprocessor=preprocessor, dtype=dtype,
                   n_jobs=n_jobs, chunk_size=_LOAD_CHUNK, verbose=verbose)
    table.attrs.update(stacker.attrs())
    return X, table
