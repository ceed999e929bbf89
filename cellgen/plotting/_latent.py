"""Plots of the latent space ranking and of training histories."""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

__all__ = ["plot_latent_ranking", "plot_history"]

_MAD_COLOR = "tab:blue"
_KL_COLOR = "tab:orange"


def _root_figure(ax):
    # ``ax.figure`` may be a SubFigure; the caller was promised a Figure.
    try:
        return ax.get_figure(root=True)
    except TypeError:  # matplotlib < 3.10 has no ``root`` argument
        return ax.figure


def _as_frame(data, name: str) -> pd.DataFrame:
    if isinstance(data, pd.DataFrame):
        return data
    # A skorch History is a list of per-epoch dicts; a dict of columns works too.
    if isinstance(data, (Mapping, list)):
        try:
            return pd.DataFrame(data)
        except Exception as exc:
            raise TypeError(
                f"{name} could not be converted to a pandas DataFrame: {exc}"
            ) from exc
    raise TypeError(f"{name} must be a pandas DataFrame, got {type(data).__name__}.")


def _is_numeric(series: pd.Series) -> bool:
    # Booleans (skorch's ``*_best`` flags) are not quantities to plot.
    return pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(
        series
    )


def plot_latent_ranking(ranking, *, top=32, ax=None):
    """Bar chart of latent dimensions ranked by their mean absolute deviation.

    Dimensions a VAE actually uses spread their posterior means across cells
    (large MAD) and pay for it in KL; collapsed dimensions sit near zero on
    both. The bars are sorted descending by ``mad``.

    Parameters
    ----------
    ranking : pandas.DataFrame
        One row per latent dimension with columns ``dimension`` (int) and
        ``mad`` (mean absolute deviation of the posterior means), and
        optionally ``kl`` (mean KL divergence of the dimension), drawn as
        points on a second y axis.
    top : int or None, default=32
        Number of highest-ranked dimensions to show; ``None`` shows all.
    ax : matplotlib.axes.Axes or None, default=None
        Axes to draw the bars in; ``None`` creates a new figure.

    Returns
    -------
    fig : matplotlib.figure.Figure
        The figure holding the plot (not shown). The bars, in ranked order,
        are ``fig.axes[0].patches``.

    Raises
    ------
    TypeError
        If ``ranking`` is not a DataFrame (or convertible mapping) or ``top``
        is not an integer.
    ValueError
        If ``ranking`` is empty, lacks a ``dimension`` or ``mad`` column, or
        holds non-numeric values there, or if ``top`` is not positive.

    Examples
    --------
    >>> import pandas as pd
    >>> from cellgen.plotting import plot_latent_ranking
    >>> ranking = pd.DataFrame({"dimension": [0, 1, 2], "mad": [0.1, 0.8, 0.4]})
    >>> fig = plot_latent_ranking(ranking)
    >>> [t.get_text() for t in fig.axes[0].get_xticklabels()]
    ['1', '2', '0']
    """
    frame = _as_frame(ranking, "ranking")
    missing = [c for c in ("dimension", "mad") if c not in frame.columns]
    if missing:
        raise ValueError(
            f"ranking lacks column(s) {missing}; it needs 'dimension' and 'mad' "
            f"(and optionally 'kl'). Columns found: {list(frame.columns)}."
        )
    if len(frame) == 0:
        raise ValueError("ranking is empty: it has no latent dimensions.")
    for col in ("dimension", "mad", "kl"):
        if col in frame.columns and not _is_numeric(frame[col]):
            raise ValueError(
                f"ranking column {col!r} must be numeric, got dtype "
                f"{frame[col].dtype}."
            )
    if top is not None:
        if isinstance(top, bool) or not isinstance(top, numbers.Integral):
            raise TypeError(f"top must be an integer or None, got {top!r}.")
        if top < 1:
            raise ValueError(f"top must be >= 1, got {top}.")

    # Stable sort keeps the given order among ties; NaN MADs go last.
    ranked = frame.sort_values("mad", ascending=False, kind="mergesort",
                               na_position="last")
    if top is not None:
        ranked = ranked.iloc[:top]
    k = len(ranked)
    positions = np.arange(k)
    labels = [str(int(d)) if float(d).is_integer() else str(d)
              for d in ranked["dimension"]]

    if ax is None:
        fig = Figure(figsize=(max(4.0, 0.22 * k + 1.5), 3.0), layout="constrained")
        ax = fig.add_subplot()
    else:
        fig = _root_figure(ax)
    ax.bar(positions, ranked["mad"].to_numpy(dtype=float), color=_MAD_COLOR,
           label="mad")
    ax.set_xticks(positions, labels, fontsize=7 if k > 16 else 9,
                  rotation=90 if k > 32 else 0)
    ax.set_xlim(-0.6, k - 0.4)
    ax.set_xlabel("latent dimension (ranked)")
    ax.set_ylabel("mean absolute deviation", color=_MAD_COLOR)
    if "kl" in ranked.columns and ranked["kl"].notna().any():
        # KL is in nats, MAD in latent units: a second y axis keeps both legible.
        # (Without log-variances the ranking's kl is all NaN: no empty axis then.)
        ax_kl = ax.twinx()
        ax_kl.plot(positions, ranked["kl"].to_numpy(dtype=float), "o-",
                   color=_KL_COLOR, markersize=3, linewidth=1, label="kl")
        ax_kl.set_ylabel("mean KL (nats)", color=_KL_COLOR)
        ax_kl.set_ylim(bottom=min(0.0, float(np.nanmin(ranked["kl"]))))
    return fig


