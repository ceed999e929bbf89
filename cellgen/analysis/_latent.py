"""Ranking latent dimensions (paper, section 4.2 and Fig. S3, S6)."""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["rank_latent_dimensions"]


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
        kl = (0.5 * (mu**2 + np.exp(logvar) - 1.0 - logvar)).mean(0)
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
