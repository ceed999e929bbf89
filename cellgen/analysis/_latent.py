"""The latent space: ranking, walks, correlations with cell features, the β trade-off.

Paper, sections 4.2 and 4.3, Fig. 2, 3, S1-S3 and S6.
"""

from __future__ import annotations

import inspect
import numbers
import time

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.base import clone

from ..train import RestoreBestWeights
from ._rows import _align_rows

__all__ = ["rank_latent_dimensions", "latent_walk", "latent_feature_correlations",
           "beta_sweep"]


def posterior_kl(mu, logvar):
    """KL divergence of each diagonal-Gaussian posterior dimension from N(0, 1), in float64."""
    mu, logvar = np.asarray(mu, dtype=float), np.asarray(logvar, dtype=float)
    return 0.5 * (mu**2 + np.exp(logvar) - 1.0 - logvar)


def rank_latent_dimensions(mu, logvar=None, *, feature_names=None, threshold=0.1):
    """Rank latent dimensions by mean absolute deviation of the posterior means.

    The paper ranks dimensions by the mean absolute deviation from 0 of ``mu``
    over held-out cells; with log-variances the mean KL divergence per
    dimension is reported too, the rate each dimension carries.

    Parameters
    ----------
    mu : array-like of shape (n_cells, n_latent)
        Posterior means, for example ``ReferenceVAE().transform(X)``.
    logvar : array-like of shape (n_cells, n_latent) or None, default=None
        Posterior log-variances (``ReferenceVAE.encode`` returns both).
    feature_names : sequence of str or None, default=None
        Names of the dimensions; defaults to their indices as strings.
    threshold : float, default=0.1
        A dimension is *effective* when its mean KL (or, without
        ``logvar``, its mean absolute deviation) exceeds this value.

    Returns
    -------
    ranking : pandas.DataFrame
        One row per dimension, best first, with columns ``rank``,
        ``dimension`` (index in ``mu``), ``name``, ``mad``, ``kl`` (NaN without
        ``logvar``) and ``effective``.

    Raises
    ------
    ValueError
        If ``mu`` is not 2D, is empty, holds NaN, or ``logvar`` differs in shape.

    Examples
    --------
    >>> import numpy as np
    >>> from cellgen.analysis import rank_latent_dimensions
    >>> mu = np.array([[0.0, 2.0], [0.1, -2.0]])
    >>> rank_latent_dimensions(mu)["dimension"].tolist()
    [1, 0]
    """
    mu = np.asarray(mu, dtype=float)
    if mu.ndim != 2 or mu.shape[0] == 0:
        raise ValueError(f"mu must be a non-empty 2D array (n_cells, n_latent), got {mu.shape}.")
    if not np.isfinite(mu).all():
        raise ValueError("mu contains NaN or infinite values.")
    mad = np.abs(mu).mean(0)
    kl = np.full(mu.shape[1], np.nan)
    if logvar is not None:
        logvar = np.asarray(logvar, dtype=float)
        if logvar.shape != mu.shape:
            raise ValueError(f"logvar has shape {logvar.shape} but mu has shape {mu.shape}.")
        kl = posterior_kl(mu, logvar).mean(0)
    names = (np.asarray(feature_names, dtype=object) if feature_names is not None
             else np.asarray([str(i) for i in range(mu.shape[1])], dtype=object))
    if len(names) != mu.shape[1]:
        raise ValueError(f"feature_names has {len(names)} names for {mu.shape[1]} dimensions.")
    order = np.argsort(-mad, kind="stable")
    frame = pd.DataFrame({
        "rank": np.arange(1, mu.shape[1] + 1),
        "dimension": order,
        "name": names[order],
        "mad": mad[order],
        "kl": kl[order],
    })
    frame["effective"] = (frame["kl"] if logvar is not None else frame["mad"]) > threshold
    return frame


def _latent_size(model):
    n = getattr(model, "n_latent", None)
    if not isinstance(n, numbers.Integral) or n < 1:
        raise TypeError(
            f"model must be a fitted cellgen estimator with an integer n_latent; got "
            f"{type(model).__name__}."
        )
    return int(n)


