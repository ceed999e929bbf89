"""ConditionalStructureVAE: structure localization given the cell (the paper's M_T)."""

from __future__ import annotations

from numbers import Integral

import numpy as np
import torch
from sklearn.base import _fit_context
from sklearn.preprocessing import LabelEncoder
from sklearn.utils._param_validation import StrOptions
from sklearn.utils.validation import check_is_fitted

from ..module import ConditionalVAE
from ..utils import check_channel_index, check_labels, check_n_samples
from ..utils._arrays import channel_view
from ._base import (
    _COMMON_CONSTRAINTS,
    _BaseVAEEstimator,
    _model_images,
    _reference_part,
    _unchanged_on_failure,
    _with_runtime_parameters,
)

__all__ = ["ConditionalStructureVAE"]

# Tensor dtypes of the (structure, reference, label code) inputs.
_DTYPES = [torch.float32, torch.float32, torch.int64]


def _labels(y, structures, n, known=None, name="structures"):
    """The structure labels: ``structures`` when given, else ``y``."""
    if structures is not None:
        return check_labels(structures, n, name=name, known=known)
    return check_labels(y, n, name="y", known=known)


def _resolve_channels(reference_channels, structure_channel, n_channels):
    """Reference channel indices and the structure channel index of ``n_channels``."""
    s = check_channel_index(structure_channel, n_channels, "structure_channel")
    if reference_channels is None:
        ref = [c for c in range(n_channels) if c != s]
    else:
        ref = [check_channel_index(c, n_channels, "reference_channels")
               for c in np.atleast_1d(reference_channels).tolist()]
        if s in ref:
            raise ValueError(f"reference_channels {ref} include the structure channel {s}.")
        if len(set(ref)) != len(ref):
            raise ValueError(f"reference_channels {ref} repeat a channel.")
    if not ref:
        raise ValueError(
            f"X needs at least one reference channel besides the structure channel {s}; "
            f"it has {n_channels} channel(s)."
        )
    return ref, s


