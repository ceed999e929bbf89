"""Simple per-channel intensity and texture features: a classical profiling baseline."""

from __future__ import annotations

from numbers import Integral

import numpy as np
from joblib import Parallel, delayed, effective_n_jobs
from scipy import ndimage
from skimage.feature import graycomatrix
from skimage.filters import threshold_otsu
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context
from sklearn.utils.validation import check_is_fitted

from ..utils import check_images

__all__ = ["ImageFeatures"]

#: Feature names per channel, in output order.
_FEATURES = (
    "mean", "sd", "p10", "p50", "p90",
    "otsu_fraction", "otsu_integrated",
    "centroid_distance", "radial_mean", "radial_sd",
    "gradient_mean", "laplacian_var",
    "glcm_contrast", "glcm_homogeneity", "glcm_correlation", "glcm_energy",
)
#: Grey levels of the GLCM quantization: coarse enough for a 68x68 crop to fill the matrix.
_LEVELS = 32
_ANGLES = (0.0, np.pi / 4, np.pi / 2, 3 * np.pi / 4)
_I, _J = (g[:, :, None] for g in np.meshgrid(np.arange(_LEVELS, dtype=np.float64),
                                             np.arange(_LEVELS, dtype=np.float64),
                                             indexing="ij"))


def _glcm(img2d):
    lo, hi = float(img2d.min()), float(img2d.max())
    if hi <= lo:
        # A uniform image: no contrast, perfectly homogeneous; correlation is
        # undefined and set to 0.
        return [0.0, 1.0, 0.0, 1.0]
    # Each cell's own range: texture independent of brightness, which the
    # intensity features already carry.
    q = np.minimum(((img2d - lo) / (hi - lo) * _LEVELS).astype(np.uint8), _LEVELS - 1)
    P = graycomatrix(q, distances=[1], angles=_ANGLES, levels=_LEVELS, symmetric=True,
                     normed=True)[:, :, 0, :]
    # graycoprops' definitions, computed in one pass for the four directions (it is
    # several times slower called once per property).
    diff2 = (_I - _J) ** 2
    contrast = (P * diff2).sum((0, 1))
    homogeneity = (P / (1.0 + diff2)).sum((0, 1))
    energy = np.sqrt((P**2).sum((0, 1)))
    mu = (P * _I).sum((0, 1))
    sd = np.sqrt((P * (_I - mu) ** 2).sum((0, 1)))
    cov = (P * (_I - mu) * (_J - mu)).sum((0, 1))
    # Symmetric matrices: the row and column marginals are equal.
    corr = np.where(sd > 1e-12, cov / np.where(sd > 1e-12, sd**2, 1.0), 0.0)
    return [float(contrast.mean()), float(homogeneity.mean()), float(corr.mean()),
            float(energy.mean())]


def _channel_features(img, grids, centre):
    """The ``_FEATURES`` of one channel ``img`` (2D or 3D)."""
    flat = img.ravel()
    out = [flat.mean(), flat.std(), *np.percentile(flat, (10, 50, 90))]
    lo, hi = float(flat.min()), float(flat.max())
    if hi > lo:
        above = flat > threshold_otsu(flat)  # a histogram threshold: shape-free
        out += [above.mean(), flat[above].sum()]
    else:
        out += [0.0, 0.0]
    mass = np.clip(img, 0.0, None)
    total = mass.sum()
    if total > 0:
        com = np.array([(g * mass).sum() / total for g in grids])
        out.append(float(np.linalg.norm(com - centre)))
        r = np.sqrt(sum((g - c) ** 2 for g, c in zip(grids, com)))
        r_mean = (r * mass).sum() / total
        out += [r_mean, np.sqrt(max(((r - r_mean) ** 2 * mass).sum() / total, 0.0))]
    else:
        out += [0.0, 0.0, 0.0]
    # np.gradient needs two samples along an axis; a one-pixel axis has no slope.
    grad = np.sqrt(sum(np.gradient(img, axis=a) ** 2 for a in range(img.ndim)
                       if img.shape[a] > 1)) * np.ones_like(img)
    out += [grad.mean(), ndimage.laplace(img).var()]
    out += _glcm(img if img.ndim == 2 else img.max(0))
    return out


def _features(X):
    spatial = X.shape[2:]
    grids = np.meshgrid(*(np.arange(s, dtype=np.float64) for s in spatial), indexing="ij")
    centre = (np.asarray(spatial, dtype=np.float64) - 1) / 2
    out = np.empty((X.shape[0], X.shape[1] * len(_FEATURES)), dtype=np.float64)
    for i in range(X.shape[0]):
        out[i] = np.concatenate([
            _channel_features(X[i, c].astype(np.float64), grids, centre)
            for c in range(X.shape[1])])
    return out


