"""Machinery shared by the VAE estimators: parameters, splitting, seeding, fitting."""

from __future__ import annotations

import contextlib
import hashlib
import os
import warnings
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from ..nn._blocks import _weights_loaded_after
from ..train import (
    EpochCheckpoint,
    RowDataset,
    batched,
    checkpoint_signature,
    distributed_world,
    history_frame,
    make_vae_net,
    plain_module,
    resolve_device,
    resolve_precision,
    resume_from_checkpoint,
)
from ..utils import check_images
from ..utils._arrays import channel_view
from ..utils._state import unchanged_on_failure
from . import _persist

_MAX_SEED = 2**31 - 1
# Augmentation flips Y and X only: in 3D, top and bottom of a cell (towards and
# away from the coverslip) differ.
_FLIP_AXES = (-2, -1)

#: Parameters every VAE estimator shares (documented on each class).
_COMMON_CONSTRAINTS = {
    "n_latent": [Interval(Integral, 1, None, closed="left")],
    "widths": ["array-like"],
    "beta": [Interval(Real, 0, 1, closed="both")],
    "n_elbo_samples": [Interval(Integral, 1, None, closed="left")],
    "max_epochs": [Interval(Integral, 1, None, closed="left")],
    "batch_size": [Interval(Integral, 1, None, closed="left")],
    "lr": [Interval(Real, 0, None, closed="neither")],
    "validation_fraction": [Interval(Real, 0, 1, closed="left")],
    "spectral_norm": ["boolean"],
    "device": [str, None],
    "precision": [StrOptions({"auto", "fp32", "bf16", "fp16"})],
    "compile": ["boolean"],
    "num_workers": [Interval(Integral, 0, None, closed="left")],
    "inference_batch_size": [Interval(Integral, 1, None, closed="left"), None],
    "augment": [StrOptions({"flips"}), None],
    "callbacks": [list, None],
    "checkpoint_dir": [str, os.PathLike, None],
    "random_state": ["random_state"],
    "verbose": ["verbose"],
}


#: How fit and inference run: documented once for both VAE estimators.
_RUNTIME_PARAMETERS_DOC = """    precision : {"auto", "fp32", "bf16", "fp16"}, default="auto"
        Precision of the forward passes, in training and inference. ``"auto"``
        is mixed precision on a GPU (bfloat16 where supported, else float16
        with loss scaling) and float32 on the CPU. Losses are always summed in
        float32. ``"fp32"`` turns mixed precision off.
    compile : bool, default=False
        Compile the network's training forward pass with ``torch.compile``:
        faster epochs after a compilation of a minute or so.
    num_workers : int, default=0
        DataLoader worker processes that read and batch cells in the
        background (useful for memory-mapped or large collections); with a
        GPU, batches are read into pinned memory.
    inference_batch_size : int or None, default=None
        Cells per batch in ``transform``, ``score_samples``, ``impute`` and
        ``sample``; ``None`` uses four times ``batch_size``.
    augment : {None, "flips"}, default=None
        ``"flips"`` trains on cells flipped at random along Y and X (each with
        probability one half, every epoch) and makes ``transform`` average the
        posterior means of a cell's four flips, so the embedding does not
        depend on mirror images. It helps embeddings learned from few cells
        (for example for profiling, ``benchmarks/RESULTS.md``); the generative
        model then learns mirrored cells too, so leave it off to generate or
        impute cells in the orientation the aligner gives them.
"""


def _with_runtime_parameters(cls):
    """Put the shared documentation of the runtime parameters into ``cls``'s docstring."""
    cls.__doc__ = cls.__doc__.replace("    {runtime_parameters}\n", _RUNTIME_PARAMETERS_DOC)
    return cls


def _check_widths(widths):
    try:
        out = tuple(int(w) for w in widths)
        ok = len(out) > 0 and all(w >= 1 and w == v for w, v in zip(out, widths))
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(
            f"widths must be a non-empty sequence of positive integers (channels of each "
            f"residual block), got {widths!r}."
        )
    return out