def latent_walk(model, dimensions, *, n_steps=9, span=2.0, Z=None, reference=None,
                structures=None):
    """Decode walks along single latent dimensions, the others held at 0.

    The paper's latent walks (Fig. 2c-d, Fig. S2): for each dimension, nine
    steps from -2 to +2 standard deviations of that dimension's variation
    across cells, every other dimension at 0 (the prior mean).

    Parameters
    ----------
    model : ReferenceVAE or ConditionalStructureVAE
        A fitted estimator. A conditional model decodes the structure inside
        one given cell, so it needs ``reference`` and ``structures``.
    dimensions : int or sequence of int
        Latent dimensions to walk along (for example the top of
        :func:`rank_latent_dimensions`).
    n_steps : int, default=9
        Steps per walk.
    span : float, default=2.0
        The walk goes from ``-span`` to ``+span`` standard deviations.
    Z : array-like of shape (n_cells, n_latent) or None, default=None
        Embeddings (for example ``model.transform(X_test)``) whose per-dimension
        standard deviation scales the walk; ``None`` uses the prior's, 1.
    reference : array-like of shape (1, n_reference_channels, [Z,] Y, X) or None
        With a conditional model: the reference channels of the cell the
        structure is drawn in.
    structures : str or None, default=None
        With a conditional model: the structure label.

    Returns
    -------
    images : ndarray of shape (n_dimensions, n_steps, n_channels, [Z,] Y, X)
        One row per dimension, ready for
        ``plot_image_grid(images, spatial_ndim=...)``.
    steps : ndarray of shape (n_dimensions, n_steps)
        The latent value of the walked dimension at each step.

    Raises
    ------
    ValueError
        If a dimension is out of range, ``n_steps`` < 2, ``span`` <= 0, ``Z``
        has the wrong width, or a conditional model lacks ``reference``.

    Examples
    --------
    >>> import numpy as np
    >>> from cellgen import ReferenceVAE
    >>> from cellgen.analysis import latent_walk
    >>> X = np.random.default_rng(0).random((16, 2, 16, 16), dtype=np.float32)
    >>> vae = ReferenceVAE(n_latent=4, widths=(8,), max_epochs=1, batch_size=8, device="cpu").fit(X)
    >>> images, steps = latent_walk(vae, [0, 1])
    >>> images.shape, steps[0, 4]
    ((2, 9, 2, 16, 16), np.float64(0.0))
    """
    n_latent = _latent_size(model)
    dims = np.atleast_1d(np.asarray(dimensions))
    if dims.ndim != 1 or dims.size == 0 or dims.dtype.kind not in "iu":
        raise ValueError(f"dimensions must be integers, got {dimensions!r}.")
    if dims.min() < 0 or dims.max() >= n_latent:
        raise ValueError(f"dimensions must lie in [0, {n_latent}); got {dims.tolist()}.")
    if not isinstance(n_steps, numbers.Integral) or n_steps < 2:
        raise ValueError(f"n_steps must be an integer of at least 2, got {n_steps!r}.")
    if not (isinstance(span, numbers.Real) and span > 0):
        raise ValueError(f"span must be a positive number, got {span!r}.")
    sd = np.ones(n_latent)
    if Z is not None:
        Z = np.asarray(Z, dtype=float)
        if Z.ndim != 2 or Z.shape[1] != n_latent or len(Z) < 2:
            raise ValueError(
                f"Z must be (n_cells >= 2, {n_latent}) embeddings of this model; got "
                f"shape {Z.shape}."
            )
        sd = Z.std(axis=0)
    grid = np.linspace(-span, span, n_steps)
    steps = grid[None, :] * sd[dims][:, None]
    codes = np.zeros((len(dims), n_steps, n_latent), dtype=np.float32)
    for row, d in enumerate(dims):
        codes[row, :, d] = steps[row]
    flat = codes.reshape(-1, n_latent)
    conditional = "reference" in inspect.signature(model.inverse_transform).parameters
    if conditional:
        if reference is None or structures is None:
            raise ValueError(
                "a conditional model decodes structures inside a cell: pass reference= "
                "(one cell's reference channels) and structures= (a label)."
            )
        reference = np.asarray(reference)
        if reference.ndim < 4 or len(reference) != 1:
            raise ValueError(
                f"reference must hold exactly one cell, (1, channels, [Z,] Y, X); got shape "
                f"{reference.shape}."
            )
        ref = np.repeat(reference, len(flat), axis=0)
        images = model.inverse_transform(flat, reference=ref, structures=structures)
    else:
        if reference is not None or structures is not None:
            raise ValueError(f"{type(model).__name__} draws whole cells from its codes; "
                             "reference= and structures= are for a conditional model.")
        images = model.inverse_transform(flat)
    return images.reshape(len(dims), n_steps, *images.shape[1:]), steps


