"""ReferenceVAE: the β-VAE of cell and nuclear shape (the paper's M_R)."""

from __future__ import annotations

import numpy as np
from sklearn.base import _fit_context

from ..module import VAE
from ..utils import check_n_samples
from ._base import (
    _COMMON_CONSTRAINTS,
    _BaseVAEEstimator,
    _model_images,
    _unchanged_on_failure,
    _with_runtime_parameters,
)

__all__ = ["ReferenceVAE"]


@_with_runtime_parameters
class ReferenceVAE(_BaseVAEEstimator):
    """β-VAE of the reference channels (cell membrane and DNA), 2D or 3D.

    The Statistical Cell's model of cell and nuclear shape: a residual
    convolutional encoder to a diagonal Gaussian posterior, a mirrored decoder,
    spectral normalization on every layer, trained on the paper's Eq. 3. The
    dimensionality (2D or 3D) and the image size are taken from the data.

    Parameters
    ----------
    n_latent : int, default=512
        Dimension of the latent space.
    widths : sequence of int, default=(32, 64, 128, 256, 512)
        Channels of the encoder's residual blocks (mirrored in the decoder);
        every block halves the image, so images are padded internally to a
        multiple of ``2 ** len(widths)``.
    beta : float, default=0.5
        Weight of the KL term in ``(1 - beta) * reconstruction + beta * KL``, in
        [0, 1]; 0.5 is the ordinary VAE objective (up to a factor 1/2).
    n_elbo_samples : int, default=10
        Draws of ``z`` averaged by ``score_samples``.
    max_epochs : int, default=300
        Training epochs.
    batch_size : int, default=32
        Cells per training batch; ``fit`` refuses a batch larger than the
        training cells (the cells left after the validation split).
    lr : float, default=2e-4
        Adam learning rate (Adam betas 0.9 and 0.999).
    validation_fraction : float, default=0.1
        Fraction of cells held out; the weights of the epoch with the best
        validation objective are restored after training. A positive value
        must leave at least one cell on each side of the split; 0 trains on all
        cells and keeps the last weights.
    spectral_norm : bool, default=True
        Spectral normalization on every convolution and linear layer.
    device : str, default="auto"
        ``"auto"`` uses a CUDA GPU when present, else the CPU; or any torch
        device string.
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
        Seeds the validation split, the weight initialization, the batch order
        and the training noise. An int makes ``fit`` reproducible on CPU.
    verbose : int, default=0
        0 is silent; 1 prints a table per epoch with a progress bar.

    Attributes
    ----------
    n_channels_in_ : int
        Number of channels seen in ``fit``.
    spatial_shape_ : tuple of int
        Spatial shape seen in ``fit``.
    net_ : skorch.NeuralNet
        The trained skorch net (private to the estimator; use the methods).
    history_ : pandas.DataFrame
        Per-epoch training history of every ELBO term.
    device_ : str
        The device used.

    See Also
    --------
    ConditionalStructureVAE : The conditional model of one structure.
    StatisticalCell : Both models together.

    Examples
    --------
    >>> from cellgen import ReferenceVAE
    >>> from cellgen.datasets import make_cells
    >>> X, y, meta = make_cells(64, shape=(16, 16), random_state=0)
    >>> vae = ReferenceVAE(n_latent=4, widths=(8, 16), max_epochs=2, random_state=0)
    >>> Z = vae.fit(X[:, :2]).transform(X[:, :2])
    >>> Z.shape
    (64, 4)
    >>> vae.sample(3, random_state=0).shape
    (3, 2, 16, 16)
    """

    _parameter_constraints = dict(_COMMON_CONSTRAINTS)
    _feature_prefix = "ref_z"

    def __init__(
        self,
        n_latent=512,
        *,
        widths=(32, 64, 128, 256, 512),
        beta=0.5,
        n_elbo_samples=10,
        max_epochs=300,
        batch_size=32,
        lr=2e-4,
        validation_fraction=0.1,
        spectral_norm=True,
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
        self.widths = widths
        self.beta = beta
        self.n_elbo_samples = n_elbo_samples
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.lr = lr
        self.validation_fraction = validation_fraction
        self.spectral_norm = spectral_norm
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

    @_fit_context(prefer_skip_nested_validation=True)
    @_unchanged_on_failure
    def fit(self, X, y=None):
        """Fit the model to reference images.

        Parameters
        ----------
        X : array-like of shape (n_cells, n_channels, [Z,] Y, X)
            Reference images (for example membrane and DNA), intensities
            normalized to about [0, 1].
        y : None
            Ignored.

        Returns
        -------
        self : ReferenceVAE
            The fitted estimator.
        """
        X = _model_images(X)
        self.n_channels_in_ = X.shape[1]
        self.spatial_shape_ = tuple(X.shape[2:])
        return self._fit_module(
            VAE, dict(in_channels=self.n_channels_in_, spatial_shape=self.spatial_shape_), X
        )

    def transform(self, X):
        """Embed cells: the posterior mean of each cell's latent vector.

        Parameters
        ----------
        X : array-like of shape (n_cells, n_channels, [Z,] Y, X)
            Images with the channels and shape seen in ``fit``.

        Returns
        -------
        Z : ndarray of shape (n_cells, n_latent)
            Posterior means.
        """
        X = self._check_X(X)
        return self._run(
            lambda x: self._flip_average(lambda v: self.module_.encode(v)[0], x), [X])

    def encode(self, X):
        """Posterior mean and log-variance of each cell.

        The posterior of each image as given: unlike ``transform``, never
        averaged over flips when ``augment="flips"`` (a posterior belongs to one
        image), so ``mu`` may differ slightly from ``transform(X)``.

        Parameters
        ----------
        X : array-like of shape (n_cells, n_channels, [Z,] Y, X)
            Images with the channels and shape seen in ``fit``.

        Returns
        -------
        mu, logvar : ndarray of shape (n_cells, n_latent)
            Parameters of the diagonal Gaussian posterior.
        """
        X = self._check_X(X)
        return self._run(lambda x: self.module_.encode(x), [X])

    def encoder_features(self, X, blocks=(-2, -1)):
        """Profile cells by the pooled feature maps of the encoder's last blocks.

        For each chosen residual block of the encoder, the spatial mean and
        standard deviation of each of its channels: a texture- and shape-aware
        description, much richer than the latent mean, for tasks that compare
        cells rather than generate them (mechanism-of-action profiling, kNN,
        UMAP). With ``augment="flips"`` the features are averaged over a cell's
        four Y/X flips, like ``transform``. Standardize them before distances
        (:class:`~sklearn.preprocessing.StandardScaler`): channels differ in scale.

        Parameters
        ----------
        X : array-like of shape (n_cells, n_channels, [Z,] Y, X)
            Images with the channels and shape seen in ``fit``.
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
            exist.

        Examples
        --------
        >>> from cellgen import ReferenceVAE
        >>> from cellgen.datasets import make_cells
        >>> X, y, meta = make_cells(64, shape=(16, 16), random_state=0)
        >>> vae = ReferenceVAE(4, widths=(8, 16), max_epochs=2, random_state=0).fit(X[:, :2])
        >>> vae.encoder_features(X[:, :2]).shape  # 2 * (8 + 16)
        (64, 48)
        """
        X = self._check_X(X)
        blocks = self._check_blocks(blocks)
        return self._run(
            lambda x: self._flip_average(lambda v: self.module_.pooled_features(v, blocks), x),
            [X])

    def inverse_transform(self, Z):
        """Decode latent vectors to images (the decoder mean).

        Parameters
        ----------
        Z : array-like of shape (n_cells, n_latent)
            Latent vectors, for example from ``transform``.

        Returns
        -------
        X : ndarray of shape (n_cells, n_channels, [Z,] Y, X)
            Decoded images.
        """
        Z = self._check_Z(Z)
        return self._run(self.module_.decode, [Z])

    def sample(self, n_samples=1, random_state=None):
        """Generate new cells by decoding draws from the prior ``N(0, I)``.

        Parameters
        ----------
        n_samples : int, default=1
            Number of cells.
        random_state : int, RandomState instance or None, default=None
            Seeds the draws.

        Returns
        -------
        X : ndarray of shape (n_samples, n_channels, [Z,] Y, X)
            Generated images.
        """
        n_samples = check_n_samples(n_samples)
        return self.inverse_transform(self._prior_draws(n_samples, random_state))

    def score_samples(self, X):
        """Per-cell ELBO, a lower bound on ``log p(x)`` up to a constant.

        The unweighted ELBO ``E_q[log p(x | z)] - KL(q(z | x) || p(z))`` with
        ``log p(x | z) = -sum((x - x_hat) ** 2)``, averaged over
        ``n_elbo_samples`` draws of ``z``. Repeated calls on the same ``X`` give
        identical values (the draws are seeded from ``random_state``) and change
        no state. The draws follow the row order, so a cell scored at another
        position or in another batch gets other draws: the Monte Carlo noise of
        the ELBO, which a larger ``n_elbo_samples`` shrinks.

        Parameters
        ----------
        X : array-like of shape (n_cells, n_channels, [Z,] Y, X)
            Images with the channels and shape seen in ``fit``.

        Returns
        -------
        elbo : ndarray of shape (n_cells,)
            Higher means more typical.
        """
        X = self._check_X(X)
        k = self.n_elbo_samples
        with self._with_seed(self.seed_):
            return self._run(lambda x: self.module_.elbo(x, n_samples=k), [X], per_item=k)

    def score(self, X, y=None):
        """Mean per-cell ELBO of ``X`` (higher is better).

        Parameters
        ----------
        X : array-like of shape (n_cells, n_channels, [Z,] Y, X)
            Images with the channels and shape seen in ``fit``.
        y : None
            Ignored.

        Returns
        -------
        score : float
            Mean of ``score_samples(X)``.
        """
        return float(np.mean(self.score_samples(X)))