def _reference_part(X, reference_channels, n_channels_in, spatial_shape, name="X"):
    """Reference channels of ``X``, given either alone or with every channel seen in fit."""
    X = _model_images(X, name=name, spatial_ndim=len(spatial_shape), spatial_shape=spatial_shape)
    n_ref = len(reference_channels)
    if X.shape[1] == n_ref:
        return X
    if X.shape[1] == n_channels_in:
        return channel_view(X, reference_channels)
    raise ValueError(
        f"{name} has {X.shape[1]} channels; pass the {n_ref} reference channel(s) or "
        f"all {n_channels_in} channels seen in fit."
    )


@contextlib.contextmanager
def _seeded(seed: int, device: str):
    """Seed torch inside a forked random state, leaving the global state untouched."""
    devices = [torch.device(device).index or 0] if device.startswith("cuda") else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def _available_device(saved):
    """The device a model was fitted on if this machine has it, else the CPU.

    A model fitted on a GPU (CUDA or Apple's MPS) still loads on a CPU.
    """
    try:
        return resolve_device(saved)
    except ValueError:
        return "cpu"


def _model_images(X, **kwargs):
    """``check_images`` for a model's input, warning about integer images.

    The models expect intensities of about [0, 1]; raw 8- or 16-bit counts
    would be used as they are (a loss in the millions, or a silent mismatch
    with a model fitted on normalized cells).
    """
    dtype = getattr(X, "dtype", None)
    try:
        integer = dtype is not None and np.dtype(dtype).kind in "iu"
    except TypeError:  # a torch dtype, which numpy does not read
        integer = not (getattr(dtype, "is_floating_point", True)
                       or getattr(dtype, "is_complex", False) or str(dtype) == "torch.bool")
    if integer:
        warnings.warn(
            f"{kwargs.get('name', 'X')} holds integer images ({dtype}), used as "
            "they are, not rescaled; the models expect intensities of about [0, 1]: "
            "normalize first (cellgen.preprocessing.IntensityNormalizer).",
            UserWarning, stacklevel=3)
    return check_images(X, **kwargs)


def _kept_after_failure(before, estimator):
    # A loss that turns non-finite after some training keeps the new net with its
    # best weights so far (_fit_module), and the new attributes that describe it.
    return "net_" in estimator.__dict__ and estimator.__dict__["net_"] is not before.get("net_")


_unchanged_on_failure = unchanged_on_failure(keep=_kept_after_failure)


def _data_fingerprint(inputs, n_rows=64):
    """Hash of the shapes and of up to ``n_rows`` evenly spaced rows of every input.

    Part of a checkpoint's run signature, so that a checkpoint is never resumed
    on other cells (another cross-validation fold, say). A sample of rows keeps
    it cheap on memory-mapped collections.
    """
    arrays = inputs if isinstance(inputs, dict) else {"x": inputs}
    digest = hashlib.sha256()
    for key in sorted(arrays):
        a = arrays[key]
        n = len(a)
        rows = np.unique(np.linspace(0, n - 1, min(n, n_rows)).astype(np.int64))
        sample = np.ascontiguousarray(np.asarray(a[rows]))
        digest.update(f"{key}:{tuple(a.shape)}:{sample.dtype.str}".encode())
        digest.update(sample.tobytes())
    return digest.hexdigest()[:16]