def _is_loss(name: str) -> bool:
    return "loss" in name.lower()


def plot_history(history, *, keys=None, ax=None):
    """Plot training curves from a per-epoch history table.

    Parameters
    ----------
    history : pandas.DataFrame
        One row per epoch: an optional ``epoch`` column (the x axis; the row
        number counted from 1 otherwise) and numeric columns such as
        ``train_loss``, ``valid_loss``, ``train_reconstruction``,
        ``train_kl``. A list of per-epoch dicts (a skorch ``History``) is
        converted.
    keys : sequence of str or None, default=None
        Columns to plot. ``None`` plots every numeric column except ``epoch``
        and ``dur`` (boolean flags are skipped). Columns whose name contains
        "loss" go in one panel and the others (loss terms) in a second panel
        when both kinds are present.
    ax : matplotlib.axes.Axes or sequence of two Axes or None, default=None
        Where to draw: one Axes takes every line, two Axes take the losses
        and the terms. ``None`` creates a new figure.

    Returns
    -------
    fig : matplotlib.figure.Figure
        The figure holding the plot (not shown), with one line per key.

    Raises
    ------
    TypeError
        If ``history`` is not a DataFrame (or convertible list or mapping).
    ValueError
        If ``history`` is empty, if ``keys`` is empty or names a column that is
        missing or not numeric, if there is no numeric column to plot, or if
        ``ax`` is a sequence whose length is not 2.

    Examples
    --------
    >>> import pandas as pd
    >>> from cellgen.plotting import plot_history
    >>> history = pd.DataFrame({"epoch": [1, 2, 3], "train_loss": [3.0, 2.0, 1.5],
    ...                         "valid_loss": [3.1, 2.2, 1.9],
    ...                         "train_kl": [0.1, 0.3, 0.4]})
    >>> fig = plot_history(history)
    >>> len(fig.axes), sum(len(a.get_lines()) for a in fig.axes)
    (2, 3)
    """
    frame = _as_frame(history, "history")
    if len(frame) == 0:
        raise ValueError("history is empty: it has no epochs.")
    if keys is None:
        keys = [
            c for c in frame.columns
            if c not in ("epoch", "dur") and _is_numeric(frame[c])
        ]
        if not keys:
            raise ValueError(
                "history has no numeric columns to plot besides 'epoch' and 'dur'; "
                f"columns found: {list(frame.columns)}."
            )
    else:
        if isinstance(keys, str):
            keys = [keys]
        keys = list(keys)
        if not keys:
            raise ValueError("keys is empty; name at least one column to plot.")
        missing = [k for k in keys if k not in frame.columns]
        if missing:
            raise ValueError(
                f"keys names column(s) {missing} that history lacks; columns "
                f"found: {list(frame.columns)}."
            )
        bad = [k for k in keys if not _is_numeric(frame[k])]
        if bad:
            raise ValueError(f"keys names non-numeric column(s) {bad} of history.")

    losses = [k for k in keys if _is_loss(str(k))]
    terms = [k for k in keys if not _is_loss(str(k))]
    groups = [g for g in (losses, terms) if g]

    if ax is None:
        fig = Figure(figsize=(4.0 * len(groups), 3.0), layout="constrained")
        axes = list(fig.subplots(1, len(groups), squeeze=False)[0])
    else:
        if isinstance(ax, Sequence) or isinstance(ax, np.ndarray):
            axes = list(np.ravel(ax))
            if len(axes) != 2:
                raise ValueError(
                    f"ax must be one Axes or a sequence of two; got {len(axes)}."
                )
            if len(groups) == 1:
                axes = axes[:1]
        else:
            axes = [ax]
            # One Axes for everything: draw both groups into it.
            groups = [keys]
        fig = _root_figure(axes[0])

    x = (frame["epoch"].to_numpy() if "epoch" in frame.columns
         else np.arange(1, len(frame) + 1))
    # Markers keep single-epoch and sparsely validated histories visible.
    marker = "o" if len(frame) <= 30 else None
    for group, axis in zip(groups, axes, strict=False):
        for key in group:
            axis.plot(x, frame[key].to_numpy(dtype=float), marker=marker,
                      markersize=3, label=str(key))
        axis.set_xlabel("epoch")
        if group is losses:
            axis.set_ylabel("loss")
        elif group is terms:
            axis.set_ylabel("loss term")
        axis.legend(fontsize=7)
    return fig
