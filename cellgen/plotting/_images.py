"""Multichannel cell images as RGB composites and figure grids.

Everything here draws on :class:`matplotlib.figure.Figure` objects created
without pyplot, so figures can be made in a loop (one per epoch, one per
structure) without pyplot's global registry keeping them alive.
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Sequence

import numpy as np
from matplotlib.colors import hsv_to_rgb, to_rgb
from matplotlib.figure import Figure

__all__ = [
    "project",
    "composite",
    "plot_image_grid",
    "plot_reconstructions",
    "plot_channels",
]

#: Colours of membrane, DNA and structure in the Statistical Cell figures; the
#: tail of the list keeps further channels distinguishable from these three.
_PALETTE = (
    (1.0, 0.0, 1.0),  # magenta: membrane
    (0.0, 1.0, 1.0),  # cyan: DNA
    (1.0, 1.0, 0.0),  # yellow: structure
    (1.0, 0.0, 0.0),
    (0.0, 1.0, 0.0),
    (0.0, 0.0, 1.0),
    (1.0, 0.5, 0.0),
    (0.5, 0.0, 1.0),
)
_GREY = (1.0, 1.0, 1.0)
_MAX_COLS = 8


# --------------------------------------------------------------------------- #
# validation helpers
# --------------------------------------------------------------------------- #
def _as_array(images, name: str, ndims: Sequence[int], what: str) -> np.ndarray:
    """Return ``images`` as a real, non-empty ndarray with one of ``ndims`` axes."""
    if images is None:
        raise TypeError(f"{name} must be an array of images, got None.")
    # Duck-typed so that torch tensors work without importing torch here.
    if hasattr(images, "detach") and hasattr(images, "cpu"):
        images = images.detach().cpu()
        if str(images.dtype) == "torch.bfloat16":  # numpy has no bfloat16
            images = images.float()
        images = images.numpy()
    try:
        arr = np.asarray(images)
    except Exception as exc:  # ragged nested lists and the like
        raise ValueError(f"{name} could not be converted to an array: {exc}") from exc
    if arr.dtype == bool:
        arr = arr.astype(np.float32)
    if arr.dtype.kind not in "iuf":
        raise TypeError(
            f"{name} must be a real numeric array; got dtype {arr.dtype} "
            f"(shape {arr.shape})."
        )
    if arr.ndim not in ndims:
        raise ValueError(
            f"{name} must be shaped {what}; got {arr.ndim} axes with shape "
            f"{arr.shape}."
        )
    if arr.size == 0:
        raise ValueError(f"{name} is empty: shape {arr.shape}.")
    return arr


def _check_int(value, name: str, *, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {value!r}.")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}.")
    return int(value)


def _check_clip(clip) -> tuple[float, float] | None:
    if clip is None:
        return None
    try:
        lo, hi = (float(v) for v in clip)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"clip must be None or a pair (low, high) of numbers, got {clip!r}."
        ) from exc
    if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
        raise ValueError(
            f"clip must be a finite pair with low < high, got {clip!r}."
        )
    return lo, hi


def _check_channels(channels, n_channels: int) -> list[int] | None:
    """Validate a channel selection against ``n_channels`` channels."""
    if channels is None:
        return None
    if isinstance(channels, numbers.Integral) and not isinstance(channels, bool):
        channels = [channels]
    try:
        chosen = list(channels)
    except TypeError as exc:
        raise TypeError(
            f"channels must be an int or a sequence of ints, got {channels!r}."
        ) from exc
    if not chosen:
        raise ValueError("channels is empty; select at least one channel.")
    out = []
    for c in chosen:
        if isinstance(c, bool) or not isinstance(c, numbers.Integral):
            raise TypeError(f"channels must hold ints, got {c!r}.")
        if not -n_channels <= c < n_channels:
            raise ValueError(
                f"channels contains {c}, but the images have {n_channels} "
                f"channels (valid indices 0..{n_channels - 1})."
            )
        out.append(int(c) % n_channels)
    return out


def _per_channel(values, name: str, n_channels: int, channels: list[int] | None):
    """Match a per-channel list to the selected channels.

    A list may describe every channel of the input (it is then subset by
    ``channels``) or only the selected ones, so that the same ``colors`` or
    names work with and without a selection.
    """
    if isinstance(values, str) or not isinstance(values, Sequence):
        try:
            values = list(values)
        except TypeError as exc:
            raise TypeError(
                f"{name} must be a sequence with one entry per channel, got "
                f"{values!r}."
            ) from exc
    values = list(values)
    n_selected = n_channels if channels is None else len(channels)
    # One entry per input channel is read in the input's order, also when the
    # selection reorders every channel (names from the data's metadata).
    if channels is not None and len(values) == n_channels:
        return [values[c] for c in channels]
    if len(values) == n_selected:
        return values
    expected = (
        f"{n_selected}" if channels is None
        else f"{n_selected} (the selected channels) or {n_channels} (all channels)"
    )
    raise ValueError(
        f"{name} has {len(values)} entries but {expected} were expected, one per "
        "channel."
    )


def _default_colors(n_channels: int, channels: list[int] | None):
    # One channel on its own reads best in grey, whichever channel it is.
    if (channels is None and n_channels == 1) or (
        channels is not None and len(channels) == 1
    ):
        return [_GREY]
    # Past the palette, hues a golden-ratio step apart keep every channel distinct.
    full = [_PALETTE[i] if i < len(_PALETTE) else
            tuple(hsv_to_rgb((((i - len(_PALETTE)) * 0.618034 + 0.08) % 1.0, 0.8, 1.0)))
            for i in range(n_channels)]
    return full if channels is None else [full[c] for c in channels]


def _resolve_colors(colors, n_channels: int, channels: list[int] | None = None):
    """Return an ``(n_selected, 3)`` float array of RGB colours."""
    if colors is None:
        return np.asarray(_default_colors(n_channels, channels), dtype=np.float32)
    if isinstance(colors, str):
        # A single colour name would otherwise be split into letters.
        colors = [colors]
    chosen = _per_channel(colors, "colors", n_channels, channels)
    rgb = []
    for c in chosen:
        try:
            rgb.append(to_rgb(c))
        except (ValueError, TypeError) as exc:
            raise ValueError(
                f"colors contains {c!r}, which is not a matplotlib colour (an RGB "
                "tuple in [0, 1], a name or a hex string)."
            ) from exc
    return np.asarray(rgb, dtype=np.float32)


# --------------------------------------------------------------------------- #
# array operations
# --------------------------------------------------------------------------- #
def project(images, axis="z", method="max"):
    """Project 3D multichannel images onto a plane.

    Parameters
    ----------
    images : array-like of shape (n_cells, n_channels, Z, Y, X) or \