class _BaseVAEEstimator(TransformerMixin, BaseEstimator):
    """Fit/transform plumbing around a private skorch net (``net_``)."""

    _feature_prefix = "z"

    # ------------------------------------------------------------------ fitting
    def _split(self, n, rng):
        """Training and validation rows; refuses splits that cannot train or validate."""
        if self.validation_fraction == 0:
            train_idx, valid_idx = np.arange(n), None
        else:
            n_valid = int(round(self.validation_fraction * n))
            if n_valid < 1 or n - n_valid < 1:
                raise ValueError(
                    f"validation_fraction={self.validation_fraction} of {n} cells leaves "
                    f"{n_valid} cell(s) for validation and {n - n_valid} for training; both "
                    f"need at least one. Pass more cells, or validation_fraction=0 to train "
                    f"on all {n} cells without a validation split."
                )
            perm = rng.permutation(n)
            train_idx, valid_idx = np.sort(perm[n_valid:]), np.sort(perm[:n_valid])
        if self.batch_size > len(train_idx):
            held = "" if valid_idx is None else f" ({len(valid_idx)} held out for validation)"
            raise ValueError(
                f"batch_size={self.batch_size} is larger than the {len(train_idx)} training "
                f"cells{held}; pass batch_size={len(train_idx)} or less, or more cells."
            )
        return train_idx, valid_idx

    def _fit_module(self, module_cls, module_kwargs, inputs, target_key=None):
        """Train ``module_cls`` on ``inputs`` (array or dict of arrays) and keep the net."""
        self.widths_ = _check_widths(self.widths)
        self.augment_ = self.augment
        world = distributed_world()
        self.device_ = resolve_device(self.device)
        if world is not None and self.device_ == "cuda":
            self.device_ = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"  # one GPU a process
        self.autocast_dtype_ = resolve_precision(self.precision, self.device_)
        if (self.autocast_dtype_ is not None and not self.device_.startswith("cuda")
                and len(module_kwargs.get("spatial_shape", ())) == 3):
            warnings.warn(
                f"precision={self.precision!r} on the CPU with 3D images: torch's CPU "
                "kernels for the bfloat16/float16 weight gradients of 3D convolutions on "
                "small inputs give wrong, run-to-run different values (seen with torch "
                "2.13), and training can diverge. Use precision='fp32' on the CPU.",
                UserWarning, stacklevel=3)
        random_state = drawn = self.random_state
        if random_state is None:
            random_state = drawn = self._draw_seed(world)
        rng = check_random_state(random_state)
        self.seed_ = int(rng.randint(_MAX_SEED))
        n = len(next(iter(inputs.values())) if isinstance(inputs, dict) else inputs)
        train_idx, valid_idx = self._split(n, rng)

        def take(idx, flip_axes=()):
            # Rows are read lazily by the DataLoader: no copy of the split,
            # and memory-mapped collections stay on disk.
            return None if idx is None else RowDataset(inputs, idx, flip_axes=flip_axes)

        spec = dict(module_kwargs, widths=self.widths_, n_latent=int(self.n_latent),
                    spectral=self.spectral_norm)
        self._net_spec_ = (module_cls, spec, target_key)
        self.n_train_ = len(train_idx)
        self.n_valid_ = 0 if valid_idx is None else len(valid_idx)
        checkpoint = None
        if self.checkpoint_dir is not None:
            signature = {"class": type(self).__name__, "module": self._net_spec_[0].__name__,
                         "module_kwargs": self._net_spec_[1], "n_train": self.n_train_,
                         "n_valid": self.n_valid_, "seed": self.seed_,
                         "batch_size": self.batch_size, "lr": self.lr, "beta": self.beta,
                         "augment": self.augment_, "precision": self.precision,
                         "data": _data_fingerprint(inputs)}
            if self.random_state is None:
                signature["drawn_seed"] = drawn
            # numpy scalars (from a search grid) are valid parameters but not JSON.
            checkpoint = EpochCheckpoint(self.checkpoint_dir, _persist._jsonable(signature))
        net = self._make_net(valid_data=take(valid_idx), checkpoint=checkpoint, world=world)
        train = take(train_idx, _FLIP_AXES if self.augment_ == "flips" else ())
        # skorch ends training quietly on KeyboardInterrupt (the model keeps what it
        # learned); a non-finite loss must stop loudly but lose nothing either.
        try:
            with _seeded(self.seed_, self.device_):
                net.initialize()
                done = 0 if checkpoint is None else resume_from_checkpoint(
                    net, self.checkpoint_dir, checkpoint.signature)
                if done == 0:
                    # fit() initializes again, drawing the weights this seed has always
                    # given; skorch would announce that as a re-initialization nobody asked for.
                    net.initialized_ = False
                    net.fit(train, None)
                elif done < self.max_epochs:
                    # max_epochs counts the epochs before the interruption too.
                    net.partial_fit(train, None, epochs=self.max_epochs - done)
                elif done == self.max_epochs:
                    net.notify("on_train_end", X=train, y=None)
                else:
                    raise ValueError(
                        f"checkpoint_dir '{self.checkpoint_dir}' holds {done} epochs of this "
                        f"run, more than max_epochs={self.max_epochs}; use another folder "
                        "(or delete that one) for the shorter run."
                    )
        except FloatingPointError as exc:
            restore = dict(net.callbacks_).get("restore_best")
            if restore is not None and restore.best_state_ is not None:
                net.notify("on_train_end")  # restores the kept epoch's weights
                net.module_.eval()
                self.net_ = net
                which = (f"the best validation epoch by {restore.monitor!r}"
                         if restore.monitor is not None else "the last finished epoch")
                kept = (f"The estimator keeps the weights of epoch {restore.best_epoch_} "
                        f"({which}).")
            else:
                kept = "No epoch finished, so the estimator is left as it was before fit."
            exc.args = (f"{exc.args[0]} {kept}",) + exc.args[1:]
            raise
        net.module_.eval()
        self.net_ = net
        return self

    def _draw_seed(self, world):
        """The seed of a fit without ``random_state``: drawn, or the interrupted run's."""
        seed = None
        if self.checkpoint_dir is not None:
            # Resuming must rebuild the same split and seeds as the run it continues.
            saved = checkpoint_signature(self.checkpoint_dir)
            seed = None if saved is None else saved.get("drawn_seed")
        if seed is None:
            seed = int(check_random_state(None).randint(_MAX_SEED))
        if world is not None:
            # Every process must draw the same validation split: rank 0 picks the seed.
            import torch.distributed as dist

            shared = [seed]
            dist.broadcast_object_list(shared, src=0)
            seed = shared[0]
        return seed

    def _make_net(self, valid_data=None, checkpoint=None, world=None):
        module_cls, module_kwargs, target_key = self._net_spec_
        return make_vae_net(
            module_cls, module_kwargs,
            # Plain Python numbers: torch's samplers refuse numpy integers, and the
            # optimizer state must load with torch.load(weights_only=True).
            max_epochs=int(self.max_epochs), batch_size=int(self.batch_size),
            lr=float(self.lr), beta=float(self.beta), device=self.device_,
            verbose=self.verbose, callbacks=self.callbacks, valid_data=valid_data,
            target_key=target_key, checkpoint=checkpoint, num_workers=int(self.num_workers),
            autocast_dtype=self.autocast_dtype_, channels_last=self._channels_last(),
            compile=self.compile, world=world, sampler_seed=self.seed_,
        )

    def _channels_last(self):
        # Channels-last convolutions are faster on tensor cores and, measured on
        # a 2-core x86 CPU, 1.3x (2D) to 1.8x (3D) faster there too
        # (benchmarks/RESULTS.md).
        return True

    # ------------------------------------------------------------- pickling
    def __getstate__(self):
        # Spectral-norm parametrizations cannot be pickled as modules, so the
        # fitted net travels as its weights and history and is rebuilt on load.
        state = dict(self.__dict__)
        net = state.pop("net_", None)
        if net is not None:
            state["_net_payload"] = {
                "module_state": {k: v.detach().cpu() for k, v in
                                 plain_module(net).state_dict().items()},
                "history": [dict(row) for row in net.history],
            }
        return state

    def __setstate__(self, state):
        payload = state.pop("_net_payload", None)
        self.__dict__.update(state)
        if payload is not None:
            from skorch.history import History

            self.device_ = _available_device(self.device_)
            self._restore_net(payload["module_state"], History(payload["history"]))

    def _restore_net(self, module_state, history):
        """Rebuild the fitted net from its weights and training history."""
        if not hasattr(self, "autocast_dtype_"):  # fitted before precision existed
            self.autocast_dtype_ = resolve_precision(self.precision, self.device_)
        net = self._make_net()
        # The weights drawn here are overwritten at once; they must not consume
        # the caller's global random state.
        with _seeded(getattr(self, "seed_", 0), self.device_), _weights_loaded_after():
            net.initialize()
        plain_module(net).load_state_dict(module_state)
        net.module_.eval()
        net.history = history
        self.net_ = net

    # ------------------------------------------------------------ persistence
    def save(self, path, *, overwrite=False):
        """Save the fitted model to a folder: weights in safetensors, the rest in JSON.

        The folder holds ``weights.safetensors`` and ``cellgen.json`` (the
        parameters, the input channels and shape, the structure labels, the
        training history, and the cellgen and torch versions). Nothing is
        pickled, so loading a shared model never runs code. The folder is
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
        >>> import numpy as np, tempfile
        >>> from cellgen import ReferenceVAE
        >>> X = np.random.default_rng(0).random((16, 2, 16, 16), dtype=np.float32)
        >>> vae = ReferenceVAE(n_latent=4, widths=(8,), max_epochs=1, batch_size=8,
        ...                    device="cpu").fit(X)
        >>> folder = vae.save(tempfile.mkdtemp() + "/model")
        >>> sorted(p.name for p in folder.iterdir())
        ['cellgen.json', 'weights.safetensors']
        """
        return _persist.save_vae(self, path, overwrite=overwrite)

    @classmethod
    def load(cls, path, *, device=None):
        """Load a model written by :meth:`save`.

        Only JSON and safetensors are read (never a pickle). A model saved on a
        GPU loads on a CPU; a model saved by another cellgen version loads
        with a warning.

        Parameters
        ----------
        path : str or path-like
            Folder written by :meth:`save`.
        device : str or None, default=None
            Device to put the model on; ``None`` keeps the saved one when it is
            available, else the CPU.

        Returns
        -------
        estimator : instance of this class
            The fitted estimator.

        Examples
        --------
        >>> import numpy as np, tempfile
        >>> from cellgen import ReferenceVAE
        >>> X = np.random.default_rng(0).random((16, 2, 16, 16), dtype=np.float32)
        >>> vae = ReferenceVAE(n_latent=4, widths=(8,), max_epochs=1, batch_size=8,
        ...                    device="cpu").fit(X)
        >>> again = ReferenceVAE.load(vae.save(tempfile.mkdtemp() + "/model"))
        >>> bool(np.allclose(again.transform(X), vae.transform(X)))
        True
        """
        return _persist.load_vae(cls, path, device)

    # ---------------------------------------------------------------- inference
    @property
    def module_(self):
        """The trained torch module (in evaluation mode)."""
        check_is_fitted(self, "net_")
        return plain_module(self.net_)

    @property
    def history_(self):
        """Per-epoch training history as a :class:`pandas.DataFrame`.

        Columns include ``train_loss``, ``train_reconstruction``, ``train_kl``,
        ``train_elbo`` and, with a validation split, the ``valid_`` versions.
        """
        check_is_fitted(self, "net_")
        return history_frame(self.net_.history)

    def _inference_batch(self, per_item=1):
        # No gradients are kept at inference, so batches can be several times larger.
        size = self.inference_batch_size or 4 * self.batch_size
        return max(1, size // per_item)

    def _run(self, fn, arrays, dtypes=None, per_item=1):
        module = self.module_
        module.eval()  # keep spectral-norm vectors frozen whatever the caller did
        return batched(fn, arrays, batch_size=self._inference_batch(per_item),
                       device=self.device_, dtypes=dtypes,
                       autocast_dtype=getattr(self, "autocast_dtype_", None),
                       channels_last=self._channels_last())

    def _check_blocks(self, blocks):
        check_is_fitted(self, "net_")
        n = len(self.widths_)
        if isinstance(blocks, (int, np.integer)) and not isinstance(blocks, bool):
            blocks = (blocks,)
        try:
            blocks = tuple(blocks)
        except TypeError:
            raise TypeError(f"blocks must be a sequence of integers, got {blocks!r}.") from None
        if not blocks or not all(isinstance(b, (int, np.integer)) and not isinstance(b, bool)
                                 for b in blocks):
            raise ValueError(f"blocks must be a non-empty sequence of integers, got {blocks!r}.")
        if any(not -n <= b < n for b in blocks):
            raise ValueError(f"blocks {blocks} name a block that does not exist: the encoder "
                             f"has {n} blocks (widths={self.widths_}), indices "
                             f"{-n}..{n - 1}.")
        positive = [int(b) % n for b in blocks]
        if len(set(positive)) != len(positive):
            raise ValueError(f"blocks {blocks} repeat a block.")
        return tuple(positive)

    def _flip_average(self, encode, *tensors):
        """Posterior means, averaged over the Y and X flips when trained with them.

        A model trained on flipped cells embeds a cell and its mirror images
        alike only on average; averaging the four makes the embedding
        invariant to flips.
        """
        # Saved before augment_ existed: the saved parameter is the fit's.
        if getattr(self, "augment_", self.augment) != "flips":
            return encode(*tensors)
        total = 0
        for dims in ((), (-1,), (-2,), (-2, -1)):
            total = total + encode(*[t.flip(dims) if dims and t.dim() >= 4 else t
                                     for t in tensors])
        return total / 4

    def _with_seed(self, seed):
        return _seeded(seed, self.device_)

    def _check_X(self, X, name="X", n_channels=None):
        check_is_fitted(self, "net_")
        return _model_images(
            X, name=name, spatial_ndim=len(self.spatial_shape_),
            n_channels=self.n_channels_in_ if n_channels is None else n_channels,
            spatial_shape=self.spatial_shape_,
        )

    def _check_Z(self, Z, name="Z"):
        check_is_fitted(self, "net_")
        Z = np.asarray(Z.to_numpy() if hasattr(Z, "to_numpy") else Z)
        if Z.dtype.kind not in "biuf":
            raise TypeError(f"{name} must be a numeric array, got dtype {Z.dtype}.")
        if Z.ndim != 2 or Z.shape[1] != self._n_latent_fitted:
            raise ValueError(f"{name} must have shape (n_cells, {self._n_latent_fitted}) "
                             f"(n_latent), got {Z.shape}.")
        if Z.shape[0] == 0:
            raise ValueError(f"{name} is empty: it holds 0 rows.")
        if not np.isfinite(Z).all():
            raise ValueError(f"{name} contains NaN or infinite values.")
        return np.ascontiguousarray(Z, dtype=np.float32)

    @property
    def _n_latent_fitted(self):
        # The fitted model's, not the parameter's: set_params must not change a
        # fitted model before the next fit.
        return int(self._net_spec_[1]["n_latent"])

    def _prior_draws(self, n, random_state):
        rng = check_random_state(random_state)
        return rng.standard_normal((n, self._n_latent_fitted)).astype(np.float32)

    def get_feature_names_out(self, input_features=None):
        """Names of the latent dimensions, ``<prefix>0`` … ``<prefix>{n_latent-1}``.

        Parameters
        ----------
        input_features : None
            Ignored; present for scikit-learn API compatibility.

        Returns
        -------
        names : ndarray of str
            One name per latent dimension.
        """
        check_is_fitted(self, "net_")
        return np.asarray([f"{self._feature_prefix}{i}" for i in range(self._n_latent_fitted)],
                          dtype=object)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.non_deterministic = False
        tags.transformer_tags.preserves_dtype = ["float32"]  # latents are float32
        return tags