@_with_runtime_parameters
class ConditionalStructureVAE(_BaseVAEEstimator):
    """Conditional β-VAE of one structure channel given the reference image and label.

    The Statistical Cell's model of subcellular structure localization,
    ``p(x_structure | x_reference, label)``: the reference image (resized to
    each block's resolution, through a 1×1 convolution) and the one-hot
    structure label (through a 1×1 convolution, added to every pixel) are
    injected at every residual block of encoder and decoder. Once fitted it
    imputes any known structure into any cell, including structures a cell was
    never imaged with.

    Parameters
    ----------
    n_latent : int, default=512
        Dimension of the conditional latent space.
    reference_channels : sequence of int or None, default=None
        Channels of ``X`` that hold the reference image; ``None`` means every
        channel except ``structure_channel``.
    structure_channel : int, default=-1
        Channel of ``X`` that holds the tagged structure (negative counts from
        the end).
    widths : sequence of int, default=(32, 64, 128, 256, 512)
        Channels of the residual blocks.
    beta : float, default=0.5
        Weight of the KL term in ``(1 - beta) * reconstruction + beta * KL``.
    n_elbo_samples : int, default=10
        Draws of ``z`` averaged by ``score_samples``.
    max_epochs : int, default=300
        Training epochs.
    batch_size : int, default=32
        Cells per training batch; ``fit`` refuses a batch larger than the
        training cells (the cells left after the validation split).
    lr : float, default=2e-4
        Adam learning rate.
    validation_fraction : float, default=0.1
        Fraction of cells held out to pick the best epoch. A positive value
        must leave at least one cell on each side of the split; 0 trains on all
        cells and keeps the last weights.
    spectral_norm : bool, default=True
        Spectral normalization on every convolution and linear layer.
    conditioning : {"linear", "convolutional"}, default="linear"
        How the reference image reaches each block. ``"linear"`` is the
        paper's: the image resized to the block's resolution through a 1×1
        convolution, so each pixel sees the reference at the same place only.
        ``"convolutional"`` passes each reference channel through its own
        small convolutional pyramid first (:class:`cellgen.nn.ReferencePyramid`),
        whose features see the whole cell at coarse blocks, and lets the label
        scale every feature, so a structure can ignore a channel it does not
        follow. On synthetic cells it recovers the known coupling better
        (:func:`cellgen.analysis.structure_coupling`; rank correlation 0.87–0.90
        against 0.76–0.88 over three seeds) and trains about half as fast.
    device : str, default="auto"
        ``"auto"`` uses a CUDA GPU when present, else the CPU.
    {runtime_parameters}
    callbacks : list of skorch callbacks or None, default=None
        Extra callbacks passed to the skorch net. A ``("restore_best",
        RestoreBestWeights(monitor))`` pair (:class:`cellgen.train.RestoreBestWeights`)
        replaces the choice of the epoch kept, which is by default the epoch of
        the best validation objective (Eq. 3, β-weighted); ``"valid_elbo_best"``
        keeps the best unweighted validation ELBO instead.
    checkpoint_dir : str, path-like or None, default=None
        Folder for a checkpoint after every epoch (weights, optimizer, history
        and random state; written atomically, only the last and the best kept).
        When it already holds a checkpoint of the same run, ``fit`` resumes
        from it and stops at ``max_epochs`` epochs in total; a checkpoint of
        other settings or other cells (a sample of rows is compared) raises
        ``ValueError``, so give each fold of a cross-validation its own folder.
    random_state : int, RandomState instance or None, default=None
        Seeds the split, initialization, batch order and training noise.
    verbose : int, default=0
        0 is silent; 1 prints a table per epoch with a progress bar.

    Attributes
    ----------
    classes_ : ndarray
        The structure labels seen in ``fit``.
    reference_channels_ : list of int
        Reference channel indices in ``X``.
    structure_channel_ : int
        Structure channel index in ``X``.
    n_channels_in_ : int
        Number of channels of ``X`` seen in ``fit``.
    spatial_shape_ : tuple of int
        Spatial shape seen in ``fit``.
    history_ : pandas.DataFrame
        Per-epoch training history of every ELBO term.

    See Also
    --------
    ReferenceVAE : The model of cell and nuclear shape.
    StatisticalCell : Both models together.

    Examples
    --------
    >>> from cellgen import ConditionalStructureVAE
    >>> from cellgen.datasets import make_cells
    >>> X, y, meta = make_cells(64, shape=(16, 16), random_state=0)
    >>> cvae = ConditionalStructureVAE(n_latent=4, widths=(8, 16), max_epochs=2,
    ...                                random_state=0).fit(X, y)
    >>> cvae.transform(X, structures=y).shape
    (64, 4)
    >>> cvae.impute(X[:2, :2], "nucleoli").shape
    (2, 1, 16, 16)
    """

    _parameter_constraints = {
        **_COMMON_CONSTRAINTS,
        "reference_channels": ["array-like", None],
        "structure_channel": [Integral],
        "conditioning": [StrOptions({"linear", "convolutional"})],
    }
    _feature_prefix = "struct_z"

    def __init__(
        self,
        n_latent=512,
        *,
        reference_channels=None,
        structure_channel=-1,
        widths=(32, 64, 128, 256, 512),
        beta=0.5,
        n_elbo_samples=10,
        max_epochs=300,
        batch_size=32,
        lr=2e-4,
        validation_fraction=0.1,
        spectral_norm=True,
        conditioning="linear",
        device="auto",
        precision="auto",
        compile=False,
        num_workers=0,
        inference_batch_size=None,
        augment=None,
        callbacks=None,
        checkpoint_dir=None,
        random_state=None,
        verbose=0,
    ):
        self.n_latent = n_latent
        self.reference_channels = reference_channels
        self.structure_channel = structure_channel
        self.widths = widths
        self.beta = beta
        self.n_elbo_samples = n_elbo_samples
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.lr = lr
        self.validation_fraction = validation_fraction
        self.spectral_norm = spectral_norm
        self.conditioning = conditioning
        self.device = device
        self.precision = precision
        self.compile = compile
        self.num_workers = num_workers
        self.inference_batch_size = inference_batch_size
        self.augment = augment
        self.callbacks = callbacks
        self.checkpoint_dir = checkpoint_dir
        self.random_state = random_state
        self.verbose = verbose

    # ------------------------------------------------------------ helpers
    def _encode_labels(self, labels):
        return self.label_encoder_.transform(labels).astype(np.int64)

    def _split_X(self, X):
        return (channel_view(X, self.reference_channels_),
                channel_view(X, [self.structure_channel_]))

    def _inputs(self, X, structures):
        """Validated ``[structure, reference, label codes]`` arrays for the module."""
        X = self._check_X(X)
        codes = self._encode_labels(
            check_labels(structures, X.shape[0], name="structures", known=self.classes_))
        ref, struct = self._split_X(X)
        return [struct, ref, codes]

    def _check_reference(self, X, name="X"):
        """Accept reference-only images or full images (structure channel ignored)."""
        check_is_fitted(self, "net_")
        return _reference_part(X, self.reference_channels_, self.n_channels_in_,
                               self.spatial_shape_, name)

    # ------------------------------------------------------------ API
    @_fit_context(prefer_skip_nested_validation=True)
    @_unchanged_on_failure
    def fit(self, X, y=None, *, structures=None):
        """Fit the conditional model.

        Parameters
        ----------
        X : array-like of shape (n_cells, n_channels, [Z,] Y, X)
            Reference channels and the structure channel of each cell.
        y : array-like of shape (n_cells,)
            Structure label of each cell.
        structures : array-like of shape (n_cells,) or None, default=None
            Structure labels; when given they take precedence over ``y`` (so a
            Pipeline can route labels here while ``y`` is another target).

        Returns
        -------
        self : ConditionalStructureVAE
            The fitted estimator.
        """
        X = _model_images(X, min_channels=2)
        labels = _labels(y, structures, X.shape[0])
        self.reference_channels_, self.structure_channel_ = _resolve_channels(
            self.reference_channels, self.structure_channel, X.shape[1])
        self.n_channels_in_ = X.shape[1]
        self.spatial_shape_ = tuple(X.shape[2:])
        self.label_encoder_ = LabelEncoder().fit(labels)
        self.classes_ = self.label_encoder_.classes_
        ref, struct = self._split_X(X)
        inputs = {"x": struct, "reference": ref, "label": self._encode_labels(labels)}
        module_kwargs = dict(in_channels=1, reference_channels=ref.shape[1],
                             n_labels=len(self.classes_), spatial_shape=self.spatial_shape_,
                             conditioning=self.conditioning)
        return self._fit_module(ConditionalVAE, module_kwargs, inputs, target_key="x")

    def fit_transform(self, X, y=None, *, structures=None):
        """Fit, then return the conditional embedding of the training cells.

        Parameters
        ----------
        X : array-like of shape (n_cells, n_channels, [Z,] Y, X)
            Reference channels and the structure channel of each cell.
        y : array-like of shape (n_cells,)
            Structure label of each cell.
        structures : array-like of shape (n_cells,) or None, default=None
            Structure labels, taking precedence over ``y``.

        Returns
        -------
        Z : ndarray of shape (n_cells, n_latent)
            Posterior means.
        """
        labels = structures if structures is not None else y
        return self.fit(X, structures=labels).transform(X, structures=labels)

    def transform(self, X, structures=None):
        """Conditional embedding: the posterior mean given reference and label.

        Parameters
        ----------
        X : array-like of shape (n_cells, n_channels, [Z,] Y, X)
            Images with the channels and shape seen in ``fit``.
        structures : array-like of shape (n_cells,) or a single label
            Structure label of each cell (required).

        Returns
        -------
        Z : ndarray of shape (n_cells, n_latent)
            Posterior means.
        """
        return self._run(
            lambda s, r, c: self._flip_average(lambda *t: self.module_.encode(*t)[0], s, r, c),
            self._inputs(X, structures), dtypes=_DTYPES)

    def encoder_features(self, X, structures=None, blocks=(-2, -1)):
        """Profile structures by the pooled feature maps of the conditional encoder.

        For each chosen residual block of the encoder (which sees the structure
        channel with the reference image and label injected at every block), the
        spatial mean and standard deviation of each of its channels; averaged
        over a cell's four Y/X flips with ``augment="flips"``. See
        :meth:`ReferenceVAE.encoder_features`; standardize before distances.

        Parameters
        ----------
        X : array-like of shape (n_cells, n_channels, [Z,] Y, X)
            Images with the channels and shape seen in ``fit``.
        structures : array-like of shape (n_cells,) or a single label
            Structure label of each cell (required).
        blocks : sequence of int, default=(-2, -1)
            Encoder blocks to pool, as indices into ``widths`` (negative from the
            coarsest); the default takes the last two.

        Returns
        -------
        F : ndarray of shape (n_cells, 2 * sum(widths[b] for b in blocks))
            For each block in the order given, the means of its channels, then
            their standard deviations.

        Raises
        ------
        ValueError
            If ``blocks`` is empty, repeats a block or names one that does not
            exist, or a label was not seen in ``fit``.

        Examples
        --------
        >>> from cellgen import ConditionalStructureVAE
        >>> from cellgen.datasets import make_cells
        >>> X, y, meta = make_cells(64, shape=(16, 16), random_state=0)
        >>> cvae = ConditionalStructureVAE(4, widths=(8, 16), max_epochs=2,
        ...                                random_state=0).fit(X, y)
        >>> cvae.encoder_features(X, structures=y, blocks=[-1]).shape
        (64, 32)
        """
        blocks = self._check_blocks(blocks)
        return self._run(
            lambda s, r, c: self._flip_average(
                lambda *t: self.module_.pooled_features(*t, blocks), s, r, c),
            self._inputs(X, structures), dtypes=_DTYPES)

    def encode(self, X, structures=None):
        """Conditional posterior mean and log-variance of each cell.

        The posterior of each image as given: unlike ``transform``, never
        averaged over flips when ``augment="flips"`` (a posterior belongs to one
        image), so ``mu`` may differ slightly from ``transform(X)``.

        Parameters
        ----------
        X : array-like of shape (n_cells, n_channels, [Z,] Y, X)
            Images with the channels and shape seen in ``fit``.
        structures : array-like of shape (n_cells,) or a single label
            Structure label of each cell (required).

        Returns
        -------
        mu, logvar : ndarray of shape (n_cells, n_latent)
            Parameters of the diagonal Gaussian posterior.
        """
        return self._run(lambda s, r, c: self.module_.encode(s, r, c),
                         self._inputs(X, structures), dtypes=_DTYPES)

    def inverse_transform(self, Z, *, reference, structures):
        """Decode conditional latent vectors into structure images in given cells.

        Parameters
        ----------
        Z : array-like of shape (n_cells, n_latent)
            Conditional latent vectors.
        reference : array-like of shape (n_cells, n_channels, [Z,] Y, X)
            Reference images (reference channels only, or all channels).
        structures : array-like of shape (n_cells,) or a single label
            Structure label of each cell.

        Returns
        -------
        X : ndarray of shape (n_cells, 1, [Z,] Y, X)
            Decoded structure images.
        """
        Z = self._check_Z(Z)
        ref = self._check_reference(reference, name="reference")
        if len(ref) != len(Z):
            raise ValueError(
                f"Z has {len(Z)} rows but reference holds {len(ref)} cells."
            )
        codes = self._encode_labels(
            check_labels(structures, len(Z), name="structures", known=self.classes_))
        return self._run(self.module_.decode, [Z, ref, codes], dtypes=_DTYPES)

    def sample(self, X, structures, random_state=None):
        """Draw one structure image per cell from ``p(x_structure | x_reference, label)``.

        Parameters
        ----------
        X : array-like of shape (n_cells, n_channels, [Z,] Y, X)
            Reference images (reference channels only, or all channels).
        structures : array-like of shape (n_cells,) or a single label
            The structure to generate in each cell; any label seen in ``fit``.
        random_state : int, RandomState instance or None, default=None
            Seeds the draws.

        Returns
        -------
        X_structure : ndarray of shape (n_cells, 1, [Z,] Y, X)
            Generated structure channels.
        """
        ref = self._check_reference(X)
        return self.inverse_transform(self._prior_draws(len(ref), random_state),
                                      reference=ref, structures=structures)

    def impute(self, X, structures, n_samples=None, random_state=None):
        """Impute a structure into given cells.

        Parameters
        ----------
        X : array-like of shape (n_cells, n_channels, [Z,] Y, X)
            Reference images (reference channels only, or all channels).
        structures : array-like of shape (n_cells,) or a single label
            The structure to impute into each cell.
        n_samples : int or None, default=None
            ``None`` returns one image per cell decoded at the prior mean
            ``z = 0``, the most typical localization; an int returns that many
            random draws per cell.
        random_state : int, RandomState instance or None, default=None
            Seeds the draws when ``n_samples`` is an int.

        Returns
        -------
        X_structure : ndarray
            ``(n_cells, 1, [Z,] Y, X)`` when ``n_samples`` is None, else
            ``(n_cells, n_samples, 1, [Z,] Y, X)``.
        """
        ref = self._check_reference(X)
        n = len(ref)
        labels = check_labels(structures, n, name="structures", known=self.classes_)
        if n_samples is None:
            Z = np.zeros((n, self._n_latent_fitted), dtype=np.float32)
            return self.inverse_transform(Z, reference=ref, structures=labels)
        k = check_n_samples(n_samples)
        Z = self._prior_draws(n * k, random_state).reshape(n, k, -1)
        codes = self._encode_labels(labels)
        out = np.empty((n, k, 1, *ref.shape[2:]), dtype=np.float32)
        for j in range(k):
            # Draw by draw over the same cells: repeating the reference k times
            # would hold k copies of it.
            out[:, j] = self._run(self.module_.decode, [Z[:, j], ref, codes], dtypes=_DTYPES)
        return out

    def score_samples(self, X, structures=None):
        """Per-cell conditional ELBO, a lower bound on ``log p(x_s | x_r, label)``.

        Averaged over ``n_elbo_samples`` draws of ``z``; seeded, so repeated
        calls on the same ``X`` give identical values. The draws follow the
        row order, so a cell scored at another position or in another batch
        gets other draws: the Monte Carlo noise of the ELBO, which a larger
        ``n_elbo_samples`` shrinks.

        Parameters
        ----------
        X : array-like of shape (n_cells, n_channels, [Z,] Y, X)
            Images with the channels and shape seen in ``fit``.
        structures : array-like of shape (n_cells,) or a single label
            Structure label of each cell (required).

        Returns
        -------
        elbo : ndarray of shape (n_cells,)
            Higher means more typical.
        """
        inputs = self._inputs(X, structures)
        k = self.n_elbo_samples
        with self._with_seed(self.seed_):
            return self._run(lambda s, r, c: self.module_.elbo(s, r, c, n_samples=k),
                             inputs, dtypes=_DTYPES, per_item=k)

    def score(self, X, y=None, *, structures=None):
        """Mean per-cell conditional ELBO (higher is better).

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
        tags.target_tags.required = True
        return tags