def latent_feature_correlations(Z, features, *, dimensions=None, return_pvalues=False):
    """Spearman correlations of latent dimensions with per-cell features.

    The paper's Fig. S3a: which measured properties of a cell (areas or
    volumes, height, intensities, cell-cycle stage...) each latent dimension
    follows. Spearman's rank correlation is used because the relations need
    not be linear.

    Parameters
    ----------
    Z : array-like or DataFrame of shape (n_cells, n_latent)
        Embeddings; DataFrame columns name the dimensions.
    features : DataFrame of shape (n_cells, n_features)
        Per-cell measurements; non-numeric columns are ignored. Paired with the
        rows of ``Z`` by index label when ``Z`` is a DataFrame too, else by
        position.
    dimensions : sequence of int or None, default=None
        Columns of ``Z`` to keep, in this order (for example the ranking of
        :func:`rank_latent_dimensions`); ``None`` keeps all.
    return_pvalues : bool, default=False
        Also return the two-sided p-values of the correlations.

    Returns
    -------
    rho : DataFrame of shape (n_dimensions, n_features)
        Spearman correlation of each dimension (rows) with each feature.
    pvalues : DataFrame of the same shape
        Only with ``return_pvalues=True``.

    Raises
    ------
    ValueError
        If ``Z`` and ``features`` differ in length or (both DataFrames) in their
        index labels, or no feature is numeric.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from cellgen.analysis import latent_feature_correlations
    >>> rng = np.random.default_rng(0)
    >>> area = rng.random(50)
    >>> Z = np.column_stack([np.exp(area), rng.random(50)])
    >>> rho = latent_feature_correlations(Z, pd.DataFrame({"area": area}))
    >>> round(float(rho.loc["0", "area"]), 3)
    1.0
    """
    names = [str(c) for c in Z.columns] if isinstance(Z, pd.DataFrame) else None
    if isinstance(features, pd.DataFrame) and len(features) == len(Z):
        features = _align_rows(Z, features, "Z", "features")
    Z = np.asarray(Z, dtype=float)
    if Z.ndim != 2:
        raise ValueError(f"Z must be 2D (n_cells, n_latent), got shape {Z.shape}.")
    names = names or [str(i) for i in range(Z.shape[1])]
    if not isinstance(features, pd.DataFrame):
        raise TypeError(f"features must be a pandas DataFrame, got {type(features).__name__}.")
    if len(features) != len(Z):
        raise ValueError(f"Z has {len(Z)} cells but features has {len(features)} rows.")
    numeric = features.select_dtypes(include=[np.number, bool]).astype(float)
    if numeric.shape[1] == 0:
        raise ValueError(
            f"features has no numeric column; its columns are {list(features.columns)}."
        )
    if dimensions is not None:
        dims = [int(d) for d in dimensions]
        Z, names = Z[:, dims], [names[d] for d in dims]
    # Pair by pair: each pair drops only its own missing cells; a dimension or
    # feature that never varies has no rank correlation (NaN).
    values = numeric.to_numpy()
    rho = np.full((Z.shape[1], values.shape[1]), np.nan)
    p = np.full_like(rho, np.nan)
    finite_z = np.isfinite(Z)
    # All dimensions at once when none has a missing value, else one at a time, so
    # that a NaN in one dimension does not drop that cell from the others.
    groups = ([np.arange(Z.shape[1])] if finite_z.all()
              else [np.array([d]) for d in range(Z.shape[1])])
    for j in range(values.shape[1]):
        for dims in groups:
            keep = np.isfinite(values[:, j]) & finite_z[:, dims].all(axis=1)
            rho[dims, j], p[dims, j] = _spearman(Z[keep][:, dims], values[keep, j])
    out = pd.DataFrame(rho, index=names, columns=numeric.columns)
    if return_pvalues:
        return out, pd.DataFrame(p, index=names, columns=numeric.columns)
    return out


