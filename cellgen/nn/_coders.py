"""Encoder and decoder stacks built from the residual blocks."""

from __future__ import annotations

import math
from numbers import Integral

from torch import nn

from ._blocks import Conditioning, ResidualDown, ResidualUp, maybe_spectral_norm

__all__ = ["Encoder", "Decoder"]


def _level_channels(reference_channels, depth):
    """Reference channels at each of the ``depth + 1`` levels, full resolution first."""
    if isinstance(reference_channels, Integral):
        return [int(reference_channels)] * (depth + 1)
    chans = [int(c) for c in reference_channels]
    if len(chans) != depth + 1:
        raise ValueError(
            f"reference_channels per level needs {depth + 1} entries (full resolution "
            f"and one per block), got {len(chans)}."
        )
    return chans


def _bottom_shape(spatial_shape, depth):
    factor = 2**depth
    bad = [s for s in spatial_shape if s % factor]
    if bad:
        raise ValueError(
            f"spatial shape {tuple(spatial_shape)} must be divisible by 2**depth = {factor} "
            "on every axis; pad the images first."
        )
    return tuple(s // factor for s in spatial_shape)


class Encoder(nn.Module):
    """Residual encoder to the mean and log-variance of a diagonal Gaussian.

    Parameters
    ----------
    in_channels : int
        Channels of the encoded image.
    spatial_shape : tuple of int
        Spatial shape, divisible by ``2 ** len(widths)`` on every axis.
    widths : sequence of int
        Output channels of each residual block; every block halves the image.
    n_latent : int
        Dimension of the latent space.
    reference_channels : int or sequence of int, default=0
        Channels of a conditioning reference image injected at every block, or
        of each level of reference features (full resolution first, one more
        level than ``widths``) when they differ per level.
    n_labels : int, default=0
        Number of structure labels injected at every block.
    spectral : bool, default=True
        Spectral normalization on every convolution and linear layer.
    modulate : bool, default=False
        Let the label scale the reference term (see :class:`Conditioning`).

    Examples
    --------
    >>> import torch
    >>> from cellgen.nn import Encoder
    >>> enc = Encoder(2, (16, 16), widths=(4, 8), n_latent=3)
    >>> [t.shape for t in enc(torch.zeros(5, 2, 16, 16))]
    [torch.Size([5, 3]), torch.Size([5, 3])]
    """

    def __init__(
        self,
        in_channels,
        spatial_shape,
        widths,
        n_latent,
        reference_channels=0,
        n_labels=0,
        spectral=True,
        modulate=False,
    ):
        super().__init__()
        ndim = len(spatial_shape)
        widths = list(widths)
        bottom = _bottom_shape(spatial_shape, len(widths))
        ref_chans = _level_channels(reference_channels, len(widths))
        chans = [in_channels, *widths]
        self.blocks = nn.ModuleList(
            ResidualDown(chans[i], chans[i + 1], ndim, spectral) for i in range(len(widths))
        )
        self.conditional = max(ref_chans) > 0 or n_labels > 0
        self.conds = nn.ModuleList(
            Conditioning(ref_chans[i + 1], n_labels, w, ndim, spectral, modulate)
            for i, w in enumerate(widths)
        ) if self.conditional else None
        n_flat = widths[-1] * math.prod(bottom)
        self.fc_mu = maybe_spectral_norm(nn.Linear(n_flat, n_latent), spectral)
        self.fc_logvar = maybe_spectral_norm(nn.Linear(n_flat, n_latent), spectral)

    def block_outputs(self, x, reference_levels=None, label=None, blocks=None):
        """Return the feature maps after the given blocks (all by default).

        ``blocks`` holds block indices (negative from the coarsest); the maps come
        back in that order. Only those maps are kept alive, so asking for the
        coarse blocks costs no more memory than encoding.
        ``reference_levels[i + 1]`` conditions block ``i``.
        """
        n = len(self.blocks)
        wanted = list(range(n)) if blocks is None else [int(b) % n for b in blocks]
        kept = {}
        self._trunk(x, reference_levels, label, keep=set(wanted), into=kept)
        return [kept[b] for b in wanted]

    def _trunk(self, x, reference_levels, label, keep=(), into=None):
        h = x
        for i, block in enumerate(self.blocks):
            cond = (
                self.conds[i](None if reference_levels is None else reference_levels[i + 1], label)
                if self.conditional
                else None
            )
            h = block(h, cond)
            if i in keep:
                into[i] = h
        return h

    def forward(self, x, reference_levels=None, label=None):
        """Encode ``x``; ``reference_levels[i + 1]`` conditions block ``i``."""
        h = self._trunk(x, reference_levels, label).flatten(1)
        return self.fc_mu(h), self.fc_logvar(h)


class Decoder(nn.Module):
    """Residual decoder from a latent vector to an image.

    A linear layer maps the latent vector to the coarsest feature map; residual
    up blocks then double the resolution, the widths in reverse, the last block
    producing ``out_channels``.

    Parameters
    ----------
    out_channels : int
        Channels of the decoded image.
    spatial_shape : tuple of int
        Spatial shape of the output, divisible by ``2 ** len(widths)``.
    widths : sequence of int
        The encoder's widths (used in reverse).
    n_latent : int
        Dimension of the latent space.
    reference_channels : int or sequence of int, default=0
        Channels of a conditioning reference image injected at every block, or
        of each level of reference features (full resolution first, one more
        level than ``widths``) when they differ per level.
    n_labels : int, default=0
        Number of structure labels injected at every block.
    spectral : bool, default=True
        Spectral normalization on every convolution and linear layer.
    modulate : bool, default=False
        Let the label scale the reference term (see :class:`Conditioning`).

    Examples
    --------
    >>> import torch
    >>> from cellgen.nn import Decoder
    >>> Decoder(2, (16, 16), widths=(4, 8), n_latent=3)(torch.zeros(5, 3)).shape
    torch.Size([5, 2, 16, 16])
    """

    def __init__(
        self,
        out_channels,
        spatial_shape,
        widths,
        n_latent,
        reference_channels=0,
        n_labels=0,
        spectral=True,
        modulate=False,
    ):
        super().__init__()
        ndim = len(spatial_shape)
        widths = list(widths)
        self.depth = len(widths)
        ref_chans = _level_channels(reference_channels, self.depth)
        self.bottom = _bottom_shape(spatial_shape, self.depth)
        self.top_channels = widths[-1]
        self.fc = maybe_spectral_norm(
            nn.Linear(n_latent, widths[-1] * math.prod(self.bottom)), spectral
        )
        chans = [*widths[::-1], out_channels]
        self.blocks = nn.ModuleList(
            ResidualUp(chans[i], chans[i + 1], ndim, final=i == self.depth - 1, spectral=spectral)
            for i in range(self.depth)
        )
        self.conditional = max(ref_chans) > 0 or n_labels > 0
        # Block i outputs at level depth - 1 - i.
        self.conds = nn.ModuleList(
            Conditioning(ref_chans[self.depth - 1 - i], n_labels, c, ndim, spectral, modulate)
            for i, c in enumerate(chans[1:])
        ) if self.conditional else None
        self.act = nn.LeakyReLU(0.2)

    def forward(self, z, reference_levels=None, label=None):
        """Decode ``z``; block ``i`` is conditioned at its output resolution."""
        h = self.act(self.fc(z)).reshape(z.shape[0], self.top_channels, *self.bottom)
        for i, block in enumerate(self.blocks):
            cond = None
            if self.conditional:
                level = self.depth - 1 - i
                ref = None if reference_levels is None else reference_levels[level]
                cond = self.conds[i](ref, label)
            h = block(h, cond)
        return h
