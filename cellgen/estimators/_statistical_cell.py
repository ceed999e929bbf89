"""StatisticalCell: the reference and conditional models together."""

from __future__ import annotations

from numbers import Integral

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context, clone
from sklearn.frozen import FrozenEstimator
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import HasMethods
from sklearn.utils.validation import check_is_fitted

from ..utils import check_labels, check_n_samples
from ..utils._arrays import channel_view
from . import _persist
from ._base import _model_images, _reference_part, _unchanged_on_failure
from ._conditional import ConditionalStructureVAE, _labels, _resolve_channels
from ._reference import ReferenceVAE

__all__ = ["StatisticalCell"]


class StatisticalCell(TransformerMixin, BaseEstimator):
    """The Statistical Cell: ``p(x_r, x_s | s) = p(x_r) p(x_s | x_r, s)``.

    Composes a :class:`ReferenceVAE` of the reference channels (cell membrane
    and DNA) with a :class:`ConditionalStructureVAE` of the structure channel
    given the reference and the structure label. The two are trained
    independently on the same cells, as in the paper.

    Parameters
    ----------
    reference_model : ReferenceVAE, FrozenEstimator or None, default=None
        Unfitted model of the reference channels (cloned in ``fit``), or a
        fitted one wrapped in :class:`sklearn.frozen.FrozenEstimator`, kept as
        it is (one reference model shared by several structure models);
        ``None`` uses ``ReferenceVAE()`` with the paper's settings.
    structure_model : ConditionalStructureVAE or None, default=None
        Unfitted conditional model (cloned in ``fit``; its channel parameters
        are set from this estimator's); ``None`` uses
        ``ConditionalStructureVAE()``.
    reference_channels : sequence of int or None, default=None
        Channels of ``X`` holding the reference; ``None`` means every channel
        except ``structure_channel``.
    structure_channel : int, default=-1
        Channel of ``X`` holding the tagged structure.

    Attributes
    ----------
    reference_model_ : ReferenceVAE
        The fitted reference model.
    structure_model_ : ConditionalStructureVAE
        The fitted conditional model.
    classes_ : ndarray
        Structure labels seen in ``fit``.
    reference_channels_ : list of int
        Reference channel indices.
    structure_channel_ : int
        Structure channel index.
    n_channels_in_ : int
        Channels of ``X`` seen in ``fit``.
    spatial_shape_ : tuple of int
        Spatial shape seen in ``fit``.

    See Also
    --------
    ReferenceVAE, ConditionalStructureVAE

    Examples
    --------
    >>> from cellgen import ConditionalStructureVAE, ReferenceVAE, StatisticalCell
    >>> from cellgen.datasets import make_cells
    >>> X, y, meta = make_cells(64, shape=(16, 16), random_state=0)
    >>> small = dict(n_latent=4, widths=(8, 16), max_epochs=2, random_state=0)
    >>> cell = StatisticalCell(ReferenceVAE(**small), ConditionalStructureVAE(**small))
    >>> cell.fit(X, y).transform(X, structures=y).shape
    (64, 8)
    >>> cell.impute(X[:2], ["nucleoli", "cell_periphery"]).shape
    (2, 4, 16, 16)
    >>> images, labels = cell.sample(3, random_state=0)
    >>> images.shape
    (3, 3, 16, 16)
    """

    _parameter_constraints = {
        "reference_model": [HasMethods(["fit", "transform", "score_samples"]), None],
        "structure_model": [HasMethods(["fit", "transform", "score_samples"]), None],
        "reference_channels": ["array-like", None],
        "structure_channel": [Integral],
    }

    def __init__(self, reference_model=None, structure_model=None, *,
                 reference_channels=None, structure_channel=-1):
        self.reference_model = reference_model
        self.structure_model = structure_model
        self.reference_channels = reference_channels
        self.structure_channel = structure_channel

    # ------------------------------------------------------------ helpers
    def _reference_of(self, X, name="X"):
        """Reference channels of ``X``: reference-only images or full images."""
        check_is_fitted(self, "structure_model_")
        return _reference_part(X, self.reference_channels_, self.n_channels_in_,
                               self.spatial_shape_, name)

    def _check_full(self, X):
        check_is_fitted(self, "structure_model_")
        return _model_images(X, spatial_ndim=len(self.spatial_shape_),
                            n_channels=self.n_channels_in_, spatial_shape=self.spatial_shape_)

    def _conditional_input(self, X):
        # The conditional model sees [reference..., structure] in that order.
        return channel_view(X, [*self.reference_channels_, self.structure_channel_])

    # ------------------------------------------------------------ API
    @_fit_context(prefer_skip_nested_validation=False)
    @_unchanged_on_failure
    def fit(self, X, y=None, *, structures=None):
        """Fit the reference model and the conditional structure model.

        Parameters
        ----------
        X : array-like of shape (n_cells, n_channels, [Z,] Y, X)
            Reference channels and structure channel of each cell.
        y : array-like of shape (n_cells,)
            Structure label of each cell (used when ``structures`` is None).
        structures : array-like of shape (n_cells,) or None, default=None
            Structure labels, taking precedence over ``y``; in a Pipeline,
            route them here with ``set_fit_request(structures=True)`` when
            ``y`` is another target (for example the cell-cycle phase).

        Returns
        -------
        self : StatisticalCell
            The fitted estimator.
        """
        X = _model_images(X, min_channels=2)
        labels = _labels(y, structures, X.shape[0])
        self.reference_channels_, self.structure_channel_ = _resolve_channels(
            self.reference_channels, self.structure_channel, X.shape[1])
        self.n_channels_in_ = X.shape[1]
        self.spatial_shape_ = tuple(X.shape[2:])
        n_ref = len(self.reference_channels_)
        ref_model = clone(self.reference_model) if self.reference_model is not None \
            else ReferenceVAE()
        struct_model = clone(self.structure_model) if self.structure_model is not None \
            else ConditionalStructureVAE()
        struct_model.set_params(reference_channels=list(range(n_ref)), structure_channel=n_ref)
        # y=None passed on, as scikit-learn's meta-estimators do: a FrozenEstimator
        # (a reference model fitted once, reused for every structure) needs it.
        fitted = ref_model.fit(channel_view(X, self.reference_channels_), None)
        self.reference_model_ = (fitted.estimator if isinstance(fitted, FrozenEstimator)
                                 else fitted)
        seen = (self.reference_model_.n_channels_in_, tuple(self.reference_model_.spatial_shape_))
        if seen != (n_ref, self.spatial_shape_):
            # A frozen reference model keeps its own fit: say so before training the
            # structure model, not at the first transform.
            raise ValueError(
                f"The reference model was fitted on cells of {seen[0]} channel(s) and spatial "
                f"shape {seen[1]}, but X gives it {n_ref} reference channel(s) of shape "
                f"{self.spatial_shape_}; pass cells of its shape and channels, or a reference "
                "model to fit on these cells."
            )
        self.structure_model_ = struct_model.fit(self._conditional_input(X), structures=labels)
        self.classes_ = self.structure_model_.classes_
        return self

    def fit_transform(self, X, y=None, *, structures=None):
        """Fit, then return ``[z_reference, z_structure]`` of the training cells.

        Parameters
        ----------
        X : array-like of shape (n_cells, n_channels, [Z,] Y, X)
            Reference channels and structure channel of each cell.
        y : array-like of shape (n_cells,) or None
            Structure labels (used when ``structures`` is None).
        structures : array-like of shape (n_cells,) or None, default=None
            Structure labels, taking precedence over ``y``.

        Returns
        -------
        Z : ndarray of shape (n_cells, n_latent_reference + n_latent_structure)
            Concatenated posterior means.
        """
        labels = structures if structures is not None else y
        return self.fit(X, structures=labels).transform(X, structures=labels)

    def transform(self, X, structures=None):
        """Embed cells: ``[z_reference, z_structure]`` posterior means.

        Parameters
        ----------
        X : array-like of shape (n_cells, n_channels, [Z,] Y, X)
            Images with the channels and shape seen in ``fit``.
        structures : array-like of shape (n_cells,) or a single label
            Structure label of each cell (required for the conditional part).

        Returns
        -------
        Z : ndarray of shape (n_cells, n_latent_reference + n_latent_structure)
            Concatenated posterior means.
        """
        X = self._check_full(X)
        z_ref = self.reference_model_.transform(channel_view(X, self.reference_channels_))
        z_struct = self.structure_model_.transform(self._conditional_input(X),
                                                   structures=structures)
        return np.hstack([z_ref, z_struct])

    def encoder_features(self, X, structures=None, blocks=(-2, -1)):
        """Profile cells by the pooled encoder feature maps of both models.

        ``[reference features, structure features]``: the output of
        :meth:`ReferenceVAE.encoder_features` on the reference channels beside
        that of :meth:`ConditionalStructureVAE.encoder_features` on the
        structure channel, the same ``blocks`` for both. Standardize before
        distances.

        Parameters
        ----------
        X : array-like of shape (n_cells, n_channels, [Z,] Y, X)
            Images with the channels and shape seen in ``fit``.
        structures : array-like of shape (n_cells,) or a single label
            Structure label of each cell (required for the structure part).
        blocks : sequence of int, default=(-2, -1)
            Encoder blocks to pool in each model, as indices into its ``widths``.

        Returns
        -------
        F : ndarray of shape (n_cells, n_reference_features + n_structure_features)
            Reference features, then structure features.

        Examples
        --------
        >>> from cellgen import ConditionalStructureVAE, ReferenceVAE, StatisticalCell
        >>> from cellgen.datasets import make_cells
        >>> X, y, meta = make_cells(64, shape=(16, 16), random_state=0)
        >>> small = dict(n_latent=4, widths=(8, 16), max_epochs=2, random_state=0)
        >>> sc = StatisticalCell(ReferenceVAE(**small), ConditionalStructureVAE(**small))
        >>> sc.fit(X, y).encoder_features(X, structures=y).shape  # 2 * 2 * (8 + 16)
        (64, 96)
        """
        X = self._check_full(X)
        f_ref = self.reference_model_.encoder_features(
            channel_view(X, self.reference_channels_), blocks=blocks)
        f_struct = self.structure_model_.encoder_features(
            self._conditional_input(X), structures=structures, blocks=blocks)
        return np.hstack([f_ref, f_struct])

    def save(self, path, *, overwrite=False):
        """Save the fitted model to a folder: weights in safetensors, the rest in JSON.

        The folder holds ``cellgen.json`` and one sub-folder per model
        (``reference_model/``, ``structure_model/``, each as written by
        :meth:`ReferenceVAE.save`). Nothing is pickled, and the folder is
        written whole or not at all.

        Parameters
        ----------
        path : str or path-like
            Folder to create.
        overwrite : bool, default=False
            Replace an existing folder (only once the new one is complete).

        Returns
        -------
        path : pathlib.Path
            The folder written.

        Examples
        --------
        >>> import tempfile
        >>> from cellgen import ConditionalStructureVAE, ReferenceVAE, StatisticalCell
        >>> from cellgen.datasets import make_cells
        >>> X, y, _ = make_cells(24, shape=(16, 16), random_state=0)
        >>> small = dict(n_latent=2, widths=(8,), max_epochs=1, batch_size=8, device="cpu")
        >>> cell = StatisticalCell(ReferenceVAE(**small), ConditionalStructureVAE(**small))
        >>> folder = cell.fit(X, y).save(tempfile.mkdtemp() + "/cell")
        >>> sorted(p.name for p in folder.iterdir())
        ['cellgen.json', 'reference_model', 'structure_model']
        """
        return _persist.save_statistical_cell(self, path, overwrite=overwrite)

    @classmethod
    def load(cls, path, *, device=None):
        """Load a StatisticalCell written by :meth:`save` (JSON and safetensors only).

        Parameters
        ----------
        path : str or path-like
            Folder written by :meth:`save`.
        device : str or None, default=None
            Device for both models; ``None`` keeps the saved one when it is
            available, else the CPU.

        Returns
        -------
        cell : StatisticalCell
            The fitted estimator.

        Examples
        --------
        >>> import tempfile
        >>> import numpy as np
        >>> from cellgen import ConditionalStructureVAE, ReferenceVAE, StatisticalCell
        >>> from cellgen.datasets import make_cells
        >>> X, y, _ = make_cells(24, shape=(16, 16), random_state=0)
        >>> small = dict(n_latent=2, widths=(8,), max_epochs=1, batch_size=8, device="cpu")
        >>> cell = StatisticalCell(ReferenceVAE(**small), ConditionalStructureVAE(**small))
        >>> cell = cell.fit(X, y)
        >>> again = StatisticalCell.load(cell.save(tempfile.mkdtemp() + "/cell"))
        >>> bool(np.allclose(again.transform(X, structures=y), cell.transform(X, structures=y)))
        True
        """
        return _persist.load_statistical_cell(cls, path, device)

    def get_feature_names_out(self, input_features=None):
        """Names of the concatenated latent dimensions (``ref_z*`` then ``struct_z*``).

        Parameters
        ----------
        input_features : None
            Ignored; present for scikit-learn API compatibility.

        Returns
        -------
        names : ndarray of str
            One name per output column of ``transform``.
        """
        check_is_fitted(self, "structure_model_")
        return np.concatenate([self.reference_model_.get_feature_names_out(),
                               self.structure_model_.get_feature_names_out()])

    def sample(self, n_samples=1, structures=None, random_state=None):
        """Generate whole cells: a reference from ``p(x_r)``, then a structure in it.

        Parameters
        ----------
        n_samples : int, default=1
            Number of cells.
        structures : array-like of shape (n_samples,), a single label or None
            Structure of each generated cell; ``None`` draws labels uniformly
            from ``classes_``.
        random_state : int, RandomState instance or None, default=None
            Seeds all draws.

        Returns
        -------
        X : ndarray of shape (n_samples, n_channels, [Z,] Y, X)
            Generated cells, channels in the order seen in ``fit``; channels
            that are neither reference nor structure channels are 0.
        structures : ndarray of shape (n_samples,)
            The structure label of each generated cell.
        """
        check_is_fitted(self, "structure_model_")
        n = check_n_samples(n_samples)
        rng = check_random_state(random_state)
        if structures is None:
            labels = self.classes_[rng.randint(len(self.classes_), size=n)]
        else:
            labels = check_labels(structures, n, name="structures", known=self.classes_)
        ref = self.reference_model_.sample(n, random_state=rng)
        struct = self.structure_model_.sample(ref, labels, random_state=rng)
        out = np.zeros((n, self.n_channels_in_, *self.spatial_shape_), dtype=np.float32)
        out[:, self.reference_channels_] = ref
        out[:, self.structure_channel_] = struct[:, 0]
        return out, labels

    def impute(self, X, structures=None, n_samples=None, random_state=None):
        """The integrated cell: impute every requested structure into each given cell.

        Parameters
        ----------
        X : array-like of shape (n_cells, n_channels, [Z,] Y, X)
            Cells given by their reference channels (or all channels; the
            structure channel is then ignored).
        structures : sequence of labels, a single label or None, default=None
            Structures to impute into every cell; ``None`` imputes all of
            ``classes_``.
        n_samples : int or None, default=None
            ``None`` gives one image per structure decoded at the prior mean
            (the most typical localization); an int gives that many draws.
        random_state : int, RandomState instance or None, default=None
            Seeds the draws.

        Returns
        -------
        X_integrated : ndarray
            The reference channels followed by one channel per requested
            structure: ``(n_cells, n_ref + n_structures, [Z,] Y, X)``, or
            ``(n_cells, n_samples, n_ref + n_structures, [Z,] Y, X)`` with
            ``n_samples``.
        """
        ref = self._reference_of(X)
        if structures is None:
            requested = list(self.classes_)
        else:
            requested = np.atleast_1d(np.asarray(structures, dtype=object)).tolist()
            if not requested:
                raise ValueError("structures is empty: name at least one structure to "
                                 f"impute, from {list(self.classes_)}, or pass None for all.")
            check_labels(np.asarray(requested, dtype=object), len(requested),
                         name="structures", known=self.classes_)
        rng = check_random_state(random_state)
        n, n_ref = ref.shape[:2]
        k = None if n_samples is None else check_n_samples(n_samples)
        # One output array, filled in place: gathering the parts and concatenating
        # them held the result twice.
        shape = (n, n_ref + len(requested), *ref.shape[2:])
        out = np.empty(shape if k is None else (n, k, *shape[1:]), dtype=np.float32)
        step = self.structure_model_._inference_batch()
        for start in range(0, n, step):
            # Row blocks: ref may be a lazy view of a memory-mapped X.
            block = np.asarray(ref[start:start + step])
            if k is None:
                out[start:start + step, :n_ref] = block
            else:
                out[start:start + step, :, :n_ref] = block[:, None]
        for j, label in enumerate(requested):
            part = self.structure_model_.impute(ref, label, n_samples=n_samples,
                                                random_state=rng)
            if k is None:
                out[:, n_ref + j] = part[:, 0]
            else:
                out[:, :, n_ref + j] = part[:, :, 0]
        return out

    def score_samples(self, X, structures=None):
        """Per-cell ELBO of the whole cell: ``ELBO(x_r) + ELBO(x_s | x_r, s)``.

        Seeded like the two models' ``score_samples``: repeated calls on the same
        ``X`` give identical values. The draws follow the row order, so a cell
        scored at another position or in another batch gets other draws: the
        Monte Carlo noise of the ELBO, which a larger ``n_elbo_samples`` shrinks.

        Parameters
        ----------
        X : array-like of shape (n_cells, n_channels, [Z,] Y, X)
            Images with the channels and shape seen in ``fit``.
        structures : array-like of shape (n_cells,) or a single label
            Structure label of each cell.

        Returns
        -------
        elbo : ndarray of shape (n_cells,)
            Higher means more typical.
        """
        X = self._check_full(X)
        return (self.reference_model_.score_samples(channel_view(X, self.reference_channels_))
                + self.structure_model_.score_samples(self._conditional_input(X),
                                                      structures=structures))

    def score(self, X, y=None, *, structures=None):
        """Mean whole-cell ELBO (higher is better).

        Parameters
        ----------
        X : array-like of shape (n_cells, n_channels, [Z,] Y, X)
            Images with the channels and shape seen in ``fit``.
        y : array-like of shape (n_cells,) or None
            Structure labels (used when ``structures`` is None).
        structures : array-like of shape (n_cells,) or None, default=None
            Structure labels, taking precedence over ``y``.

        Returns
        -------
        score : float
            Mean of ``score_samples``.
        """
        labels = structures if structures is not None else y
        return float(np.mean(self.score_samples(X, structures=labels)))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.target_tags.required = True
        tags.transformer_tags.preserves_dtype = ["float32"]
        return tags
