"""Embed and score a collection too large for memory, one chunk of the manifest at a time.

:func:`map_manifest` reads the cells of a manifest ``chunk_size`` rows at a time
with :func:`cellgen.io.load_manifest`, applies a method of a fitted model to each
chunk in parallel worker processes (joblib) or tasks (Dask), and gathers the
per-cell results in manifest order, in memory or in a ``.npy`` file. Only the
chunks being worked on are held as images, so the collection never has to fit
in memory, only its results.
"""

from __future__ import annotations

import contextlib
import inspect
import numbers
import os
import uuid
from pathlib import Path

import numpy as np
from joblib import Parallel, delayed, effective_n_jobs
from sklearn.frozen import FrozenEstimator
from sklearn.pipeline import Pipeline
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted
from tqdm.auto import tqdm

from ..io import load_manifest, read_manifest

__all__ = ["map_manifest"]

_BACKENDS = ("joblib", "dask")
# Methods that take images first but do not return one result per cell, or
# that change the model.
_NOT_PER_CELL = {"fit", "fit_transform", "fit_predict", "partial_fit", "score", "save", "load"}


def _per_cell_methods(estimator) -> list[str]:
    """Public methods of ``estimator`` whose first parameter is the images ``X``."""
    names = []
    for name in dir(type(estimator)):
        if name.startswith(("_", "get_", "set_")) or name in _NOT_PER_CELL:
            continue
        # Properties such as ``history_`` compute things; never evaluate them here.
        if isinstance(inspect.getattr_static(type(estimator), name, None), property):
            continue
        try:
            attr = getattr(estimator, name)  # available_if methods raise AttributeError
        except AttributeError:
            continue
        if not callable(attr) or inspect.isclass(attr):
            continue
        try:
            params = list(inspect.signature(attr).parameters.values())
        except (TypeError, ValueError):
            continue
        if params and params[0].name == "X" and params[0].kind in (
                inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD):
            names.append(name)
    return sorted(names)


def _split_model(model):
    """The transformers before the final estimator (or None) and the final estimator."""
    if isinstance(model, Pipeline):
        final = model.steps[-1][1]
        if final is None or final == "passthrough":
            raise ValueError("model is a Pipeline without a final estimator; end it with a "
                             "fitted cellgen estimator.")
        return (model[:-1] if len(model.steps) > 1 else None), final
    return None, model


def _add_note(exc: BaseException, note: str) -> None:
    if hasattr(exc, "add_note"):  # Python 3.11+
        exc.add_note(note)


class _Job:
    """What every chunk shares; pickled once per task to the workers."""

    def __init__(self, head, final, method, path_column, channels, preprocessor):
        self.head, self.final, self.method = head, final, method
        self.path_column = path_column
        self.channels, self.preprocessor = channels, preprocessor


def _map_chunk(job, rows, start, kwargs, parent_pid):
    """Read one chunk of manifest rows and apply the model's method to it."""
    # In a worker process every core is already busy with a chunk of its own;
    # torch's own threads on top would only compete. Threads of the calling
    # process (the Dask threaded scheduler) share its setting and are left alone.
    in_worker = os.getpid() != parent_pid
    if in_worker:
        import torch

        previous = torch.get_num_threads()
        torch.set_num_threads(1)
    try:
        stop = start + len(rows) - 1
        try:
            X, _ = load_manifest(rows, path_column=job.path_column,
                                 channels=job.channels, preprocessor=job.preprocessor,
                                 dtype="float32")
        except Exception as exc:
            _add_note(exc, f"(map_manifest was reading manifest rows {start}-{stop}; the row "
                           f"numbers above count from {start})")
            raise
        try:
            if job.head is not None:
                X = job.head.transform(X)
            return getattr(job.final, job.method)(X, **kwargs)
        except Exception as exc:
            _add_note(exc, f"(raised by {type(job.final).__name__}.{job.method} on manifest "
                           f"rows {start}-{stop})")
            raise
    finally:
        if in_worker:
            torch.set_num_threads(previous)


def _joblib_results(job, tasks, n_jobs):
    parent = os.getpid()
    with Parallel(n_jobs=n_jobs, return_as="generator") as parallel:
        yield from parallel(delayed(_map_chunk)(job, rows, start, kwargs, parent)
                            for rows, start, kwargs in tasks)