(n_cells, n_channels, Y, X)
        3D images, or 2D images (returned unchanged when ``axis="z"``).
    axis : {"z", "x"}, default="z"
        ``"z"`` gives the top view ``(n_cells, n_channels, Y, X)``; ``"x"``
        gives the side view ``(n_cells, n_channels, Z, Y)``.
    method : {"max", "mean"}, default="max"
        Maximum-intensity or mean-intensity projection.

    Returns
    -------
    projected : ndarray of shape (n_cells, n_channels, Y, X) or \
(n_cells, n_channels, Z, Y)
        The projection, with the dtype of ``images`` for ``"max"``. NaN voxels
        are left out (a column of NaNs stays NaN).

    Raises
    ------
    ValueError
        If ``images`` has neither 4 nor 5 axes or is empty, if ``axis`` or
        ``method`` is not one of the listed values, or if ``axis="x"`` is asked
        of 2D images.
    TypeError
        If ``images`` is not numeric.

    Examples
    --------
    >>> import numpy as np
    >>> from cellgen.plotting import project
    >>> images = np.zeros((2, 3, 8, 16, 24))
    >>> project(images).shape
    (2, 3, 16, 24)
    >>> project(images, axis="x").shape
    (2, 3, 8, 16)
    """
    if axis not in ("z", "x"):
        raise ValueError(f'axis must be "z" or "x", got {axis!r}.')
    if method not in ("max", "mean"):
        raise ValueError(f'method must be "max" or "mean", got {method!r}.')
    arr = _as_array(
        images,
        "images",
        (4, 5),
        "(n_cells, n_channels, Y, X) or (n_cells, n_channels, Z, Y, X)",
    )
    if arr.ndim == 4:
        if axis == "x":
            raise ValueError(
                'axis="x" (side view) needs 3D images shaped '
                f"(n_cells, n_channels, Z, Y, X); got 2D images of shape {arr.shape}."
            )
        return arr
    reduce_axis = 2 if axis == "z" else 4
    # A NaN voxel (a diverged reconstruction) must not blank its whole column;
    # only a column of NaNs stays NaN.
    with warnings.catch_warnings(), np.errstate(invalid="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        if method == "max":
            return np.nanmax(arr, axis=reduce_axis)
        return np.nanmean(arr, axis=reduce_axis)


def _scale_per_channel(arr: np.ndarray) -> np.ndarray:
    """Per-image, per-channel maxima shaped to broadcast against ``arr``."""
    spatial = tuple(range(2, arr.ndim))
    peak = np.nanmax(arr, axis=spatial, keepdims=True)
    # Empty channels stay black instead of dividing by zero.
    return np.where(peak > 0, peak, 1.0)


def composite(images, colors=None, clip=(0, 1), *, normalize=False):
    """Blend the channels of each image into one RGB image.

    3D images are first max-projected along z. Each channel is mapped through
    the display window ``clip`` to [0, 1], tinted by its colour, and the
    channels are added; the sum is clipped to [0, 1].

    Parameters
    ----------
    images : array-like of shape (n_cells, n_channels, Y, X) or \
