"""The skorch net that trains the Statistical Cell's VAEs.

The module computes its own loss (``module.loss`` returns a ``LossOutput``);
the net only moves batches, records every ELBO term per batch and lets skorch
average them per epoch, which avoids ``EpochScoring`` keeping every
reconstruction of an epoch in memory.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping

import numpy as np
import torch
from skorch import NeuralNet
from skorch.callbacks import PassthroughScoring, ProgressBar
from skorch.dataset import Dataset, unpack_data
from skorch.helper import predefined_split
from skorch.utils import to_tensor
from torch.utils.data import Dataset as TorchDataset

from ..module import ELBO, KL, RECONSTRUCTION, TERMS
from ._callbacks import RestoreBestWeights
from ._data import as_tensor
from ._distributed import make_distributed_history
from ._modules import plain_module

__all__ = ["VAENet", "make_vae_net", "resolve_device", "resolve_precision", "batched",
           "history_frame"]

_PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(device: str | torch.device | None) -> str:
    """Turn ``"auto"`` into ``"cuda"`` when a GPU is present, else ``"cpu"``.

    Parameters
    ----------
    device : str, torch.device or None
        ``"auto"``, ``None`` (same as ``"auto"``) or any torch device string.

    Returns
    -------
    device : str
        A concrete torch device string.

    Raises
    ------
    ValueError
        If ``device`` is not a valid torch device, or names a CUDA or MPS device
        that is not present.

    Examples
    --------
    >>> from cellgen.train import resolve_device
    >>> resolve_device("cpu")
    'cpu'
    """
    if device is None or device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(
            f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N'; got {device!r}."
        ) from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} was requested but no CUDA GPU is available.")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ValueError(f"device={device!r} was requested but there are only "
                         f"{torch.cuda.device_count()} CUDA GPU(s).")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device={device!r} was requested but this machine has no Apple "
                         "GPU (MPS) that torch can use.")
    return str(dev)


def resolve_precision(precision: str, device: str) -> torch.dtype | None:
    """The autocast dtype for ``precision`` on ``device``; ``None`` means float32.

    ``"auto"`` is bfloat16 on a CUDA GPU that supports it, float16 (with loss
    scaling) on an older GPU, and float32 on the CPU, where mixed precision is
    rarely faster.

    Parameters
    ----------
    precision : {"auto", "fp32", "bf16", "fp16"}
        Requested precision of the forward pass.
    device : str
        A concrete torch device string (see :func:`resolve_device`).

    Returns
    -------
    dtype : torch.dtype or None
        ``torch.bfloat16``, ``torch.float16`` or ``None`` (no autocast).

    Raises
    ------
    ValueError
        If ``precision`` is not one of the four names.

    Examples
    --------
    >>> from cellgen.train import resolve_precision
    >>> resolve_precision("auto", "cpu") is None
    True
    >>> resolve_precision("bf16", "cpu")
    torch.bfloat16
    """
    if precision == "auto":
        if not str(device).startswith("cuda"):
            return None
        index = torch.device(device).index
        with torch.cuda.device(index or 0):
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if precision not in _PRECISIONS:
        raise ValueError(
            f"precision must be 'auto', 'fp32', 'bf16' or 'fp16'; got {precision!r}."
        )
    return _PRECISIONS[precision]


def _channels_last(t):
    """``t`` in channels-last memory order when it is a 4D or 5D image batch."""
    if isinstance(t, torch.Tensor) and t.is_floating_point():
        if t.dim() == 4:
            return t.contiguous(memory_format=torch.channels_last)
        if t.dim() == 5:
            return t.contiguous(memory_format=torch.channels_last_3d)
    return t


class VAENet(NeuralNet):
    """skorch net for a cellgen generative module that owns its loss.

    Parameters
    ----------
    *args, **kwargs
        Passed to :class:`skorch.NeuralNet`.
    beta : float, default=0.5
        Weight of the KL term (paper, Eq. 3).
    target_key : str or None, default=None
        With dictionary inputs, the key of the modelled image (``"x"``); with
        array inputs the array itself is modelled.
    autocast_dtype : torch.dtype or None, default=None
        Mixed precision: the forward pass runs under ``torch.autocast`` with
        this dtype, the loss is computed in float32, and float16 uses a
        gradient scaler. ``None`` trains in float32.
    channels_last : bool, default=False
        Store convolution weights and image batches in channels-last order,
        which tensor cores prefer.
    world : tuple of (int, int) or None, default=None
        ``(rank, world_size)`` to train data-parallel in a process group (see
        :func:`distributed_world`): the module is wrapped in
        DistributedDataParallel and each process trains on its share of every
        epoch; ``None`` trains in this process alone.
    sampler_seed : int, default=0
        Seed of the distributed sampler's shuffling (the same in every process).

    Examples
    --------
    >>> import numpy as np, torch
    >>> from cellgen.module import VAE
    >>> from cellgen.train import make_vae_net
    >>> net = make_vae_net(VAE, dict(in_channels=1, spatial_shape=(8, 8), widths=(4,),
    ...                    n_latent=2), max_epochs=1, batch_size=4, lr=1e-3, beta=0.5,
    ...                    device="cpu", verbose=0, callbacks=None)
    >>> _ = net.fit(np.random.rand(8, 1, 8, 8).astype("float32"), None)
    >>> "train_elbo" in net.history[-1]
    True
    """

    def __init__(self, *args, beta=0.5, target_key=None, autocast_dtype=None,
                 channels_last=False, world=None, sampler_seed=0, **kwargs):
        super().__init__(*args, **kwargs)
        self.world = world
        self.sampler_seed = sampler_seed
        self.beta = beta
        self.target_key = target_key
        self.autocast_dtype = autocast_dtype
        self.channels_last = channels_last

    def autocast(self):
        """Context of the forward pass: autocast in mixed precision, else nothing."""
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(torch.device(self.device).type, dtype=self.autocast_dtype)

    def initialize_module(self):
        """Build the module; in channels-last mode, reorder its weights once."""
        super().initialize_module()
        if self.channels_last:
            is_3d = any(isinstance(m, torch.nn.Conv3d) for m in self.module_.modules())
            self.module_.to(memory_format=torch.channels_last_3d if is_3d
                            else torch.channels_last)
        if self.world is not None:
            from torch.nn.parallel import DistributedDataParallel

            device = torch.device(self.device)
            # Rank 0's initial weights are broadcast to every process here.
            self.module_ = DistributedDataParallel(
                self.module_, device_ids=[device.index] if device.type == "cuda" else None)
            # Same weights, but each process draws its own latent noise.
            torch.manual_seed(torch.initial_seed() + self.world[0])
        return self

    def get_iterator(self, dataset, training=False):
        """Batches of ``dataset``; in a distributed fit, this process's share of each epoch.

        Validation batches are not shared out: every process evaluates the
        whole validation split, so all of them see the same validation loss.
        """
        if self.world is None or not training:
            return super().get_iterator(dataset, training=training)
        from torch.utils.data import DistributedSampler

        rank, world_size = self.world
        sampler = DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=True,
                                     seed=self.sampler_seed)
        sampler.set_epoch(len(self.history))  # a new order every epoch
        kwargs = self.get_params_for("iterator_train")
        kwargs.pop("shuffle", None)
        kwargs.setdefault("batch_size", self.batch_size)
        return self.iterator_train(dataset, sampler=sampler, **kwargs)

    def initialize(self):
        """Initialize the net, and a gradient scaler when training in float16."""
        super().initialize()
        self.scaler_ = (torch.amp.GradScaler(torch.device(self.device).type)
                        if self.autocast_dtype == torch.float16 else None)
        return self

    def infer(self, x, **fit_params):
        """Forward pass under the net's precision; outputs come back in float32."""
        x = to_tensor(x, device=self.device)
        if self.channels_last:
            x = ({k: _channels_last(v) for k, v in x.items()} if isinstance(x, Mapping)
                 else _channels_last(x))
        with self.autocast():
            out = super().infer(x, **fit_params)
        # The loss (sums of squares over whole images, KL) is accumulated in float32.
        if isinstance(out, tuple):
            return tuple(o.float() if torch.is_tensor(o) and o.is_floating_point() else o
                         for o in out)
        return out.float() if out.is_floating_point() else out

    def train_step_single(self, batch, **fit_params):
        """One forward and backward pass; the loss is scaled in float16 training."""
        if getattr(self, "scaler_", None) is None:
            return super().train_step_single(batch, **fit_params)
        self._set_training(True)
        Xi, yi = unpack_data(batch)
        y_pred = self.infer(Xi, **fit_params)
        loss = self.get_loss(y_pred, yi, X=Xi, training=True)
        self.scaler_.scale(loss).backward()
        # Callbacks (gradient clipping) must see the true gradients.
        for name in self._optimizers:
            self.scaler_.unscale_(getattr(self, name + "_"))
        return {"loss": loss, "y_pred": y_pred}

    def _step_optimizer(self, step_fn):
        if getattr(self, "scaler_", None) is None:
            return super()._step_optimizer(step_fn)
        # A gradient scaler cannot step with a closure: compute, then step.
        step_fn()
        for name in self._optimizers:
            self.scaler_.step(getattr(self, name + "_"))
        self.scaler_.update()
        return None

    def get_loss(self, y_pred, y_true, X=None, training=False):
        """Return the module's objective for the batch and record every ELBO term."""
        x = X[self.target_key] if isinstance(X, Mapping) else X
        x = to_tensor(x, device=self.device)
        x_hat, mu, logvar = y_pred[:3]
        out = plain_module(self).loss(x, x_hat, mu, logvar, beta=self.beta)
        prefix = "train" if training else "valid"
        if not torch.isfinite(out.loss):
            # Batches of this phase so far (each records its own ELBO terms).
            done = sum(f"{prefix}_{ELBO}" in b for b in self.history[-1]["batches"])
            phase = "training" if training else "validation"
            raise FloatingPointError(
                f"the {phase} loss became {out.loss.item()} at epoch {len(self.history)}, "
                f"{phase} batch {done + 1}; lower lr, check the input for extreme values, "
                "or clip gradients (callbacks=[skorch.callbacks.GradientNormClipping(1.0)])."
            )
        for key, value in ((RECONSTRUCTION, out.reconstruction), (KL, out.kl), (ELBO, out.elbo)):
            self.history.record_batch(f"{prefix}_{key}", value.detach().mean().item())
        return out.loss