def _dask_results(job, tasks, n_jobs):
    try:
        import dask
    except ImportError as exc:
        raise ImportError(
            'backend="dask" needs Dask, which is not installed; install it with '
            'pip install "cellgen[dask]", or use backend="joblib".'
        ) from exc
    parent = os.getpid()
    # A name spares Dask from hashing the whole model to make one up.
    shared = dask.delayed(job, name=f"cellgen-map-manifest-{uuid.uuid4().hex}")
    run = dask.delayed(_map_chunk, pure=False)
    compute_kwargs = {} if n_jobs is None else {"num_workers": effective_n_jobs(n_jobs)}
    # Rounds of a few tasks per worker: results are gathered in order and at most
    # one round of chunks is ever scheduled, which bounds the images in memory.
    per_round = 2 * (effective_n_jobs(n_jobs) if n_jobs is not None else (os.cpu_count() or 1))
    for first in range(0, len(tasks), per_round):
        batch = [run(shared, rows, start, kwargs, parent)
                 for rows, start, kwargs in tasks[first:first + per_round]]
        yield from dask.compute(*batch, **compute_kwargs)


class _Gatherer:
    """Puts each chunk's results in place, allocating the output on the first chunk."""

    def __init__(self, n_rows, out, label):
        self.n_rows, self.out, self.label = n_rows, out, label
        self.arrays = None
        self.is_tuple = False
        self.tmp = None

    def _parts(self, result, start, stop):
        is_tuple = isinstance(result, tuple)
        parts = [np.asarray(r) for r in (result if is_tuple else (result,))]
        for part in parts:
            if part.ndim == 0 or len(part) != stop - start:
                raise ValueError(
                    f"{self.label} returned an array of shape {part.shape} for the "
                    f"{stop - start} cells of manifest rows {start}-{stop - 1}; map_manifest "
                    "needs a method that returns one row (or one value) per cell."
                )
        return is_tuple, parts

    def add(self, result, start, stop):
        is_tuple, parts = self._parts(result, start, stop)
        if self.arrays is None:
            if is_tuple and self.out is not None:
                raise ValueError(
                    f"{self.label} returns a tuple of {len(parts)} arrays but out= holds one "
                    "array; pass out=None to get the tuple in memory, or map a method that "
                    "returns a single array (for example transform instead of encode)."
                )
            self.is_tuple = is_tuple
            shapes = [(self.n_rows,) + p.shape[1:] for p in parts]
            if self.out is None:
                self.arrays = [np.empty(s, dtype=p.dtype) for s, p in zip(shapes, parts)]
            else:
                self.tmp = self.out.with_name(f".{self.out.name}.tmp-{uuid.uuid4().hex[:12]}")
                self.arrays = [np.lib.format.open_memmap(self.tmp, mode="w+",
                                                         dtype=parts[0].dtype, shape=shapes[0])]
        if is_tuple != self.is_tuple or len(parts) != len(self.arrays) or any(
                p.shape[1:] != a.shape[1:] for p, a in zip(parts, self.arrays)):
            raise ValueError(
                f"{self.label} returned results of different shapes for different chunks "
                f"(rows {start}-{stop - 1} gave {[p.shape for p in parts]}, earlier rows "
                f"{[a.shape[1:] for a in self.arrays]} per cell)."
            )
        for array, part in zip(self.arrays, parts):
            array[start:stop] = part

    def finish(self):
        if self.out is None:
            return tuple(self.arrays) if self.is_tuple else self.arrays[0]
        self.arrays[0].flush()
        self.arrays = None  # close the memory map before the rename
        os.replace(self.tmp, self.out)
        self.tmp = None
        return np.load(self.out, mmap_mode="r")

    def discard(self):
        self.arrays = None
        if self.tmp is not None:
            with contextlib.suppress(FileNotFoundError):
                self.tmp.unlink()


def _check_out(out):
    if out is None:
        return None
    if not isinstance(out, (str, os.PathLike)):
        raise TypeError(f"out must be None or the path of a .npy file; got "
                        f"{type(out).__name__}.")
    out = Path(os.path.expanduser(out))  # "~" as in a shell, as cellgen.io does
    if out.suffix.lower() != ".npy":
        raise ValueError(f"out must be the path of a .npy file; got '{out}'.")
    if not out.parent.is_dir():
        raise FileNotFoundError(f"The folder of out, '{out.parent}', does not exist.")
    if out.is_dir():  # found now, not after the last chunk
        raise IsADirectoryError(f"out '{out}' is a folder; give the path of a .npy file.")
    return out


