"""Image-based profiling: treatment profiles and MoA prediction (BBBC021 protocol).

The standard evaluation of BBBC021 (Ljosa et al. 2013; Ando et al. 2017): per-cell
features -> mean per well -> median per treatment -> 1-nearest-neighbour mechanism of
action (MoA) by cosine similarity, with the neighbour taken from other compounds only
(NSC) or from other compounds in other batches only (NSCB). Both functions take any
per-cell feature table, so cellgen embeddings, CellProfiler features or pixels are
compared on equal terms.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.spatial.distance import cdist

__all__ = ["aggregate_profiles", "moa_accuracy"]

_METHODS = ("mean", "mean+sd")
_HOLDOUTS = ("none", "NSC", "NSCB", "both")
_METRICS = ("cosine", "euclidean")


def _as_tuple(keys, name):
    keys = (keys,) if isinstance(keys, str) else tuple(keys)
    if not keys:
        raise ValueError(f"{name} must name at least one metadata column.")
    return keys


def _check_columns(frame, columns, what):
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{what} column(s) {missing} not found; available columns: "
                         f"{list(frame.columns)}.")


def _zca(X, shrinkage):
    """ZCA whitening matrix and centre of ``X`` (rows are samples), regularized.

    The eigenvalues of the covariance get ``shrinkage * mean(eigenvalue)`` added
    before inversion, so directions the controls barely span (fewer control cells
    than features) are scaled by a bounded factor instead of blowing up.
    """
    centre = X.mean(0)
    cov = np.cov(X - centre, rowvar=False, ddof=1) if len(X) > 1 else np.zeros((X.shape[1],) * 2)
    cov = np.atleast_2d(cov)
    evals, evecs = np.linalg.eigh(cov)
    evals = np.clip(evals, 0.0, None)
    eps = shrinkage * max(float(evals.mean()), np.finfo(float).tiny)
    W = (evecs / np.sqrt(evals + eps)) @ evecs.T
    return centre, W


def aggregate_profiles(embeddings, metadata, *, well=("plate", "well"),
                       treatment=("compound", "concentration"), method="mean", whiten=None,
                       control=("compound", "DMSO"), keep=("moa",), batch="batch",
                       shrinkage=1e-3):
    """Aggregate per-cell features into one profile per treatment.

    Cells -> mean per well (``method="mean"``; ``"mean+sd"`` appends the per-well
    standard deviations) -> median over the treatment's wells, the protocol of
    Ljosa et al. (2013) for BBBC021. Any feature table works: cellgen latent means,
    CellProfiler features, pixels.

    Parameters
    ----------
    embeddings : array-like or DataFrame of shape (n_cells, n_features)
        Per-cell features, in the row order of ``metadata``. Column names of a
        DataFrame become the feature names; an array's are ``"f0"``, ``"f1"``, ...
    metadata : DataFrame of shape (n_cells, n_columns)
        Per-cell annotations holding the ``well``, ``treatment``, ``keep`` and
        ``batch`` columns (and the ``control`` column when whitening).
    well : str or tuple of str, default=("plate", "well")
        Columns that identify a well.
    treatment : str or tuple of str, default=("compound", "concentration")
        Columns that identify a treatment.
    method : {"mean", "mean+sd"}, default="mean"
        Per-well aggregate. ``"mean+sd"`` concatenates the per-well population
        standard deviations (``ddof=0``; 0 for a one-cell well), named ``<name>_sd``.
    whiten : {None, "control"}, default=None
        ``"control"`` applies to every cell, before aggregation, the ZCA whitening
        transform fitted on the control cells: centring on the control mean and
        mapping the control covariance to (nearly) the identity. One transform is
        fitted on all control cells together (there are too few control cells per
        plate in the BBBC021 crops for the per-plate whitening of Ando et al. 2017).
    control : tuple (column, value or list of values), default=("compound", "DMSO")
        Which cells are controls, used only when ``whiten="control"``.
    keep : str or tuple of str, default=("moa",)
        Columns to carry over; each must be constant within a treatment.
    batch : str or None, default="batch"
        Column naming the experimental batch. The output column ``batches`` holds,
        per treatment, the sorted tuple of batches its cells come from (what NSCB
        holds out); ``None`` leaves it out.
    shrinkage : float, default=1e-3
        Regularization of the whitening: ``shrinkage`` times the mean eigenvalue of
        the control covariance is added to every eigenvalue before inversion.

    Returns
    -------
    profiles : DataFrame of shape (n_treatments, n_columns)
        One row per treatment: the ``treatment`` columns, the ``keep`` columns,
        ``batches`` (unless ``batch=None``), ``n_wells``, ``n_cells``, then the
        features. ``profiles.attrs["features"]`` lists the feature columns, which
        :func:`moa_accuracy` reads.

    Raises
    ------
    ValueError
        If lengths differ, a column is missing, features are not finite, a ``keep``
        column varies within a treatment, or no control cell is found for whitening.

    See Also
    --------
    moa_accuracy : 1-nearest-neighbour MoA prediction from these profiles.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from cellgen.analysis import aggregate_profiles
    >>> meta = pd.DataFrame({"plate": ["p1"] * 4, "well": ["A", "A", "B", "C"],
    ...                      "compound": ["x", "x", "x", "y"], "concentration": 1.0,
    ...                      "moa": ["m1", "m1", "m1", "m2"], "batch": ["b1"] * 4})
    >>> emb = np.array([[0.0, 1.0], [2.0, 1.0], [3.0, 3.0], [5.0, 5.0]])
    >>> prof = aggregate_profiles(emb, meta)
    >>> prof[["compound", "moa", "n_wells", "f0", "f1"]]
      compound moa  n_wells   f0   f1
    0        x  m1        2  2.0  2.0
    1        y  m2        1  5.0  5.0
    """
    well, treatment, keep = (_as_tuple(well, "well"), _as_tuple(treatment, "treatment"),
                             tuple(_as_tuple(keep, "keep")) if keep else ())
    if method not in _METHODS:
        raise ValueError(f"method must be one of {list(_METHODS)}, got {method!r}.")
    if whiten not in (None, "control"):
        raise ValueError(f"whiten must be None or 'control', got {whiten!r}.")
    if not isinstance(metadata, pd.DataFrame):
        raise TypeError(f"metadata must be a pandas DataFrame, got {type(metadata).__name__}.")
    if isinstance(embeddings, pd.DataFrame):
        names = [str(c) for c in embeddings.columns]
        X = embeddings.to_numpy(dtype=float)
    else:
        X = np.asarray(embeddings, dtype=float)
        names = [f"f{i}" for i in range(X.shape[1])] if X.ndim == 2 else []
    if X.ndim != 2:
        raise ValueError(f"embeddings must be 2D (n_cells, n_features), got shape {X.shape}.")
    if len(X) != len(metadata):
        raise ValueError(f"embeddings has {len(X)} rows but metadata has {len(metadata)}.")
    if len(X) == 0:
        raise ValueError("embeddings is empty.")
    if not np.isfinite(X).all():
        raise ValueError("embeddings contains NaN or infinite values.")
    if len(set(names)) != len(names):
        raise ValueError("embeddings has duplicate column names.")
    needed = list(dict.fromkeys(well + treatment + keep + ((batch,) if batch else ())))
    _check_columns(metadata, needed, "metadata")
    clash = sorted(set(names) & (set(needed) | {"batches", "n_wells", "n_cells"}))
    if clash:
        raise ValueError(f"feature names {clash} clash with metadata columns of the output.")

    if whiten == "control":
        column, values = control
        _check_columns(metadata, [column], "control")
        values = [values] if np.isscalar(values) else list(values)
        is_control = metadata[column].isin(values).to_numpy()
        if not is_control.any():
            raise ValueError(f"no control cell: no row of metadata has {column!r} in {values}.")
        centre, W = _zca(X[is_control], shrinkage)
        X = (X - centre) @ W

    meta = metadata[needed].reset_index(drop=True)
    feats = pd.DataFrame(X, columns=names)
    cells = pd.concat([meta, feats], axis=1)
    by_well = cells.groupby(list(dict.fromkeys(treatment + well)), sort=False, dropna=False)
    wells = by_well[names].mean()
    if method == "mean+sd":
        sd = by_well[names].std(ddof=0).fillna(0.0)
        sd.columns = [f"{n}_sd" for n in names]
        names = names + list(sd.columns)
        wells = pd.concat([wells, sd], axis=1)
    wells["n_cells"] = by_well.size()
    wells = wells.reset_index()
    by_treatment = wells.groupby(list(treatment), sort=True, dropna=False)
    profiles = by_treatment[names].median()
    profiles.insert(0, "n_cells", by_treatment["n_cells"].sum())
    profiles.insert(0, "n_wells", by_treatment.size())

    cell_groups = cells.groupby(list(treatment), sort=True, dropna=False)
    if batch:
        profiles.insert(0, "batches", cell_groups[batch].agg(
            lambda s: tuple(sorted(set(s), key=str))))
    # A treatment column is in the output already.
    for col in reversed([k for k in keep if k not in treatment]):
        n_values = cell_groups[col].nunique(dropna=False)
        if (n_values > 1).any():
            bad = n_values[n_values > 1].index[:3].tolist()
            raise ValueError(f"keep column {col!r} is not constant within treatment(s) {bad}; "
                             "drop it from keep or refine treatment.")
        profiles.insert(0, col, cell_groups[col].first())
    profiles = profiles.reset_index()
    profiles.attrs["features"] = names
    return profiles


def _similarity(X, metric):
    if metric == "cosine":
        norms = np.linalg.norm(X, axis=1, keepdims=True)
        # A zero profile has no direction: it is similar to nothing (0), not NaN.
        Xn = X / np.where(norms > 0, norms, 1.0)
        return Xn @ Xn.T
    # Differences, not |a|^2 + |b|^2 - 2ab, which cancels away the spread of
    # large unscaled features.
    return -cdist(X, X)


def moa_accuracy(profiles, *, moa="moa", compound="compound", batches="batches",
                 holdout="NSC", metric="cosine", exclude=("DMSO",), features=None):
    """Predict each treatment's mechanism of action from its nearest neighbour.

    1-nearest-neighbour classification of treatment profiles (Ljosa et al. 2013):
    each treatment gets the MoA of the most similar other treatment among the
    eligible ones, and the accuracy is the fraction of treatments classified
    correctly (per treatment, not per compound or per MoA).

    Parameters
    ----------
    profiles : DataFrame of shape (n_treatments, n_columns)
        One row per treatment, for example from :func:`aggregate_profiles`.
    moa : str, default="moa"
        Column with the mechanism of action.
    compound : str, default="compound"
        Column with the compound; NSC never takes a neighbour of the same compound.
    batches : str, default="batches"
        Column with each treatment's batches (a collection, or a single value);
        used by NSCB only.
    holdout : {"NSC", "NSCB", "none", "both"}, default="NSC"
        ``"NSC"``: neighbours from other compounds only. ``"NSCB"``: other
        compounds that share no batch with the treatment. ``"none"``: any other
        treatment. ``"both"``: NSC and NSCB, returned as a dict.
    metric : {"cosine", "euclidean"}, default="cosine"
        Similarity of profiles. A zero profile has cosine similarity 0 to all.
    exclude : str, sequence or None, default=("DMSO",)
        MoA values (controls) that are neither predicted nor used as neighbours;
        a single string is one value. Treatments whose MoA is missing (NaN) are
        left out in the same way.
    features : list of str or None, default=None
        Feature columns; ``None`` reads ``profiles.attrs["features"]``, which
        :func:`aggregate_profiles` sets.

    Returns
    -------
    accuracy : float
        Fraction of the treatments that have an eligible neighbour whose
        predicted MoA is right (NaN if none has one).
    table : DataFrame
        One row per predicted treatment: its non-feature columns, ``predicted``,
        ``neighbour`` (row label of the neighbour in ``profiles``),
        ``neighbour_compound``, ``similarity``, ``has_neighbour`` and ``correct``.
        Treatments with no eligible neighbour (``has_neighbour`` False) are
        dropped from the accuracy; ``table.attrs["n_dropped"]`` counts them.
        With ``holdout="both"``, a dict ``{"NSC": (accuracy, table), "NSCB": ...}``
        is returned instead of the pair.

    Raises
    ------
    ValueError
        If a column is missing, the features are unknown or not finite, or an
        option is invalid.

    See Also
    --------
    aggregate_profiles : Per-cell features to treatment profiles.

    Notes
    -----
    Ties in similarity go to the earlier row of ``profiles``.

    Examples
    --------
    >>> import pandas as pd
    >>> from cellgen.analysis import moa_accuracy
    >>> prof = pd.DataFrame({"compound": ["a", "b", "c", "d", "DMSO"],
    ...                      "moa": ["m1", "m1", "m2", "m2", "DMSO"],
    ...                      "batches": [("B1",), ("B1",), ("B2",), ("B1",), ("B1", "B2")],
    ...                      "x": [1.0, 1.0, 0.0, 0.2, 0.5], "y": [0.0, 0.2, 1.0, 1.0, 0.5]})
    >>> acc, table = moa_accuracy(prof, features=["x", "y"])
    >>> acc, table["predicted"].tolist()
    (1.0, ['m1', 'm1', 'm2', 'm2'])
    >>> acc, table = moa_accuracy(prof, holdout="NSCB", features=["x", "y"])
    >>> acc, table["neighbour_compound"].tolist()
    (0.5, ['c', 'c', 'd', 'c'])
    """
    if holdout not in _HOLDOUTS:
        raise ValueError(f"holdout must be one of {list(_HOLDOUTS)}, got {holdout!r}.")
    if holdout == "both":
        return {h: moa_accuracy(profiles, moa=moa, compound=compound, batches=batches,
                                holdout=h, metric=metric, exclude=exclude, features=features)
                for h in ("NSC", "NSCB")}
    if metric not in _METRICS:
        raise ValueError(f"metric must be one of {list(_METRICS)}, got {metric!r}.")
    if not isinstance(profiles, pd.DataFrame):
        raise TypeError(f"profiles must be a pandas DataFrame, got {type(profiles).__name__}.")
    if features is None:
        if "features" not in profiles.attrs:
            raise ValueError("profiles.attrs has no 'features' (it was not made by "
                             "aggregate_profiles); pass features= explicitly.")
        features = profiles.attrs["features"]
    features = list(features)
    needed = [moa, compound] + ([batches] if holdout == "NSCB" else [])
    _check_columns(profiles, needed, "profiles")
    _check_columns(profiles, features, "feature")
    X = profiles[features].to_numpy(dtype=float)
    if not np.isfinite(X).all():
        raise ValueError("profile features contain NaN or infinite values.")

    # A bare string is one value, not its letters.
    exclude = ([] if exclude is None else [exclude] if isinstance(exclude, str)
               or np.isscalar(exclude) else list(exclude))
    # A treatment without a MoA can be neither scored nor a neighbour that names one.
    keep = ~(profiles[moa].isin(exclude) | profiles[moa].isna()).to_numpy()
    sub = profiles.loc[keep]
    X = X[keep]
    labels = sub[moa].to_numpy()
    comps = sub[compound].to_numpy()
    eligible = comps[:, None] != comps[None, :] if holdout != "none" else np.ones(
        (len(sub),) * 2, bool)
    np.fill_diagonal(eligible, False)
    if holdout == "NSCB":
        sets = [frozenset(b) if pd.api.types.is_list_like(b) and not isinstance(b, str)
                else frozenset([b]) for b in sub[batches]]
        eligible &= np.array([[a.isdisjoint(b) for b in sets] for a in sets], dtype=bool)

    sim = np.where(eligible, _similarity(X, metric), -np.inf)
    has = eligible.any(1)
    nn = np.argmax(sim, axis=1) if len(sub) else np.zeros(0, int)
    table = sub.drop(columns=features).copy()
    table["predicted"] = np.where(has, labels[nn], None)
    table["neighbour"] = np.where(has, sub.index.to_numpy()[nn], None)
    table["neighbour_compound"] = np.where(has, comps[nn], None)
    table["similarity"] = np.where(has, sim[np.arange(len(sub)), nn], np.nan)
    table["has_neighbour"] = has
    table["correct"] = has & (table["predicted"].to_numpy() == labels)
    table.attrs["n_dropped"] = int((~has).sum())
    table.attrs["holdout"] = holdout
    accuracy = float(table["correct"][has].mean()) if has.any() else float("nan")
    return accuracy, table
