"""Generative modules of the Statistical Cell; each owns its loss.

Likelihood and objective
------------------------
The decoder outputs the mean of a Gaussian with fixed variance 1/2 per pixel,
so ``log p(x | z) = -sum((x - x_hat) ** 2)`` up to an additive constant that
does not depend on the model; the constant is left out so that ELBO ratios
(the coupling statistic) compare the model-dependent part only. The per-cell
reconstruction term is therefore the *sum* of squared errors over pixels and
channels, and the KL term the sum over latent dimensions, both on the same
per-cell scale. Training minimises the paper's Eq. 3 averaged over the batch:
``(1 - beta) * reconstruction + beta * KL``; ``beta = 0.5`` is the ordinary VAE
objective up to a factor 1/2. The reported ELBO is the unweighted
``-(reconstruction + KL)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from ..nn import Decoder, Encoder, ReferencePyramid, downsample_pyramid

__all__ = ["LossOutput", "VAE", "ConditionalVAE", "gaussian_kl"]


@dataclass
class LossOutput:
    """Typed record of the ELBO terms of one batch.

    Parameters
    ----------
    loss : torch.Tensor
        Scalar objective minimised in training, the batch mean of
        ``(1 - beta) * reconstruction + beta * kl`` (paper, Eq. 3).
    reconstruction : torch.Tensor of shape (n,)
        Per-cell negative log-likelihood: the sum of squared errors.
    kl : torch.Tensor of shape (n,)
        Per-cell ``KL(q(z | x) || N(0, I))``, summed over latent dimensions.
    elbo : torch.Tensor of shape (n,)
        Per-cell unweighted evidence lower bound, ``-(reconstruction + kl)``.
    beta : float
        The weight used for ``loss``.

    Examples
    --------
    >>> import torch
    >>> from cellgen.module import LossOutput
    >>> out = LossOutput(torch.tensor(1.0), torch.ones(2), torch.zeros(2), -torch.ones(2), 0.5)
    >>> out.elbo.tolist()
    [-1.0, -1.0]
    """

    loss: torch.Tensor
    reconstruction: torch.Tensor
    kl: torch.Tensor
    elbo: torch.Tensor
    beta: float


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Closed-form ``KL(N(mu, exp(logvar)) || N(0, I))`` per dimension.

    Parameters
    ----------
    mu, logvar : torch.Tensor of shape (n, n_latent)
        Posterior means and log-variances.

    Returns
    -------
    kl : torch.Tensor of shape (n, n_latent)
        The divergence of each dimension.

    Examples
    --------
    >>> import torch
    >>> from cellgen.module import gaussian_kl
    >>> gaussian_kl(torch.zeros(1, 2), torch.zeros(1, 2)).tolist()
    [[0.0, 0.0]]
    """
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)