def map_manifest(model, manifest, *, method="transform", root=None, path_column="path",
                 channels=None, preprocessor=None, chunk_size=1024, n_jobs=None,
                 backend="joblib", out=None, verbose=False, **method_kwargs):
    """Apply a fitted model to every cell of a manifest, one chunk of rows at a time.

    The manifest's rows are split into chunks of ``chunk_size``. Each chunk is
    read with :func:`cellgen.io.load_manifest` and passed to ``method`` of the
    model, in parallel worker processes; the results come back in manifest
    order. Only the chunks being worked on (about ``n_jobs`` of them) are held
    as images, so collections far larger than memory can be embedded or
    scored. With ``out=`` the results go to a ``.npy`` file chunk by chunk and
    need not fit in memory either.

    Parameters
    ----------
    model : estimator
        A fitted :class:`~cellgen.ReferenceVAE`,
        :class:`~cellgen.ConditionalStructureVAE` or
        :class:`~cellgen.StatisticalCell`, or a fitted
        :class:`~sklearn.pipeline.Pipeline` ending in one; the pipeline's other
        steps ``transform`` each chunk before the final step's ``method``. It
        is pickled to the worker processes.
    manifest : str, path-like or pandas.DataFrame
        A CSV file or a table with one row per cell, as taken by
        :func:`~cellgen.io.load_manifest`.
    method : str, default="transform"
        Method of the model (of the pipeline's final step) to apply: one that
        takes the images first and returns one row or one value per cell, such
        as ``"transform"``, ``"score_samples"``, ``"encode"`` or ``"impute"``.
        A method returning a tuple of arrays (``"encode"``) gives a tuple of
        arrays.
    root : str or path-like, default=None
        Folder that relative image paths are resolved against. Defaults to the
        CSV file's folder, or to the current directory for a DataFrame.
    path_column : str, default="path"
        Column holding the image paths.
    channels : str, int or list of str or int, default=None
        Channels to read from every file (see :func:`~cellgen.io.read_image`);
        ``None`` reads all of them.
    preprocessor : object with ``fit_transform``, default=None
        Applied to the cells of each chunk as they are read (see
        :func:`~cellgen.io.load_manifest`), for example a pipeline of
        :mod:`cellgen.preprocessing` transformers that pads or crops every
        cell to the model's input size. It must act on each cell on its own.
    chunk_size : int, default=1024
        Number of manifest rows read and processed together.
    n_jobs : int, default=None
        Number of chunks processed at once. With ``backend="joblib"``, the
        number of loky worker processes (``None`` means 1 unless in a
        :func:`joblib.parallel_config` context; -1 means all cores), each
        running torch on one thread. With ``backend="dask"``, the number of
        workers of the local scheduler (``None`` leaves Dask's default or the
        active distributed client in charge).
    backend : {"joblib", "dask"}, default="joblib"
        What runs the chunks. ``"dask"`` needs the optional ``dask`` package
        (``pip install "cellgen[dask]"``) and uses :func:`dask.delayed` tasks
        with the current Dask scheduler.
    out : str, path-like or None, default=None
        Path of a ``.npy`` file to write the results to, chunk by chunk, instead
        of returning them in memory. It is written under a temporary name beside
        it and renamed when complete (replacing any file already there), so a
        failure leaves neither a partial file nor the temporary one. Not for
        methods that return a tuple of arrays.
    verbose : bool, default=False
        Whether to show a progress bar counting cells.
    **method_kwargs
        Keyword arguments of ``method``. A string that names a column of the
        manifest stands for that column: each chunk gets the column's values
        for its rows (``structures="structure"`` gives every cell its own
        label). Any other value is passed unchanged to every chunk, including a
        string that is not a column (a single label). An integer or
        :class:`~numpy.random.RandomState` ``random_state`` is turned into one
        seed per chunk, drawn from it, so that chunks get independent draws
        and a fixed seed gives the same results for the same ``chunk_size``.

    Returns
    -------
    result : ndarray, numpy.memmap or tuple of ndarray
        The method's results for all cells in manifest order, of shape
        ``(n_cells, ...)``; with ``out=``, the ``.npy`` file opened read-only
        as a memory map.

    Raises
    ------
    ValueError
        If ``method`` is not a per-cell method of the model (the message lists
        those it has), ``chunk_size`` is below 1, ``backend`` is unknown, the
        manifest is empty or lacks ``path_column`` (the message lists its
        columns), or the method does not return one row per cell.
    TypeError
        If ``method_kwargs`` holds an argument that ``method`` does not take
        (the message lists those it takes), or an argument has the wrong type.
    FileNotFoundError
        If the manifest or any image it lists is missing; this is checked
        before any chunk is processed.
    ImportError
        If ``backend="dask"`` and Dask is not installed.

    See Also
    --------
    cellgen.io.load_manifest : Read a whole manifest into memory.
    cellgen.io.cache_manifest : Cache the images of a manifest on disk.

    Notes
    -----
    Methods whose results depend on random draws seeded once per call, such
    as ``score_samples`` (the ELBO averaged over draws of ``z``), give each
    cell the draw its position in its chunk gets: the results equal the
    method applied to each chunk in turn, are reproducible for a given
    ``chunk_size``, and differ from one call on all cells by the Monte Carlo
    error of the ELBO. Deterministic methods such as ``transform`` agree with
    one call on all cells up to float rounding.

    A model on a GPU should be used with ``n_jobs=1``: worker processes would
    each need the GPU.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from cellgen import ReferenceVAE
    >>> from cellgen.analysis import map_manifest
    >>> from cellgen.datasets import make_cells
    >>> from cellgen.io import save_cells
    >>> X, labels, _ = make_cells(20, shape=(16, 16), random_state=0)
    >>> folder = Path(tempfile.mkdtemp()) / "cells"
    >>> _ = save_cells(folder, X[:, :2], channel_names=["membrane", "DNA"])
    >>> model = ReferenceVAE(n_latent=2, widths=(8,), max_epochs=1, batch_size=8,
    ...                      device="cpu", random_state=0).fit(X[:, :2])
    >>> Z = map_manifest(model, folder / "manifest.csv", chunk_size=8)
    >>> Z.shape
    (20, 2)
    >>> elbo = map_manifest(model, folder / "manifest.csv", method="score_samples",
    ...                     chunk_size=8, out=folder.parent / "elbo.npy")
    >>> elbo.shape
    (20,)
    """
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, numbers.Integral):
        raise TypeError(f"chunk_size must be an int, got {type(chunk_size).__name__}.")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1, got {chunk_size}.")
    if backend not in _BACKENDS:
        raise ValueError(f"backend must be one of {list(_BACKENDS)}, got {backend!r}.")
    head, final = _split_model(model)
    # A FrozenEstimator hands its methods on to the model it wraps without defining
    # them: look them up on that model.
    allowed = _per_cell_methods(final.estimator if isinstance(final, FrozenEstimator)
                                else final)
    if not isinstance(method, str):
        raise TypeError(f"method must be the name of a method, one of {allowed}; got "
                        f"{type(method).__name__}.")
    if method not in allowed:
        raise ValueError(
            f"method={method!r} is not a method of {type(final).__name__} that takes images "
            f"and returns one result per cell; choose one of {allowed}."
        )
    check_is_fitted(model)
    fn = getattr(final, method)
    signature = inspect.signature(fn)
    try:
        signature.bind(None, **method_kwargs)
    except TypeError:
        params = [p for p in signature.parameters if p != "X"]
        unknown = sorted(set(method_kwargs) - set(params))
        if unknown:
            takes = f"it takes {params}" if params else "it takes no other arguments"
            raise TypeError(f"{type(final).__name__}.{method} does not take the keyword "
                            f"argument(s) {unknown}; {takes}.") from None
        needed = [name for name, p in signature.parameters.items()
                  if name != "X" and p.default is p.empty and name not in method_kwargs
                  and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
        raise TypeError(f"{type(final).__name__}.{method} needs the argument(s) {needed}; "
                        "pass them as keywords of map_manifest.") from None
    out = _check_out(out)

    # Every path is checked before any work, so a long run does not fail at its
    # last chunk; chunks then carry absolute paths, whatever the workers' folder.
    table, paths = read_manifest(manifest, root=root, path_column=path_column)
    table = table.assign(**{path_column: [str(p) for p in paths]})
    n = len(table)
    starts = list(range(0, n, chunk_size))

    by_column = {k: v for k, v in method_kwargs.items()
                 if isinstance(v, str) and v in table.columns}
    constant = {k: v for k, v in method_kwargs.items() if k not in by_column}
    not_columns = {k: v for k, v in constant.items() if isinstance(v, str)}
    seeds = None
    if constant.get("random_state") is not None:
        # The same seed in every chunk would repeat the same draws chunk after chunk.
        seeds = check_random_state(constant["random_state"]).randint(
            np.iinfo(np.int32).max, size=len(starts))

    def tasks():
        for k, start in enumerate(starts):
            stop = min(start + chunk_size, n)
            kwargs = dict(constant)
            kwargs.update({key: table[col].to_numpy()[start:stop]
                           for key, col in by_column.items()})
            if seeds is not None:
                kwargs["random_state"] = int(seeds[k])
            # Only the rows of the chunk travel, never the whole manifest.
            yield table.iloc[start:stop], start, kwargs

    job = _Job(head, final, method, path_column, channels, preprocessor)
    label = f"{type(final).__name__}.{method}"
    gather = _Gatherer(n, out, label)
    results = (_joblib_results(job, tasks(), n_jobs) if backend == "joblib"
               else _dask_results(job, list(tasks()), n_jobs))
    try:
        with tqdm(total=n, unit="cell", desc=label, disable=not verbose) as bar:
            for start, result in zip(starts, results):
                stop = min(start + chunk_size, n)
                gather.add(result, start, stop)
                bar.update(stop - start)
        return gather.finish()
    except BaseException as exc:
        gather.discard()
        if not_columns and isinstance(exc, Exception):
            listed = ", ".join(f"{k}={v!r}" for k, v in not_columns.items())
            _add_note(exc, f"({listed} named no column of the manifest, so the value was passed "
                           f"as is to every chunk; the columns are {list(table.columns)})")
        raise
    finally:
        with contextlib.suppress(Exception):
            results.close()
