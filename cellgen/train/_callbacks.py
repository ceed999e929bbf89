"""skorch callbacks used by the cellgen estimators."""

from __future__ import annotations

import copy

from skorch.callbacks import Callback

from ._modules import plain_module

__all__ = ["RestoreBestWeights"]


class RestoreBestWeights(Callback):
    """Keep the weights of the epoch with the best validation loss, restore them at the end.

    The paper keeps the model with the highest validation ELBO (section 6.4):
    the β-weighted objective of Eq. 3 (``"valid_loss_best"``, the estimators'
    choice) for its models, and the unweighted ELBO (``"valid_elbo_best"``) for
    the models of its β study, as :func:`cellgen.analysis.beta_sweep` does. The
    copy lives in memory (on the CPU) so no file is written.

    Parameters
    ----------
    monitor : str or None, default="valid_loss_best"
        History key that is True on an improving epoch; ``None`` keeps every
        finished epoch (the last one is restored).

    Attributes
    ----------
    best_epoch_ : int or None
        The epoch whose weights were restored.

    Examples
    --------
    >>> from cellgen.train import RestoreBestWeights
    >>> RestoreBestWeights().monitor
    'valid_loss_best'
    """

    def __init__(self, monitor="valid_loss_best"):
        self.monitor = monitor

    def initialize(self):
        """Forget any weights kept from an earlier fit."""
        self.best_state_ = None
        self.best_epoch_ = None
        return self

    def on_epoch_end(self, net, **kwargs):
        """Copy the weights when the monitored key says this epoch improved."""
        row = net.history[-1]
        if self.monitor is None or row.get(self.monitor, False):
            self.best_state_ = {k: v.detach().to("cpu", copy=True)
                                for k, v in plain_module(net).state_dict().items()}
            self.best_epoch_ = row["epoch"]

    def on_train_end(self, net, **kwargs):
        """Load the best weights back into the module."""
        if self.best_state_ is not None:
            plain_module(net).load_state_dict(copy.deepcopy(self.best_state_))
