"""What every image transformer of cellgen.preprocessing shares.

Images are ``(n_cells, n_channels, [Z,] Y, X)`` arrays, not tables, so these
transformers opt out of scikit-learn's automatic output wrapping (which would try
to turn a 4D or 5D array into a DataFrame) yet still accept ``set_output``, which
``Pipeline.set_output`` calls on every step, and answer ``get_feature_names_out``
with None, which ``Pipeline.get_feature_names_out`` passes to the next step.
"""

from __future__ import annotations

import numpy as np
from joblib import Parallel, delayed, effective_n_jobs
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from ..utils import check_images
from ..utils._state import unchanged_on_failure

__all__ = []

#: Containers ``set_output`` accepts, as in scikit-learn (None leaves the setting).
_OUTPUT_CONTAINERS = ("default", "pandas", "polars")


class _ImageTransformer(TransformerMixin, BaseEstimator):
    """Base class: fit records the input geometry, transform checks it and maps cells.

    Subclasses implement ``_transform(X)`` on a validated float32 array; the base
    validates inputs, splits the cells across ``n_jobs`` workers and keeps the
    output an ndarray whatever ``set_output`` asked for.
    """

    #: joblib backend preference for ``n_jobs > 1``. scipy.ndimage holds the GIL for
    #: most of the work, so two threads gave between 0.7x and 1.4x of serial speed on
    #: 2 cores (BBBC021 pipeline), while loky processes, which copy every chunk to a
    #: worker and back, were slower than serial; threads cost the least
    #: (benchmarks/RESULTS.md).
    _prefer = "threads"
    #: Cells per parallel task at most; small enough to balance the load.
    _chunk_cells = 64

    def __init_subclass__(cls, **kwargs):
        # No automatic wrapping of transform/fit_transform into DataFrames.
        kwargs.setdefault("auto_wrap_output_keys", None)
        super().__init_subclass__(**kwargs)
        if "fit" in cls.__dict__:
            # A refused refit leaves the earlier fit in place.
            cls.fit = unchanged_on_failure(cls.__dict__["fit"])

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False  # images, not a table
        tags.transformer_tags.preserves_dtype = ["float32"]
        return tags

    def set_output(self, *, transform=None):
        """Accept an output container setting and keep returning arrays.

        Images are ``(n_cells, n_channels, [Z,] Y, X)`` arrays, which have no
        tabular form, so the setting is stored (and survives ``clone``) but
        ``transform`` always returns a float32 ndarray. This lets the transformer
        sit in a ``Pipeline`` on which ``set_output(transform="pandas")`` is
        called, for example to have a later step return a DataFrame of features.

        Parameters
        ----------
        transform : {"default", "pandas", "polars"} or None, default=None
            Requested container; ``None`` leaves the setting unchanged.

        Returns
        -------
        self : estimator instance
            The transformer itself.
        """
        if transform is None:
            return self
        if transform not in _OUTPUT_CONTAINERS:
            raise ValueError(
                f"transform must be one of {list(_OUTPUT_CONTAINERS)} or None, got {transform!r}."
            )
        if not hasattr(self, "_sklearn_output_config"):
            self._sklearn_output_config = {}
        self._sklearn_output_config["transform"] = transform
        return self

    def get_feature_names_out(self, input_features=None):
        """Return None: images have no feature names.

        Present so that ``Pipeline.get_feature_names_out`` can pass through
        these steps to a later one that names its own outputs whatever its
        input, such as :class:`~cellgen.preprocessing.ImageFeatures` or an
        embedding model: the pipeline then returns that step's names.

        Parameters
        ----------
        input_features : None
            Ignored: the inputs are images, not named columns.

        Returns
        -------
        feature_names_out : None
            Always None.
        """
        check_is_fitted(self, "n_channels_in_")
        return None

    # ------------------------------------------------------------------ validation
    def _validate_fit_input(self, X, **kwargs):
        """Validate ``X`` in fit and record what transform will check against."""
        X = check_images(X, **kwargs)
        self.n_channels_in_ = X.shape[1]
        self.spatial_ndim_ = X.ndim - 2
        self.spatial_shape_in_ = tuple(int(s) for s in X.shape[2:])
        return X

    def _validate_transform_input(self, X, *, same_shape=False, name="X"):
        """Validate ``X`` in transform against the channels and dimensionality seen in fit."""
        check_is_fitted(self, "n_channels_in_")
        return check_images(
            X,
            name=name,
            n_channels=self.n_channels_in_,
            spatial_ndim=self.spatial_ndim_,
            spatial_shape=self.spatial_shape_in_ if same_shape else None,
        )

    # ------------------------------------------------------------------ parallelism
    def _map_cells(self, func, arrays, n_jobs=None):
        """Apply ``func`` to chunks of cells (rows of each of ``arrays``) and stack the outputs.

        ``func`` takes one chunk per array and returns an ndarray whose first axis
        is the chunk's cells; every cell is processed on its own, so the result
        does not depend on the chunking.
        """
        n = arrays[0].shape[0]
        n_workers = effective_n_jobs(n_jobs)
        if n_workers == 1 or n == 1:
            return func(*arrays)
        n_chunks = min(n, max(n_workers, -(-n // self._chunk_cells)))
        bounds = np.linspace(0, n, n_chunks + 1).astype(int)
        parts = Parallel(n_jobs=n_workers, prefer=self._prefer)(
            delayed(func)(*(a[lo:hi] for a in arrays))
            for lo, hi in zip(bounds[:-1], bounds[1:])
        )
        return np.concatenate(parts, axis=0)
