"""Access to a net's module that does not depend on how it was compiled."""

from __future__ import annotations

__all__ = ["plain_module"]


def plain_module(net):
    """The net's module without its ``torch.compile`` or DistributedDataParallel wrapper.

    Weights are saved and restored through it, so that their names do not
    depend on whether the module was compiled.

    Parameters
    ----------
    net : skorch.NeuralNet
        An initialized net.

    Returns
    -------
    module : torch.nn.Module
        ``net.module_``, or the module it compiles.

    Examples
    --------
    >>> from cellgen.module import VAE
    >>> from cellgen.train import make_vae_net, plain_module
    >>> net = make_vae_net(VAE, dict(in_channels=1, spatial_shape=(8, 8), widths=(4,),
    ...                    n_latent=2), max_epochs=1, batch_size=4, lr=1e-3, beta=0.5,
    ...                    device="cpu", verbose=0, callbacks=None).initialize()
    >>> plain_module(net) is net.module_
    True
    """
    module = net.module_
    # DistributedDataParallel keeps the module in ``.module``; torch.compile in
    # ``._orig_mod``.
    module = getattr(module, "module", module)
    module = getattr(module, "_orig_mod", module)
    return getattr(module, "module", module)