def make_vae_net(module, module_kwargs, *, max_epochs, batch_size, lr, beta, device,
                 verbose, callbacks, valid_data=None, target_key=None, num_workers=0,
                 checkpoint=None, autocast_dtype=None, channels_last=False, compile=False,
                 world=None, sampler_seed=0):
    """Build a :class:`VAENet` with cellgen's defaults.

    Parameters
    ----------
    module : type
        A cellgen module class (``VAE`` or ``ConditionalVAE``).
    module_kwargs : dict
        Arguments of the module, given data-derived sizes.
    max_epochs, batch_size : int
        Training length and batch size.
    lr : float
        Adam learning rate (Adam betas 0.9, 0.999 as in the paper).
    beta : float
        Weight of the KL term.
    device : str
        Torch device.
    verbose : int
        0 silent; 1 or more prints a table per epoch and a progress bar.
    callbacks : list or None
        Extra skorch callbacks, appended to cellgen's. A ``("restore_best",
        callback)`` pair replaces the built-in choice of the epoch kept (a
        :class:`RestoreBestWeights` on the validation objective).
    valid_data : array, dict, torch Dataset or None, default=None
        Held-out validation inputs; ``None`` trains without validation.
    target_key : str or None, default=None
        Key of the modelled image in dictionary inputs.
    num_workers : int, default=0
        DataLoader worker processes. With workers, batches are prefetched and,
        on a GPU, read into pinned memory.
    checkpoint : EpochCheckpoint or None, default=None
        Saves the training state after every epoch (runs after every other
        callback).
    autocast_dtype : torch.dtype or None, default=None
        Mixed-precision dtype (see :func:`resolve_precision`); ``None`` trains
        in float32.
    channels_last : bool, default=False
        Channels-last memory order for weights and batches.
    compile : bool, default=False
        Compile the module with ``torch.compile``.
    world : tuple of (int, int) or None, default=None
        ``(rank, world_size)`` for data-parallel training; the net then keeps
        a history shared by all processes.
    sampler_seed : int, default=0
        Seed of the distributed shuffling.

    Returns
    -------
    net : VAENet
        An uninitialized net.

    Examples
    --------
    >>> from cellgen.module import VAE
    >>> from cellgen.train import make_vae_net
    >>> net = make_vae_net(VAE, dict(in_channels=2, spatial_shape=(16, 16), widths=(8,),
    ...                    n_latent=4), max_epochs=1, batch_size=8, lr=1e-3, beta=0.5,
    ...                    device="cpu", verbose=0, callbacks=None)
    >>> net.max_epochs
    1
    """
    cbs = []
    for prefix in ("train", "valid") if valid_data is not None else ("train",):
        for term in TERMS:
            cbs.append(
                (f"{prefix}_{term}",
                 PassthroughScoring(name=f"{prefix}_{term}", on_train=prefix == "train",
                                    lower_is_better=term != ELBO))
            )
    user_names = {cb[0] for cb in callbacks or [] if isinstance(cb, tuple)}
    if "restore_best" not in user_names:
        # Without a validation split every finished epoch is kept, so that a loss that
        # turns non-finite mid-epoch falls back to the last finished one.
        cbs.append(("restore_best", RestoreBestWeights(
            "valid_loss_best" if valid_data is not None else None)))
    if verbose:
        cbs.append(("progress", ProgressBar()))
    for i, cb in enumerate(callbacks or []):
        cbs.append(cb if isinstance(cb, tuple) else (f"user_{i}_{type(cb).__name__}", cb))
    if checkpoint is not None:
        cbs.append(("checkpoint", checkpoint))
    if valid_data is not None and not isinstance(valid_data, TorchDataset):
        valid_data = Dataset(valid_data, None)
    train_split = predefined_split(valid_data) if valid_data is not None else None
    on_gpu = str(device).startswith("cuda")
    # skorch builds a new DataLoader every epoch, so workers cannot persist;
    # each prefetches a few batches ahead.
    loader_extra = ({f"iterator_{part}__prefetch_factor": 4 for part in ("train", "valid")}
                    if num_workers else {})
    return VAENet(
        module,
        criterion=torch.nn.MSELoss,  # unused: the module owns its loss
        optimizer=torch.optim.Adam,
        optimizer__betas=(0.9, 0.999),
        lr=lr,
        max_epochs=max_epochs,
        batch_size=batch_size,
        iterator_train__shuffle=True,
        iterator_train__num_workers=num_workers,
        iterator_valid__num_workers=num_workers,
        # Pinned host memory lets batches copy to the GPU asynchronously.
        iterator_train__pin_memory=on_gpu,
        iterator_valid__pin_memory=on_gpu,
        **loader_extra,
        train_split=train_split,
        predict_nonlinearity=None,
        device=device,
        verbose=verbose,
        callbacks=cbs,
        beta=beta,
        target_key=target_key,
        autocast_dtype=autocast_dtype,
        channels_last=channels_last,
        compile=compile,
        world=world,
        sampler_seed=sampler_seed,
        history=None if world is None else make_distributed_history(*world),
        **{f"module__{k}": v for k, v in module_kwargs.items()},
    )


