"""Plots of structure coupling (paper, Fig. 5)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.figure import Figure

from ._latent import _root_figure

__all__ = ["plot_coupling", "plot_differential_coupling"]


def _new_axes(ax, figsize):
    if ax is None:
        fig = Figure(figsize=figsize, layout="constrained")
        return fig, fig.add_subplot()
    return _root_figure(ax), ax


def _check_frame(frame, name, columns):
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"{name} must be a pandas DataFrame, got {type(frame).__name__}.")
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{name} lacks column(s) {missing}; columns found: "
                         f"{list(frame.columns)}.")
    if len(frame) == 0:
        raise ValueError(f"{name} is empty.")


def plot_coupling(coupling, *, membrane="membrane", nucleus="DNA", ax=None):
    """Per-cell coupling to the membrane against coupling to the nucleus (Fig. 5a).

    One point per cell, coloured by structure. Coupling is the paper's Eq. 4
    ratio of ELBOs: below 1 (dotted lines) the swap of that reference channel
    made the structure less likely, so points low on an axis are coupled to
    that channel.

    Parameters
    ----------
    coupling : pandas.DataFrame
        Output of :func:`cellgen.analysis.structure_coupling`: columns
        ``cell``, ``structure``, ``reference`` and ``coupling``. With several
        models (a ``model`` column), each cell's couplings are averaged over
        the models.
    membrane : str, default="membrane"
        Reference name plotted on the x axis.
    nucleus : str, default="DNA"
        Reference name plotted on the y axis.
    ax : matplotlib.axes.Axes or None, default=None
        Axes to draw in; ``None`` creates a new figure.

    Returns
    -------
    fig : matplotlib.figure.Figure
        The figure (not shown); one scatter collection per structure.

    Raises
    ------
    TypeError
        If ``coupling`` is not a DataFrame.
    ValueError
        If columns are missing, it is empty, or ``membrane`` or ``nucleus`` is
        not one of its references.

    Examples
    --------
    >>> import pandas as pd
    >>> from cellgen.plotting import plot_coupling
    >>> c = pd.DataFrame({"cell": [0, 0, 1, 1], "structure": ["a", "a", "b", "b"],
    ...                   "reference": ["membrane", "DNA"] * 2,
    ...                   "coupling": [0.8, 1.0, 1.0, 0.7]})
    >>> fig = plot_coupling(c)
    >>> len(fig.axes[0].collections)
    2
    """
    _check_frame(coupling, "coupling", ["cell", "structure", "reference", "coupling"])
    refs = set(coupling["reference"])
    for arg, name in (("membrane", membrane), ("nucleus", nucleus)):
        if name not in refs:
            raise ValueError(f"{arg}={name!r} is not a reference of coupling; known: "
                             f"{sorted(map(str, refs))}. Pass {arg}= one of them, or name "
                             "the channels when computing the coupling: "
                             "structure_coupling(..., reference_names=['membrane', 'DNA']).")
    wide = coupling.pivot_table(index=["cell", "structure"], columns="reference",
                                values="coupling", aggfunc="mean").reset_index()
    for name in (membrane, nucleus):
        if name not in wide.columns:  # all its couplings NaN: pivot_table dropped it
            wide[name] = np.nan
    fig, ax = _new_axes(ax, (5.0, 4.5))
    labels = list(pd.unique(wide["structure"]))
    if len(labels) <= 20:
        cmap = colormaps["tab10" if len(labels) <= 10 else "tab20"]
        colors = [cmap(k) for k in range(len(labels))]
    else:  # more structures than a qualitative map has colours: spread hues evenly
        colors = [colormaps["hsv"](k / len(labels)) for k in range(len(labels))]
    for label, color in zip(labels, colors, strict=True):
        rows = wide[wide["structure"] == label]
        ax.scatter(rows[membrane].to_numpy(float), rows[nucleus].to_numpy(float), s=9,
                   alpha=0.7, color=color, label=str(label), linewidths=0)
    ax.axvline(1.0, color="0.6", linestyle=":", linewidth=1)
    ax.axhline(1.0, color="0.6", linestyle=":", linewidth=1)
    ax.set_xlabel(f"coupling to {membrane} (Eq. 4; < 1 is coupled)")
    ax.set_ylabel(f"coupling to {nucleus} (Eq. 4; < 1 is coupled)")
    ax.legend(fontsize=7, markerscale=1.5, frameon=False)
    return fig


def plot_differential_coupling(d_frame, *, ax=None):
    """Bars of the differential coupling per structure, split by phase (Fig. 5b).

    Parameters
    ----------
    d_frame : pandas.DataFrame
        Output of :func:`cellgen.analysis.differential_coupling`: columns
        ``structure`` and ``differential_coupling``, optionally
        ``cell_cycle_phase`` (one bar per phase within each structure),
        ``ci_low``/``ci_high`` (drawn as capped error bars: the spread over
        cells) and ``sd_between_models`` (drawn as a thick uncapped bar of
        ±1 SD: the spread between fits, when several models were scored).
    ax : matplotlib.axes.Axes or None, default=None
        Axes to draw in; ``None`` creates a new figure.

    Returns
    -------
    fig : matplotlib.figure.Figure
        The figure (not shown); one bar per row of ``d_frame``.

    Raises
    ------
    TypeError
        If ``d_frame`` is not a DataFrame.
    ValueError
        If columns are missing, it is empty, or it has several rows for one
        structure (and phase), which would draw bars on top of each other.

    Examples
    --------
    >>> import pandas as pd
    >>> from cellgen.plotting import plot_differential_coupling
    >>> d = pd.DataFrame({"structure": ["a", "a", "b"],
    ...                   "cell_cycle_phase": ["interphase", "mitosis", "interphase"],
    ...                   "differential_coupling": [0.2, -0.1, -0.3]})
    >>> fig = plot_differential_coupling(d)
    >>> len(fig.axes[0].patches)
    3
    """
    _check_frame(d_frame, "d_frame", ["structure", "differential_coupling"])
    if "cell_cycle_phase" in d_frame.columns and d_frame["cell_cycle_phase"].isna().any():
        # NaN never equals itself, so those rows would match no phase: name them.
        phase = d_frame["cell_cycle_phase"].astype(object)
        d_frame = d_frame.assign(cell_cycle_phase=phase.where(phase.notna(), "unknown"))
    keys = ["structure"] + (["cell_cycle_phase"] if "cell_cycle_phase" in d_frame.columns
                            else [])
    if d_frame.duplicated(keys).any():
        # Such bars would be drawn on top of each other.
        repeated = d_frame.loc[d_frame.duplicated(keys, keep=False), keys]
        raise ValueError(
            f"d_frame has several rows per {' and '.join(keys)} (e.g. "
            f"{repeated.iloc[0].tolist()}); plot one grouping at a time, for example "
            "differential_coupling(..., by=('structure', 'cell_cycle_phase')), or select rows."
        )
    structures = list(pd.unique(d_frame["structure"]))
    phases = (list(pd.unique(d_frame["cell_cycle_phase"]))
              if "cell_cycle_phase" in d_frame.columns else [None])
    width = 0.8 / len(phases)
    fig, ax = _new_axes(ax, (max(4.0, 0.6 * len(structures) + 1.5), 3.5))
    cmap = colormaps["tab10"]
    pos = {s: i for i, s in enumerate(structures)}
    spread = []
    for k, phase in enumerate(phases):
        rows = d_frame if phase is None else d_frame[d_frame["cell_cycle_phase"] == phase]
        x = np.array([pos[s] for s in rows["structure"]]) + (k - (len(phases) - 1) / 2) * width
        d = rows["differential_coupling"].to_numpy(float)
        err = None
        if {"ci_low", "ci_high"} <= set(rows.columns):
            err = np.vstack([d - rows["ci_low"].to_numpy(float),
                             rows["ci_high"].to_numpy(float) - d])
            err = np.where(np.isfinite(err), err, 0.0)
        ax.bar(x, d, width=width, yerr=err, color=cmap(k % cmap.N), capsize=2,
               label=None if phase is None else str(phase))
        if "sd_between_models" in rows.columns:
            spread.append((x, d, np.nan_to_num(rows["sd_between_models"].to_numpy(float))))
    if spread:
        # One artist after the bars, so the legend lists the phases first.
        x, d, sd = (np.concatenate(v) for v in zip(*spread))
        ax.errorbar(x, d, yerr=sd, fmt="none", ecolor="0.15", elinewidth=2.5, capsize=0,
                    label="±1 SD between fits")
    ax.axhline(0.0, color="0.3", linewidth=0.8)
    ax.set_xticks(range(len(structures)), [str(s) for s in structures], rotation=45,
                  ha="right", fontsize=8)
    ax.set_ylabel("differential coupling d (Eq. 5)\n< 0 membrane, > 0 nucleus")
    if phases != [None] or "sd_between_models" in d_frame.columns:
        ax.legend(fontsize=7, frameon=False)
    return fig