def _spearman(A, b):
    """Spearman's ρ and two-sided p of every column of ``A`` with ``b`` (NaN if constant)."""
    n = len(b)
    if n < 3:
        return np.nan, np.nan
    a, b = stats.rankdata(A, axis=0), stats.rankdata(b)
    a, b = a - a.mean(axis=0), b - b.mean()
    denom = np.sqrt((a * a).sum(axis=0) * (b * b).sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.clip((a * b[:, None]).sum(axis=0) / denom, -1.0, 1.0)
        t = r * np.sqrt((n - 2) / np.maximum(1.0 - r * r, 1e-300))
    return (np.where(denom > 0, r, np.nan),
            np.where(denom > 0, 2 * stats.t.sf(np.abs(t), n - 2), np.nan))


def beta_sweep(estimator, X_train, X_test, betas, *, fit_params=None, score_params=None,
               threshold=0.1):
    """Fit one model per β on the same split; report rate and distortion on held-out cells.

    The paper's Fig. 3: β trades a compact representation (low *rate*, the
    KL divergence of the posterior from the prior) against faithful images
    (low *distortion*, the expected reconstruction error). Both are
    measured on ``X_test`` per cell, so that ``-(rate + distortion)`` is the
    held-out ELBO: the rate in nats, the distortion as the summed squared
    error (nats up to a constant under a unit-variance Gaussian likelihood).
    As in the paper (section 6.4), each model keeps the epoch with the best
    *unweighted* validation ELBO, not the best β-weighted objective, when the
    estimator holds out validation cells (unless its ``callbacks`` already
    name a ``"restore_best"``).

    Parameters
    ----------
    estimator : ReferenceVAE or ConditionalStructureVAE
        An unfitted template; it is cloned for each β (its ``random_state``
        is kept, so the runs differ only in β).
    X_train, X_test : array-like of shape (n_cells, n_channels, [Z,] Y, X)
        Training and held-out images.
    betas : sequence of float
        Values of β in [0, 1].
    fit_params : dict or None, default=None
        Extra arguments of ``fit`` (for example ``{"structures": y_train}``).
    score_params : dict or None, default=None
        Extra arguments of ``encode`` and ``score_samples`` on ``X_test`` (for
        example ``{"structures": y_test}``).
    threshold : float, default=0.1
        Mean KL above which a dimension counts as effective.

    Returns
    -------
    sweep : DataFrame
        One row per β: ``beta``, ``rate``, ``distortion``, ``elbo`` (held-out
        means per cell), ``n_effective``, ``best_epoch`` (the epoch kept; the
        last one without a validation split) and ``fit_seconds``.

    Examples
    --------
    >>> import numpy as np
    >>> from cellgen import ReferenceVAE
    >>> from cellgen.analysis import beta_sweep
    >>> X = np.random.default_rng(0).random((24, 2, 16, 16), dtype=np.float32)
    >>> vae = ReferenceVAE(n_latent=4, widths=(8,), max_epochs=1, batch_size=8, device="cpu")
    >>> beta_sweep(vae, X[:16], X[16:], [0.01, 0.5])["beta"].tolist()
    [0.01, 0.5]
    """
    betas = [float(b) for b in np.atleast_1d(betas)]
    if not betas or any(not 0 <= b <= 1 for b in betas):
        raise ValueError(f"betas must be values in [0, 1], got {betas}.")
    fit_params, score_params = dict(fit_params or {}), dict(score_params or {})
    rows = []
    for beta in betas:
        model = clone(estimator).set_params(beta=beta)
        callbacks = list(model.get_params().get("callbacks") or [])
        named = {cb[0] for cb in callbacks if isinstance(cb, tuple)}
        if model.get_params().get("validation_fraction", 0) > 0 and "restore_best" not in named:
            model.set_params(callbacks=[*callbacks,
                                        ("restore_best", RestoreBestWeights("valid_elbo_best"))])
        start = time.perf_counter()
        model.fit(X_train, **fit_params)
        seconds = time.perf_counter() - start
        mu, logvar = model.encode(X_test, **score_params)
        kl = posterior_kl(mu, logvar)
        rate = kl.sum(axis=1)
        elbo = model.score_samples(X_test, **score_params)
        rows.append({
            "beta": beta,
            "rate": float(rate.mean()),
            "distortion": float((-elbo - rate).mean()),
            "elbo": float(elbo.mean()),
            "n_effective": int((kl.mean(axis=0) > threshold).sum()),
            "best_epoch": _epoch_kept(model),
            "fit_seconds": seconds,
        })
    return pd.DataFrame(rows)


def _epoch_kept(model):
    """The epoch whose weights a fitted estimator kept."""
    restore = dict(model.net_.callbacks_).get("restore_best")
    epoch = getattr(restore, "best_epoch_", None)
    return int(epoch if epoch is not None else len(model.history_))