class ImageFeatures(TransformerMixin, BaseEstimator):
    """Per-channel intensity, shape-of-mass and texture features of cell images.

    A classical baseline for image-based profiling: 16 features per channel,
    computed on each cell's own pixels, to compare with learned embeddings under
    the same profiling protocol (:func:`cellgen.analysis.aggregate_profiles`).

    Per channel: ``mean``, ``sd`` and percentiles ``p10``, ``p50``, ``p90`` of the
    intensities; ``otsu_fraction`` (fraction of pixels above the cell's Otsu
    threshold) and ``otsu_integrated`` (summed intensity above it);
    ``centroid_distance`` (distance from the image centre to the intensity-weighted
    centre of mass, in pixels); ``radial_mean`` and ``radial_sd`` (intensity-weighted
    mean and SD of the distance to that centre of mass); ``gradient_mean`` (mean
    gradient magnitude) and ``laplacian_var`` (variance of the Laplacian); and the
    grey-level co-occurrence features ``glcm_contrast``, ``glcm_homogeneity``,
    ``glcm_correlation`` and ``glcm_energy`` (distance 1, averaged over 4
    directions, 32 grey levels spanning each cell's own range; on the maximum
    projection along Z for 3D images).

    Nothing is learned: ``fit`` records the number of channels and their names.

    Parameters
    ----------
    channels : sequence of str or None, default=None
        Channel names used in the feature names ``<channel>_<feature>``; ``None``
        names them ``ch0``, ``ch1``, ...
    n_jobs : int or None, default=None
        Parallel workers (threads) over chunks of cells; ``None`` means 1.

    Attributes
    ----------
    n_channels_in_ : int
        Number of channels seen in ``fit``.
    spatial_ndim_ : int
        Number of spatial axes seen in ``fit`` (2 or 3).
    feature_names_out_ : ndarray of str
        Names of the output features.

    See Also
    --------
    IntensityNormalizer : Normalize the images first, so that features compare across cells.
    cellgen.analysis.aggregate_profiles : Aggregate per-cell features into profiles.

    Notes
    -----
    Features are not standardized; scale them (e.g. ``StandardScaler``) before
    comparing profiles by cosine similarity.

    Examples
    --------
    >>> import numpy as np
    >>> from cellgen.preprocessing import ImageFeatures
    >>> X = np.random.RandomState(0).rand(3, 2, 16, 16).astype(np.float32)
    >>> F = ImageFeatures(channels=["DNA", "actin"]).fit_transform(X)
    >>> F.shape
    (3, 32)
    >>> ImageFeatures(channels=["DNA", "actin"]).fit(X).get_feature_names_out()[:2]
    array(['DNA_mean', 'DNA_sd'], dtype=object)
    """

    _parameter_constraints = {
        "channels": ["array-like", None],
        "n_jobs": [Integral, None],
    }

    def __init__(self, channels=None, n_jobs=None):
        self.channels = channels
        self.n_jobs = n_jobs

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False  # images, not a table
        return tags

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Check the images and record their channels.

        Parameters
        ----------
        X : array-like of shape (n_cells, n_channels, [Z,] Y, X)
            Images.
        y : None
            Ignored.

        Returns
        -------
        self : ImageFeatures
            The fitted transformer.
        """
        X = check_images(X)
        names = ([f"ch{c}" for c in range(X.shape[1])] if self.channels is None
                 else [str(c) for c in self.channels])
        if len(names) != X.shape[1]:
            raise ValueError(f"channels names {len(names)} channels but X has {X.shape[1]}.")
        if len(set(names)) != len(names):
            raise ValueError(f"channels has duplicate names: {names}.")
        self.n_channels_in_ = X.shape[1]
        self.spatial_ndim_ = X.ndim - 2
        self.feature_names_out_ = np.asarray(
            [f"{c}_{f}" for c in names for f in _FEATURES], dtype=object)
        return self

    def transform(self, X):
        """Compute the features of every cell.

        Parameters
        ----------
        X : array-like of shape (n_cells, n_channels, [Z,] Y, X)
            Images with the channels and dimensionality seen in ``fit``.

        Returns
        -------
        features : ndarray of shape (n_cells, 16 * n_channels)
            One row per cell (a DataFrame after ``set_output(transform="pandas")``).
        """
        check_is_fitted(self, "feature_names_out_")
        X = check_images(X, n_channels=self.n_channels_in_, spatial_ndim=self.spatial_ndim_)
        n_workers = effective_n_jobs(self.n_jobs)
        if n_workers == 1 or len(X) < 2:
            return _features(X)
        bounds = np.linspace(0, len(X), min(len(X), 4 * n_workers) + 1).astype(int)
        parts = Parallel(n_jobs=n_workers, prefer="threads")(
            delayed(_features)(X[lo:hi]) for lo, hi in zip(bounds[:-1], bounds[1:]))
        return np.concatenate(parts, axis=0)

    def get_feature_names_out(self, input_features=None):
        """Names of the output features, ``<channel>_<feature>``.

        Parameters
        ----------
        input_features : None
            Ignored (the inputs are images, not named columns).

        Returns
        -------
        feature_names_out : ndarray of str
            The feature names.
        """
        check_is_fitted(self, "feature_names_out_")
        return self.feature_names_out_.copy()