(n_cells, n_channels, Z, Y, X)
        Multichannel images.
    colors : sequence of colours or None, default=None
        One matplotlib colour (RGB tuple in [0, 1], name or hex) per channel.
        ``None`` uses magenta, cyan, yellow for membrane, DNA and structure
        (and further colours for more channels), or grey for one channel.
    clip : tuple of (float, float) or None, default=(0, 1)
        Display window: intensities at or below ``clip[0]`` are black, at or
        above ``clip[1]`` full colour. ``None`` uses the intensities as they
        are.
    normalize : bool, default=False
        If True, divide each channel of each image by its own maximum before
        windowing, so dim channels stay visible; this hides differences in
        brightness between cells.

    Returns
    -------
    rgb : ndarray of shape (n_cells, Y, X, 3) and dtype float32
        Composites with values in [0, 1].

    Raises
    ------
    ValueError
        If ``images`` has the wrong number of axes or is empty, if ``colors``
        does not have one entry per channel or holds an invalid colour, or if
        ``clip`` is not an increasing pair.
    TypeError
        If ``images`` is not numeric.

    Examples
    --------
    >>> import numpy as np
    >>> from cellgen.plotting import composite
    >>> images = np.zeros((1, 3, 4, 4))
    >>> images[0, 0, 1, 1] = 1.0  # membrane only
    >>> composite(images)[0, 1, 1].tolist()
    [1.0, 0.0, 1.0]
    """
    arr = _as_array(
        images,
        "images",
        (4, 5),
        "(n_cells, n_channels, Y, X) or (n_cells, n_channels, Z, Y, X)",
    )
    window = _check_clip(clip)
    rgb_colors = _resolve_colors(colors, arr.shape[1])
    arr = project(arr, axis="z").astype(np.float32, copy=False)
    # NaNs from a diverging model should still show as a picture, not fail.
    arr = np.nan_to_num(arr, nan=0.0, posinf=np.finfo(np.float32).max, neginf=0.0)
    if normalize:
        arr = arr / _scale_per_channel(arr)
    if window is not None:
        lo, hi = window
        arr = np.clip((arr - lo) / (hi - lo), 0.0, 1.0)
    # (n, C, Y, X) x (C, 3) -> (n, Y, X, 3): each channel adds its tint.
    rgb = np.einsum("ncyx,ck->nyxk", arr, rgb_colors)
    return np.clip(rgb, 0.0, 1.0).astype(np.float32, copy=False)


# --------------------------------------------------------------------------- #
# figures
# --------------------------------------------------------------------------- #
def _blank(ax) -> None:
    # Ticks and frame go, but not the axis itself, so a row label set as the
    # y-label stays visible (``axis("off")`` would hide it too).
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


def _resolve_layout(arr: np.ndarray, spatial_ndim) -> tuple[bool, int]:
    """Return ``(is_grid, spatial_ndim)`` for an image array."""
    if spatial_ndim is None:
        if arr.ndim == 4:
            return False, 2
        if arr.ndim == 5:
            # Ambiguous with a (rows, cols, C, Y, X) 2D grid; 3D cells are what
            # cellgen's estimators produce, so they win, and the docstring says
            # how to ask for the other reading.
            return False, 3
        return True, 3
    if spatial_ndim not in (2, 3):
        raise ValueError(f"spatial_ndim must be 2, 3 or None, got {spatial_ndim!r}.")
    if arr.ndim == spatial_ndim + 2:
        return False, spatial_ndim
    if arr.ndim == spatial_ndim + 3:
        return True, spatial_ndim
    raise ValueError(
        f"images has {arr.ndim} axes (shape {arr.shape}), which does not fit "
        f"spatial_ndim={spatial_ndim}: expected {spatial_ndim + 2} axes "
        f"(n, C, ...) or {spatial_ndim + 3} axes (rows, cols, C, ...)."
    )


def _resolve_titles(titles, n_rows: int, n_cols: int, n_cells: int, grid: bool):
    """Flatten ``titles`` to one entry (or None) per cell, row-major."""
    if titles is None:
        return [None] * n_cells
    if isinstance(titles, str):
        raise TypeError("titles must be a sequence of strings, not a single string.")
    titles = list(titles)
    nested = (
        grid
        and len(titles) == n_rows
        and all(
            not isinstance(t, str) and isinstance(t, Sequence) and len(t) == n_cols
            for t in titles
        )
    )
    if nested:
        titles = [t for row in titles for t in row]
    if len(titles) != n_cells:
        shape = f"{n_rows} x {n_cols} nested or " if grid else ""
        raise ValueError(
            f"titles has {len(titles)} entries but there are {n_cells} images; "
            f"pass {shape}{n_cells} titles."
        )
    return [None if t is None else str(t) for t in titles]


def plot_image_grid(
    images,
    *,
    ncols=None,
    titles=None,
    row_labels=None,
    colors=None,
    channels=None,
    side_view=False,
    normalize=False,
    clip=(0, 1),
    ax_size=1.6,
    spatial_ndim=None,
    fig=None,
):
    """Draw a grid of multichannel cell images as RGB composites.

    Parameters
    ----------
    images : array-like
        Either a flat batch ``(n_cells, n_channels, [Z,] Y, X)``, laid out in
        rows of ``ncols``, or a grid ``(rows, cols, n_channels, [Z,] Y, X)``,
        laid out exactly as given. A 5-axis array is read as a flat batch of
        3D cells unless ``spatial_ndim=2``.
    ncols : int or None, default=None
        Cells per row for a flat batch; ``None`` means up to 8. For grid input
        it must be None or equal to ``cols``.
    titles : sequence of str or None, default=None
        One title per cell (row-major; for grid input also a nested
        ``rows x cols`` list). ``None`` entries leave a cell untitled.
    row_labels : sequence of str or None, default=None
        One label per row, written to the left of the row.
    colors : sequence of colours or None, default=None
        One colour per channel (of all channels or of the selected ones); see
        :func:`composite`. With one selected channel the default is grey.
    channels : int or sequence of int or None, default=None
        Indices of the channels to show; ``None`` shows all.
    side_view : bool, default=False
        For 3D images, draw under each top view (max over z) the side view
        (max over x, z upwards), as in the Statistical Cell figures.
    normalize : bool, default=False
        Scale each channel of each image by its own maximum; see
        :func:`composite`.
    clip : tuple of (float, float) or None, default=(0, 1)
        Display window of the intensities; see :func:`composite`.
    ax_size : float, default=1.6
        Width in inches of each cell's panel.
    spatial_ndim : {2, 3} or None, default=None
        Number of spatial axes, only needed to read a 5-axis array as a grid
        of 2D images ``(rows, cols, n_channels, Y, X)``.
    fig : matplotlib.figure.Figure or SubFigure or None, default=None
        Figure to draw into; ``None`` creates a new one sized to the grid.

    Returns
    -------
    fig : matplotlib.figure.Figure
        The figure (or the ``fig`` passed in). It is not shown; save it with
        ``fig.savefig``. Its axes are the cells in row-major order, each top
        view followed by its side view when ``side_view=True``.

    Raises
    ------
    ValueError
        If ``images`` has the wrong number of axes or is empty, if ``titles``,
        ``row_labels`` or ``colors`` have the wrong length, if ``channels``
        holds an index out of range, if ``ncols`` or ``ax_size`` are not
        positive, or if ``side_view=True`` is asked of 2D images.
    TypeError
        If ``images`` is not numeric or ``ncols`` is not an integer.

    Examples
    --------
    >>> import numpy as np
    >>> from cellgen.plotting import plot_image_grid
    >>> fig = plot_image_grid(np.random.rand(4, 3, 16, 16))
    >>> len(fig.axes)
    4
    >>> fig = plot_image_grid(np.random.rand(2, 3, 3, 8, 16, 16), side_view=True)
    >>> len(fig.axes)
    12
    """
    arr = _as_array(
        images,
        "images",
        (4, 5, 6),
        "(n_cells, n_channels, [Z,] Y, X) or (rows, cols, n_channels, [Z,] Y, X)",
    )
    grid, n_spatial = _resolve_layout(arr, spatial_ndim)
    if isinstance(ax_size, bool) or not isinstance(ax_size, numbers.Real):
        raise TypeError(f"ax_size must be a number of inches, got {ax_size!r}.")
    if not ax_size > 0:
        raise ValueError(f"ax_size must be positive, got {ax_size!r}.")
    if side_view and n_spatial != 3:
        raise ValueError(
            "side_view=True needs 3D images (..., n_channels, Z, Y, X); got 2D "
            f"images of shape {arr.shape}."
        )

    if grid:
        n_rows, n_cols = arr.shape[:2]
        if ncols is not None and _check_int(ncols, "ncols") != n_cols:
            raise ValueError(
                f"ncols={ncols} contradicts the grid input, which has {n_cols} "
                "columns; leave ncols as None for (rows, cols, C, ...) input."
            )
        flat = arr.reshape(n_rows * n_cols, *arr.shape[2:])
    else:
        flat = arr
        n_cols = min(len(flat), _MAX_COLS) if ncols is None else _check_int(
            ncols, "ncols"
        )
        n_rows = math.ceil(len(flat) / n_cols)
    n_cells = len(flat)
    n_channels = flat.shape[1]

    selected = _check_channels(channels, n_channels)
    rgb_colors = _resolve_colors(colors, n_channels, selected)
    if selected is not None:
        flat = flat[:, selected]
    cell_titles = _resolve_titles(titles, n_rows, n_cols, n_cells, grid)
    if row_labels is not None:
        if isinstance(row_labels, str):
            row_labels = [row_labels]
        row_labels = list(row_labels)
        if len(row_labels) != n_rows:
            raise ValueError(
                f"row_labels has {len(row_labels)} entries but the grid has "
                f"{n_rows} rows."
            )

    top = composite(flat, rgb_colors, clip, normalize=normalize)
    side = None
    if side_view:
        # Max over x keeps the maximum over the whole cell, so with
        # normalize=True the side view is scaled exactly like the top view.
        side = composite(
            project(flat, axis="x"), rgb_colors, clip, normalize=normalize
        )

    y_px, x_px = top.shape[1:3]
    top_h = ax_size * y_px / x_px
    heights = [top_h]
    if side is not None:
        z_px = side.shape[1]
        # The side view spans y horizontally; keep its pixels square.
        heights.append(ax_size * z_px / y_px)
    if fig is None:
        title_pad = 0.25 if titles is not None else 0.0
        label_pad = 0.35 if row_labels is not None else 0.0
        fig = Figure(
            figsize=(
                n_cols * ax_size + label_pad + 0.1,
                n_rows * (sum(heights) + title_pad) + 0.1,
            ),
            layout="constrained",
        )
        fig.get_layout_engine().set(w_pad=0.01, h_pad=0.01, wspace=0.02, hspace=0.02)
    gs = fig.add_gridspec(n_rows * len(heights), n_cols, height_ratios=heights * n_rows)

    for i in range(n_cells):
        row, col = divmod(i, n_cols)
        ax = fig.add_subplot(gs[row * len(heights), col])
        ax.imshow(top[i], interpolation="nearest")
        _blank(ax)
        if cell_titles[i] is not None:
            ax.set_title(cell_titles[i], fontsize=7, pad=2)
        if col == 0 and row_labels is not None:
            ax.set_ylabel(str(row_labels[row]), fontsize=8)
        if side is not None:
            ax_side = fig.add_subplot(gs[row * 2 + 1, col])
            # origin="lower" puts z=0 (the coverslip) at the bottom.
            ax_side.imshow(side[i], interpolation="nearest", origin="lower")
            _blank(ax_side)
    return fig


def plot_reconstructions(originals, reconstructions, *, n=8, colors=None, **kwargs):
    """Show cells above their reconstructions, drawn with the same scaling.

    Parameters
    ----------
    originals : array-like of shape (n_cells, n_channels, [Z,] Y, X)
        Input images.
    reconstructions : array-like of the same shape as ``originals``
        The model's reconstructions of ``originals``, in the same order.
    n : int, default=8
        Number of cells (columns) to show, the first ``n``.
    colors : sequence of colours or None, default=None
        One colour per channel; see :func:`composite`.
    **kwargs
        Passed to :func:`plot_image_grid` (for example ``channels``,
        ``side_view``, ``clip``, ``ax_size``, ``titles``, ``fig``). With
        ``normalize=True`` both rows are divided by the per-channel maxima of
        the originals, so a dim reconstruction still looks dim.

    Returns
    -------
    fig : matplotlib.figure.Figure
        Two rows labelled "original" and "reconstruction".

    Raises
    ------
    ValueError
        If the arrays have the wrong number of axes, are empty, or differ in
        shape; or for any invalid argument of :func:`plot_image_grid`.
    TypeError
        If an array is not numeric or ``n`` is not an integer.

    Examples
    --------
    >>> import numpy as np
    >>> from cellgen.plotting import plot_reconstructions
    >>> x = np.random.rand(5, 3, 16, 16)
    >>> fig = plot_reconstructions(x, 0.9 * x, n=4)
    >>> len(fig.axes)
    8
    """
    what = "(n_cells, n_channels, Y, X) or (n_cells, n_channels, Z, Y, X)"
    orig = _as_array(originals, "originals", (4, 5), what)
    recon = _as_array(reconstructions, "reconstructions", (4, 5), what)
    if orig.shape != recon.shape:
        raise ValueError(
            f"originals and reconstructions must have the same shape; got "
            f"{orig.shape} and {recon.shape}."
        )
    n = min(_check_int(n, "n"), len(orig))
    orig = orig[:n].astype(np.float32, copy=False)
    recon = recon[:n].astype(np.float32, copy=False)
    if kwargs.pop("normalize", False):
        # Scale by the originals only: normalising each row separately would
        # make any reconstruction look as bright as its original.
        scale = _scale_per_channel(np.nan_to_num(orig))
        orig, recon = orig / scale, recon / scale
    # Defaults that a caller's own row labels or spatial_ndim replace.
    kwargs.setdefault("row_labels", ["original", "reconstruction"])
    kwargs.setdefault("spatial_ndim", orig.ndim - 2)
    return plot_image_grid(np.stack([orig, recon]), colors=colors, **kwargs)


def plot_channels(
    images,
    *,
    channel_names=None,
    n=8,
    channels=None,
    side_view=False,
    normalize=False,
    clip=(0, 1),
    ax_size=1.6,
    fig=None,
):
    """Show each channel in grey, one row per channel and one column per cell.

    Parameters
    ----------
    images : array-like of shape (n_cells, n_channels, [Z,] Y, X)
        Multichannel images; 3D images are max-projected along z.
    channel_names : sequence of str or None, default=None
        Row labels, one per channel (of all channels, in the input's order, or of
        the selected ones); ``None`` labels the rows "channel 0", "channel 1", ...
    n : int, default=8
        Number of cells (columns) to show, the first ``n``.
    channels : int or sequence of int or None, default=None
        Indices of the channels to show; ``None`` shows all.
    side_view : bool, default=False
        For 3D images, add the side view under each top view.
    normalize : bool, default=False
        Scale each channel of each image by its own maximum.
    clip : tuple of (float, float) or None, default=(0, 1)
        Display window of the intensities; see :func:`composite`.
    ax_size : float, default=1.6
        Width in inches of each cell's panel.
    fig : matplotlib.figure.Figure or SubFigure or None, default=None
        Figure to draw into; ``None`` creates a new one.

    Returns
    -------
    fig : matplotlib.figure.Figure
        One row per shown channel, one column per cell.

    Raises
    ------
    ValueError
        If ``images`` has the wrong number of axes or is empty, if
        ``channel_names`` has the wrong length, or if ``channels`` holds an
        index out of range.
    TypeError
        If ``images`` is not numeric or ``n`` is not an integer.

    Examples
    --------
    >>> import numpy as np
    >>> from cellgen.plotting import plot_channels
    >>> fig = plot_channels(np.random.rand(3, 2, 16, 16))
    >>> len(fig.axes)
    6
    """
    arr = _as_array(
        images,
        "images",
        (4, 5),
        "(n_cells, n_channels, Y, X) or (n_cells, n_channels, Z, Y, X)",
    )
    n = min(_check_int(n, "n"), len(arr))
    n_channels = arr.shape[1]
    selected = _check_channels(channels, n_channels)
    index = list(range(n_channels)) if selected is None else selected
    if channel_names is None:
        names = [f"channel {c}" for c in index]
    else:
        if isinstance(channel_names, str):
            channel_names = [channel_names]
        names = [str(s) for s in _per_channel(
            channel_names, "channel_names", n_channels, selected
        )]
    # (n, C, ...) -> (C, n, 1, ...): each channel becomes a one-channel row.
    rows = np.swapaxes(arr[:n, index], 0, 1)[:, :, None]
    return plot_image_grid(
        rows,
        row_labels=names,
        colors=[_GREY],
        side_view=side_view,
        normalize=normalize,
        clip=clip,
        ax_size=ax_size,
        spatial_ndim=arr.ndim - 2,
        fig=fig,
    )
