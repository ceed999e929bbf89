"""The skorch net that trains the Statistical Cell's VAEs.

The module computes its own loss (``module.loss`` returns a ``LossOutput``);
the net only moves batches, records every ELBO term per batch and lets skorch
average them per epoch, which avoids ``EpochScoring`` keeping every
reconstruction of an epoch in memory.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from skorch import NeuralNet
from skorch.callbacks import PassthroughScoring, ProgressBar
from skorch.dataset import Dataset
from skorch.helper import predefined_split
from skorch.utils import to_tensor
from torch.utils.data import Dataset as TorchDataset

from ..module import ELBO, KL, RECONSTRUCTION, TERMS
from ._callbacks import RestoreBestWeights

__all__ = ["VAENet", "make_vae_net", "resolve_device", "batched", "history_frame"]


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
        If ``device`` is not a valid torch device, or names CUDA when none is present.

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
    return str(dev)


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

    def __init__(self, *args, beta=0.5, target_key=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.beta = beta
        self.target_key = target_key

    def get_loss(self, y_pred, y_true, X=None, training=False):
        """Return the module's objective for the batch and record every ELBO term."""
        x = X[self.target_key] if isinstance(X, Mapping) else X
        x = to_tensor(x, device=self.device)
        x_hat, mu, logvar = y_pred[:3]
        out = self.module_.loss(x, x_hat, mu, logvar, beta=self.beta)
        if not torch.isfinite(out.loss):
            epoch = len(self.history)
            batch = len(self.history[-1]["batches"])
            raise FloatingPointError(
                f"the training loss became {out.loss.item()} at epoch {epoch}, batch "
                f"{batch}; lower lr, check the input for extreme values, or clip gradients "
                "(callbacks=[skorch.callbacks.GradientNormClipping(1.0)]). The estimator "
                "keeps the best weights of the epochs before."
            )
        prefix = "train" if training else "valid"
        for key, value in ((RECONSTRUCTION, out.reconstruction), (KL, out.kl), (ELBO, out.elbo)):
            self.history.record_batch(f"{prefix}_{key}", value.detach().mean().item())
        return out.loss


def make_vae_net(module, module_kwargs, *, max_epochs, batch_size, lr, beta, device,
                 verbose, callbacks, valid_data=None, target_key=None, num_workers=0,
                 checkpoint=None):
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
        Extra skorch callbacks, appended to cellgen's.
    valid_data : array, dict, torch Dataset or None, default=None
        Held-out validation inputs; ``None`` trains without validation.
    target_key : str or None, default=None
        Key of the modelled image in dictionary inputs.
    num_workers : int, default=0
        DataLoader worker processes.
    checkpoint : EpochCheckpoint or None, default=None
        Saves the training state after every epoch (runs after every other
        callback).

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
    if valid_data is not None:
        cbs.append(("restore_best", RestoreBestWeights()))
    if verbose:
        cbs.append(("progress", ProgressBar()))
    for i, cb in enumerate(callbacks or []):
        cbs.append(cb if isinstance(cb, tuple) else (f"user_{i}_{type(cb).__name__}", cb))
    if checkpoint is not None:
        cbs.append(("checkpoint", checkpoint))
    if valid_data is not None and not isinstance(valid_data, TorchDataset):
        valid_data = Dataset(valid_data, None)
    train_split = predefined_split(valid_data) if valid_data is not None else None
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
        train_split=train_split,
        predict_nonlinearity=None,
        device=device,
        verbose=verbose,
        callbacks=cbs,
        beta=beta,
        target_key=target_key,
        **{f"module__{k}": v for k, v in module_kwargs.items()},
    )


def batched(fn, arrays, *, batch_size, device, dtypes=None):
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
    with torch.inference_mode():
        for start in range(0, n, batch_size):
            tensors = [
                torch.as_tensor(a[start:start + batch_size]).to(device=device, dtype=dt)
                for a, dt in zip(arrays, dtypes)
            ]
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