def _sse(x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
    return (x - x_hat).pow(2).flatten(1).sum(1)


def _pool(maps):
    """``(n, 2 * sum(channels))``: per map in order, channel means then population SDs."""
    out = []
    for h in maps:
        h = h.float()
        dims = tuple(range(2, h.dim()))
        out += [h.mean(dims), h.std(dims, correction=0)]
    return torch.cat(out, 1)


class _BaseVAE(nn.Module):
    """Shared padding, reparameterization, loss and K-sample ELBO."""

    def __init__(self, spatial_shape, widths, n_latent):
        super().__init__()
        widths = tuple(int(w) for w in widths)
        if not widths or min(widths) < 1:
            raise ValueError(f"widths must be a non-empty sequence of positive ints, got {widths}.")
        if int(n_latent) < 1:
            raise ValueError(f"n_latent must be at least 1, got {n_latent}.")
        self.spatial_shape = tuple(int(s) for s in spatial_shape)
        if len(self.spatial_shape) not in (2, 3):
            raise ValueError(
                f"spatial_shape must have 2 or 3 axes, got {self.spatial_shape}."
            )
        self.n_latent = int(n_latent)
        factor = 2 ** len(widths)
        # Any input size works: pad every axis up to a multiple of 2**depth,
        # centred, and crop the decoder output back.
        self.padded_shape = tuple(-(-s // factor) * factor for s in self.spatial_shape)
        pads = []
        for s, p in zip(reversed(self.spatial_shape), reversed(self.padded_shape)):
            before = (p - s) // 2
            pads += [before, p - s - before]
        self._pads = tuple(pads)
        self._crop = tuple(
            slice((p - s) // 2, (p - s) // 2 + s)
            for s, p in zip(self.spatial_shape, self.padded_shape)
        )

    def _pad(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x, self._pads) if any(self._pads) else x

    def _unpad(self, x: torch.Tensor) -> torch.Tensor:
        return x[(slice(None), slice(None), *self._crop)] if any(self._pads) else x

    @staticmethod
    def reparameterize(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """Draw ``z = mu + sigma * eps`` with ``eps ~ N(0, I)``."""
        return mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)

    def loss(self, x, x_hat, mu, logvar, beta: float = 0.5) -> LossOutput:
        """Compute the ELBO terms of a batch.

        Parameters
        ----------
        x : torch.Tensor of shape (n, C, [Z,] Y, X)
            The modelled images (for a conditional model, the structure channel).
        x_hat : torch.Tensor
            Decoder means, same shape as ``x``.
        mu, logvar : torch.Tensor of shape (n, n_latent)
            Posterior parameters.
        beta : float, default=0.5
            Weight of the KL term in Eq. 3, in [0, 1].

        Returns
        -------
        LossOutput
            The objective and every per-cell term.
        """
        rec = _sse(x, x_hat)
        kl = gaussian_kl(mu, logvar).sum(1)
        loss = ((1.0 - beta) * rec + beta * kl).mean()
        return LossOutput(loss=loss, reconstruction=rec, kl=kl, elbo=-(rec + kl), beta=beta)

    def _elbo_k(self, x, mu, logvar, decode, n_samples: int) -> torch.Tensor:
        # All K draws go through the decoder in one batched pass.
        n = x.shape[0]
        # Under mixed precision the encoder hands back bfloat16/float16; the noise and
        # the KL are drawn and summed in float32, as the training loss is.
        mu, logvar = mu.float(), logvar.float()
        std = torch.exp(0.5 * logvar)
        eps = torch.randn((n_samples, *mu.shape), dtype=mu.dtype, device=mu.device)
        z = (mu.unsqueeze(0) + eps * std.unsqueeze(0)).reshape(n_samples * n, -1)
        x_hat = decode(z)
        rec = _sse(x.repeat(n_samples, *([1] * (x.dim() - 1))), x_hat).reshape(n_samples, n)
        kl = gaussian_kl(mu, logvar).sum(1)
        return -(rec.mean(0) + kl)


class VAE(_BaseVAE):
    """Reference β-VAE of the cell membrane and DNA channels.

    Parameters
    ----------
    in_channels : int
        Number of image channels.
    spatial_shape : tuple of int
        Spatial shape of the images, ``(Y, X)`` or ``(Z, Y, X)``; any size
        (padded internally to a multiple of ``2 ** len(widths)``).
    widths : sequence of int, default=(32, 64, 128, 256, 512)
        Channels of the residual blocks.
    n_latent : int, default=512
        Latent dimension.
    spectral : bool, default=True
        Spectral normalization on every convolution and linear layer.

    Examples
    --------
    >>> import torch
    >>> from cellgen.module import VAE
    >>> vae = VAE(2, (20, 16), widths=(4, 8), n_latent=3)
    >>> x_hat, mu, logvar = vae(torch.rand(5, 2, 20, 16))
    >>> x_hat.shape, mu.shape
    (torch.Size([5, 2, 20, 16]), torch.Size([5, 3]))
    """

    def __init__(self, in_channels, spatial_shape, widths=(32, 64, 128, 256, 512),
                 n_latent=512, spectral=True):
        super().__init__(spatial_shape, widths, n_latent)
        self.in_channels = int(in_channels)
        self.encoder = Encoder(in_channels, self.padded_shape, widths, n_latent, spectral=spectral)
        self.decoder = Decoder(in_channels, self.padded_shape, widths, n_latent, spectral=spectral)

    def encode(self, x):
        """Return the posterior mean and log-variance of ``x``."""
        return self.encoder(self._pad(x))

    def decode(self, z):
        """Return the decoder mean image for latent vectors ``z``."""
        return self._unpad(self.decoder(z))

    def pooled_features(self, x, blocks=(-2, -1)):
        """Spatial mean and SD of every channel of the chosen encoder blocks."""
        return _pool(self.encoder.block_outputs(self._pad(x), blocks=blocks))

    def forward(self, x):
        """Encode, draw one ``z`` and decode; returns ``(x_hat, mu, logvar)``."""
        mu, logvar = self.encode(x)
        return self.decode(self.reparameterize(mu, logvar)), mu, logvar

    def elbo(self, x, n_samples: int = 10):
        """Per-cell unweighted ELBO averaged over ``n_samples`` draws of ``z``."""
        mu, logvar = self.encode(x)
        return self._elbo_k(x, mu, logvar, self.decode, n_samples)


_CONDITIONINGS = ("linear", "convolutional")


class ConditionalVAE(_BaseVAE):
    """Conditional β-VAE of a structure channel given reference image and label.

    The reference and the one-hot structure label are injected at every block
    of encoder and decoder. With ``conditioning="linear"`` (the paper's) the
    reference is the image resized to each block's resolution; with
    ``"convolutional"`` it is the output of a :class:`~cellgen.nn.ReferencePyramid`
    at that resolution, and the label also scales it per channel.

    Parameters
    ----------
    in_channels : int
        Channels of the modelled structure image (usually 1).
    reference_channels : int
        Channels of the reference image.
    n_labels : int
        Number of structure labels.
    spatial_shape : tuple of int
        Spatial shape of the images; any size (padded internally).
    widths : sequence of int, default=(32, 64, 128, 256, 512)
        Channels of the residual blocks.
    n_latent : int, default=512
        Latent dimension.
    spectral : bool, default=True
        Spectral normalization on every convolution and linear layer.
    conditioning : {"linear", "convolutional"}, default="linear"
        How the reference reaches each block (see above).

    Examples
    --------
    >>> import torch
    >>> from cellgen.module import ConditionalVAE
    >>> cvae = ConditionalVAE(1, 2, 4, (16, 16), widths=(4, 8), n_latent=3)
    >>> x, ref = torch.rand(5, 1, 16, 16), torch.rand(5, 2, 16, 16)
    >>> out = cvae(x, ref, torch.tensor([0, 1, 2, 3, 0]))
    >>> out[0].shape
    torch.Size([5, 1, 16, 16])
    """

    def __init__(self, in_channels, reference_channels, n_labels, spatial_shape,
                 widths=(32, 64, 128, 256, 512), n_latent=512, spectral=True,
                 conditioning="linear"):
        super().__init__(spatial_shape, widths, n_latent)
        if int(n_labels) < 1 or int(reference_channels) < 1:
            raise ValueError("a conditional VAE needs at least one reference channel and label.")
        if conditioning not in _CONDITIONINGS:
            raise ValueError(
                f"conditioning must be one of {_CONDITIONINGS}, got {conditioning!r}."
            )
        self.in_channels = int(in_channels)
        self.n_labels = int(n_labels)
        self.depth = len(tuple(widths))
        self.conditioning = conditioning
        self.pyramid = None
        if conditioning == "convolutional":
            self.pyramid = ReferencePyramid(
                reference_channels, widths, len(self.spatial_shape), spectral)
            reference_channels = self.pyramid.channels
        kw = dict(reference_channels=reference_channels, n_labels=n_labels, spectral=spectral,
                  modulate=conditioning == "convolutional")
        self.encoder = Encoder(in_channels, self.padded_shape, widths, n_latent, **kw)
        self.decoder = Decoder(in_channels, self.padded_shape, widths, n_latent, **kw)

    def _condition(self, reference, label):
        reference = self._pad(reference)
        levels = (downsample_pyramid(reference, self.depth) if self.pyramid is None
                  else self.pyramid(reference))
        onehot = F.one_hot(label.long(), self.n_labels).to(reference.dtype)
        return levels, onehot

    def encode(self, x, reference, label):
        """Return the conditional posterior mean and log-variance."""
        levels, onehot = self._condition(reference, label)
        return self.encoder(self._pad(x), levels, onehot)

    def pooled_features(self, x, reference, label, blocks=(-2, -1)):
        """Spatial mean and SD of every channel of the chosen encoder blocks."""
        levels, onehot = self._condition(reference, label)
        return _pool(self.encoder.block_outputs(self._pad(x), levels, onehot, blocks=blocks))

    def decode(self, z, reference, label):
        """Return the structure image decoded from ``z`` in the given cells."""
        levels, onehot = self._condition(reference, label)
        return self._unpad(self.decoder(z, levels, onehot))

    def forward(self, x, reference, label):
        """Encode, draw one ``z`` and decode; returns ``(x_hat, mu, logvar)``."""
        levels, onehot = self._condition(reference, label)
        mu, logvar = self.encoder(self._pad(x), levels, onehot)
        z = self.reparameterize(mu, logvar)
        return self._unpad(self.decoder(z, levels, onehot)), mu, logvar

    def elbo(self, x, reference, label, n_samples: int = 10):
        """Per-cell unweighted conditional ELBO over ``n_samples`` draws of ``z``."""
        levels, onehot = self._condition(reference, label)
        mu, logvar = self.encoder(self._pad(x), levels, onehot)
        k = n_samples
        rep_levels = [lv.repeat(k, *([1] * (lv.dim() - 1))) for lv in levels]
        rep_onehot = onehot.repeat(k, 1)
        return self._elbo_k(
            x, mu, logvar, lambda z: self._unpad(self.decoder(z, rep_levels, rep_onehot)), k
        )
