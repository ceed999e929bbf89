"""Figures of latent walks, feature correlations and the rate-distortion trade-off."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ._images import plot_image_grid
from ._latent import _root_figure

__all__ = ["plot_latent_walk", "plot_feature_correlations", "plot_rate_distortion"]


def plot_latent_walk(images, steps=None, *, dimension_names=None, **kwargs):
    """Draw latent walks as a grid: one row per dimension, one column per step.

    Parameters
    ----------
    images : array-like of shape (n_dimensions, n_steps, n_channels, [Z,] Y, X)
        Decoded walks, as returned by :func:`cellgen.analysis.latent_walk`;
        3D cells are drawn as maximum projections.
    steps : array-like of shape (n_dimensions, n_steps) or None, default=None
        Latent values of the walked dimension, shown above the first row.
    dimension_names : sequence of str or None, default=None
        One label per row (for example ``"dim 3 (cell area)"``).
    **kwargs
        Passed to :func:`plot_image_grid` (``colors``, ``side_view``...).

    Returns
    -------
    fig : matplotlib.figure.Figure
        The grid.

    Examples
    --------
    >>> import numpy as np
    >>> from cellgen.plotting import plot_latent_walk
    >>> walk = np.random.default_rng(0).random((2, 9, 2, 16, 16))
    >>> len(plot_latent_walk(walk, dimension_names=["dim 0", "dim 1"]).axes)
    18
    """
    images = np.asarray(images)
    if images.ndim not in (5, 6):
        raise ValueError(
            "images must be (n_dimensions, n_steps, n_channels, [Z,] Y, X); got shape "
            f"{images.shape}."
        )
    rows, cols = images.shape[:2]
    titles = None
    if steps is not None:
        steps = np.asarray(steps, dtype=float)
        if steps.shape != (rows, cols):
            raise ValueError(f"steps must have shape {(rows, cols)}, got {steps.shape}.")
        titles = [[f"{v:+.2f}" for v in row] for row in steps]
    if dimension_names is not None:
        # A bare string is one name, not its letters.
        names = [dimension_names] if isinstance(dimension_names, str) else list(dimension_names)
        if len(names) != rows:
            raise ValueError(f"dimension_names needs {rows} names, got {len(names)}.")
        if "row_labels" in kwargs:
            raise TypeError("give dimension_names or row_labels, not both.")
        kwargs["row_labels"] = names
    kwargs.setdefault("titles", titles)
    kwargs.setdefault("spatial_ndim", images.ndim - 3)
    return plot_image_grid(images, **kwargs)


def plot_feature_correlations(rho, *, ax=None, cmap="RdBu_r"):
    """Heatmap of correlations between latent dimensions (rows) and cell features.

    Parameters
    ----------
    rho : DataFrame of shape (n_dimensions, n_features)
        Correlations, as from :func:`cellgen.analysis.latent_feature_correlations`.
    ax : matplotlib.axes.Axes or None, default=None
        Axes to draw in; ``None`` creates a figure.
    cmap : str, default="RdBu_r"
        A diverging colormap; the colour scale is fixed to [-1, 1].

    Returns
    -------
    fig : matplotlib.figure.Figure
        The heatmap with a colour bar.

    Examples
    --------
    >>> import pandas as pd
    >>> from cellgen.plotting import plot_feature_correlations
    >>> rho = pd.DataFrame([[0.9, -0.1], [0.0, 0.5]], index=["z0", "z1"],
    ...                    columns=["area", "height"])
    >>> fig = plot_feature_correlations(rho)
    >>> fig.axes[0].images[0].get_array().shape
    (2, 2)
    """
    if not isinstance(rho, pd.DataFrame):
        raise TypeError(f"rho must be a pandas DataFrame, got {type(rho).__name__}.")
    if rho.empty:
        raise ValueError("rho is empty.")
    if ax is None:
        n_rows, n_cols = rho.shape
        fig = Figure(figsize=(1.5 + 0.35 * n_cols, 1.2 + 0.25 * n_rows), layout="constrained")
        ax = fig.add_subplot()
    else:
        fig = _root_figure(ax)
    im = ax.imshow(rho.to_numpy(dtype=float), cmap=cmap, vmin=-1, vmax=1, aspect="auto")
    ax.set_xticks(range(rho.shape[1]), [str(c) for c in rho.columns], rotation=90)
    ax.set_yticks(range(rho.shape[0]), [str(i) for i in rho.index])
    ax.set_xlabel("cell feature")
    ax.set_ylabel("latent dimension")
    fig.colorbar(im, ax=ax, label="Spearman ρ")
    return fig


def plot_rate_distortion(sweep, *, ax=None, annotate=True):
    """Rate against distortion for models fitted at several β (the paper's Fig. 3a).

    Parameters
    ----------
    sweep : DataFrame
        Columns ``beta``, ``rate`` and ``distortion``, as from
        :func:`cellgen.analysis.beta_sweep`.
    ax : matplotlib.axes.Axes or None, default=None
        Axes to draw in; ``None`` creates a figure.
    annotate : bool, default=True
        Write each point's β beside it.

    Returns
    -------
    fig : matplotlib.figure.Figure
        The curve, rate on x and distortion on y.

    Examples
    --------
    >>> import pandas as pd
    >>> from cellgen.plotting import plot_rate_distortion
    >>> sweep = pd.DataFrame({"beta": [0.01, 0.1, 0.5], "rate": [40.0, 12.0, 3.0],
    ...                       "distortion": [20.0, 35.0, 60.0]})
    >>> len(plot_rate_distortion(sweep).axes[0].lines)
    1
    """
    if not isinstance(sweep, pd.DataFrame):
        raise TypeError(f"sweep must be a pandas DataFrame, got {type(sweep).__name__}.")
    missing = [c for c in ("beta", "rate", "distortion") if c not in sweep.columns]
    if missing:
        raise ValueError(f"sweep lacks column(s) {missing}; found {list(sweep.columns)}.")
    if len(sweep) == 0:
        raise ValueError("sweep is empty: it has no fitted beta to plot.")
    frame = sweep.sort_values("beta")
    if ax is None:
        fig = Figure(figsize=(4.0, 3.2), layout="constrained")
        ax = fig.add_subplot()
    else:
        fig = _root_figure(ax)
    ax.plot(frame["rate"], frame["distortion"], "o-", color="tab:blue")
    if annotate:
        for _, row in frame.iterrows():
            ax.annotate(f"β={row['beta']:g}", (row["rate"], row["distortion"]),
                        textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_xlabel("rate: KL(q(z|x) || p(z)) per cell (nats)")
    ax.set_ylabel("distortion per cell")
    return fig