def batched(fn, arrays, *, batch_size, device, dtypes=None, autocast_dtype=None,
            channels_last=False):
    """Apply ``fn`` to aligned slices of ``arrays`` in inference mode, on ``device``.

    Parameters
    ----------
    fn : callable
        Called with one tensor per array; returns a tensor or a tuple of tensors.
    arrays : sequence of ndarray
        Arrays with the same first axis.
    batch_size : int
        Rows per call.
    device : str
        Torch device the slices are moved to (one batch at a time).
    dtypes : sequence of torch.dtype or None, default=None
        Dtype of each array's tensor; float32 by default.
    autocast_dtype : torch.dtype or None, default=None
        Run ``fn`` under ``torch.autocast`` with this dtype; outputs are
        returned as float32 whatever it is.
    channels_last : bool, default=False
        Pass 4D and 5D float tensors in channels-last memory order.

    Returns
    -------
    out : ndarray or tuple of ndarray
        Outputs concatenated along the first axis, on the CPU.

    Examples
    --------
    >>> import numpy as np
    >>> from cellgen.train import batched
    >>> batched(lambda a: a * 2, [np.ones((5, 2), dtype="float32")], batch_size=2,
    ...         device="cpu").sum()
    np.float32(20.0)
    """
    n = len(arrays[0])
    dtypes = dtypes or [torch.float32] * len(arrays)
    outs = []
    autocast = (contextlib.nullcontext() if autocast_dtype is None else
                torch.autocast(torch.device(device).type, dtype=autocast_dtype))
    with torch.inference_mode(), autocast:
        for start in range(0, n, batch_size):
            tensors = [
                as_tensor(a[start:start + batch_size]).to(device=device, dtype=dt)
                for a, dt in zip(arrays, dtypes)
            ]
            if channels_last:
                tensors = [_channels_last(t) for t in tensors]
            res = fn(*tensors)
            res = res if isinstance(res, tuple) else (res,)
            outs.append([r.detach().float().cpu().numpy() for r in res])
    cat = tuple(np.concatenate([o[i] for o in outs]) for i in range(len(outs[0])))
    return cat if len(cat) > 1 else cat[0]


def history_frame(history):
    """Return a skorch history as a DataFrame, one row per epoch.

    Parameters
    ----------
    history : skorch.history.History
        The net's history.

    Returns
    -------
    frame : pandas.DataFrame
        Scalar entries of every epoch (batches dropped).

    Examples
    --------
    >>> from skorch.history import History
    >>> from cellgen.train import history_frame
    >>> h = History(); h.new_epoch(); h.record("epoch", 1); h.record("train_loss", 2.0)
    >>> history_frame(h).columns.tolist()
    ['epoch', 'train_loss']
    """
    import pandas as pd

    rows = [{k: v for k, v in row.items() if k != "batches"} for row in history]
    return pd.DataFrame(rows)
