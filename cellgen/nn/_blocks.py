"""Residual down/up blocks and conditioning layers of the Statistical Cell.

One implementation serves 2D and 3D images: every layer is picked by the number
of spatial axes (``ndim``), so the two models of the paper differ only in data.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import spectral_norm

__all__ = [
    "ResidualDown",
    "ResidualUp",
    "Conditioning",
    "maybe_spectral_norm",
    "downsample_pyramid",
]

_CONV = {2: nn.Conv2d, 3: nn.Conv3d}
_CONV_T = {2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}
_POOL = {2: nn.AvgPool2d, 3: nn.AvgPool3d}
_LINEAR_MODE = {2: "bilinear", 3: "trilinear"}


def _check_ndim(ndim: int) -> int:
    if ndim not in (2, 3):
        raise ValueError(f"ndim must be 2 or 3 (spatial axes), got {ndim!r}.")
    return ndim


class _Gain(nn.Module):
    """Multiply a (spectrally normalized) weight by a learned scalar."""

    def __init__(self, init: float):
        super().__init__()
        self.gain = nn.Parameter(torch.tensor(float(init)))

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return self.gain * weight


def maybe_spectral_norm(layer: nn.Module, enabled: bool = True, gain: bool = True) -> nn.Module:
    """Wrap a convolution or linear layer in spectral normalization.

    The parametrization runs its power iteration only in training mode; in
    evaluation mode it reuses the stored singular vectors, so a model in
    ``eval()`` maps the same input to the same output on every call.

    With ``gain=True`` the normalized weight is multiplied by a learned scalar
    initialized to the layer's initial spectral norm, so the network starts as
    PyTorch's default initialization and SN acts as a reparameterization
    (direction and scale learned separately). Without it, a network with no
    normalization layers is held to a Lipschitz constant near 1 per layer and,
    measured on synthetic cells, its decoder learns nothing better than the
    mean image in the time an unconstrained one needs to fit.

    Parameters
    ----------
    layer : torch.nn.Module
        A layer with a ``weight`` parameter.
    enabled : bool, default=True
        Return ``layer`` unchanged when False.
    gain : bool, default=True
        Add the learned scalar gain.

    Returns
    -------
    layer : torch.nn.Module
        The (possibly parametrized) layer.

    Examples
    --------
    >>> from torch import nn
    >>> from cellgen.nn import maybe_spectral_norm
    >>> layer = maybe_spectral_norm(nn.Linear(4, 2))
    >>> hasattr(layer, "parametrizations")
    True
    """
    if not enabled:
        return layer
    # ConvTranspose keeps output channels on weight axis 1.
    dim = 1 if isinstance(layer, (nn.ConvTranspose2d, nn.ConvTranspose3d)) else 0
    if gain:
        w = layer.weight.detach()
        w = w.transpose(0, 1) if dim == 1 else w
        init = torch.linalg.matrix_norm(w.reshape(w.shape[0], -1), ord=2).item()
    layer = spectral_norm(layer, dim=dim)
    if gain:
        parametrize.register_parametrization(layer, "weight", _Gain(init))
    return layer


def downsample_pyramid(x: torch.Tensor, n_levels: int) -> list[torch.Tensor]:
    """Return ``x`` and ``n_levels`` successive halvings of its spatial axes.

    Each halving is a linear interpolation at scale 1/2 (equal to a 2-wide box
    average for even sizes), so deep levels stay anti-aliased instead of
    sampling a sparse subset of pixels as a single large-factor resize would.

    Parameters
    ----------
    x : torch.Tensor of shape (n, C, [Z,] Y, X)
        Images whose spatial axes are divisible by ``2 ** n_levels``.
    n_levels : int
        Number of halvings.

    Returns
    -------
    levels : list of torch.Tensor
        ``n_levels + 1`` tensors, full resolution first.

    Examples
    --------
    >>> import torch
    >>> from cellgen.nn import downsample_pyramid
    >>> [tuple(t.shape[2:]) for t in downsample_pyramid(torch.ones(1, 2, 8, 4), 2)]
    [(8, 4), (4, 2), (2, 1)]
    """
    ndim = _check_ndim(x.dim() - 2)
    levels = [x]
    for _ in range(n_levels):
        levels.append(F.avg_pool2d(levels[-1], 2) if ndim == 2 else F.avg_pool3d(levels[-1], 2))
    return levels


class ResidualDown(nn.Module):
    """Encoder residual block: halve every spatial axis (paper, Fig. 7).

    Main path: 4-wide stride-2 convolution, activation, 3-wide convolution.
    Bypass: 1-wide convolution followed by 2-wide average pooling. The two are
    summed and passed through the activation.

    Parameters
    ----------
    in_channels, out_channels : int
        Channel counts.
    ndim : {2, 3}
        Number of spatial axes.
    spectral : bool, default=True
        Spectral normalization on every convolution.
    negative_slope : float, default=0.2
        Slope of the leaky ReLU.

    Examples
    --------
    >>> import torch
    >>> from cellgen.nn import ResidualDown
    >>> ResidualDown(3, 8, ndim=2)(torch.zeros(2, 3, 16, 12)).shape
    torch.Size([2, 8, 8, 6])
    """

    def __init__(self, in_channels, out_channels, ndim, spectral=True, negative_slope=0.2):
        super().__init__()
        ndim = _check_ndim(ndim)
        conv = _CONV[ndim]
        self.conv1 = maybe_spectral_norm(conv(in_channels, out_channels, 4, 2, 1), spectral)
        self.conv2 = maybe_spectral_norm(conv(out_channels, out_channels, 3, 1, 1), spectral)
        self.bypass = maybe_spectral_norm(conv(in_channels, out_channels, 1), spectral)
        self.pool = _POOL[ndim](2)
        self.act = nn.LeakyReLU(negative_slope)

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """Apply the block; ``cond`` (same shape as the output) is added before the activation."""
        out = self.conv2(self.act(self.conv1(x))) + self.pool(self.bypass(x))
        if cond is not None:
            out = out + cond
        return self.act(out)


class ResidualUp(nn.Module):
    """Decoder residual block: double every spatial axis (paper, Fig. 7).

    Main path: 4-wide stride-2 transposed convolution, activation, 3-wide
    convolution. Bypass: linear upsampling followed by a 1-wide convolution.
    The last block of a decoder (``final=True``) has no output activation, so
    it can produce any intensity.

    Parameters
    ----------
    in_channels, out_channels : int
        Channel counts.
    ndim : {2, 3}
        Number of spatial axes.
    final : bool, default=False
        Skip the output activation.
    spectral : bool, default=True
        Spectral normalization on every convolution.
    negative_slope : float, default=0.2
        Slope of the leaky ReLU.

    Examples
    --------
    >>> import torch
    >>> from cellgen.nn import ResidualUp
    >>> ResidualUp(8, 3, ndim=3)(torch.zeros(1, 8, 2, 4, 4)).shape
    torch.Size([1, 3, 4, 8, 8])
    """

    def __init__(
        self, in_channels, out_channels, ndim, final=False, spectral=True, negative_slope=0.2
    ):
        super().__init__()
        ndim = _check_ndim(ndim)
        self.conv1 = maybe_spectral_norm(
            _CONV_T[ndim](in_channels, out_channels, 4, 2, 1), spectral
        )
        self.conv2 = maybe_spectral_norm(
            _CONV[ndim](out_channels, out_channels, 3, 1, 1), spectral
        )
        self.bypass = maybe_spectral_norm(_CONV[ndim](in_channels, out_channels, 1), spectral)
        self.mode = _LINEAR_MODE[ndim]
        self.final = final
        self.act = nn.LeakyReLU(negative_slope)

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """Apply the block; ``cond`` (same shape as the output) is added before the activation."""
        up = F.interpolate(x, scale_factor=2, mode=self.mode, align_corners=False)
        out = self.conv2(self.act(self.conv1(x))) + self.bypass(up)
        if cond is not None:
            out = out + cond
        return out if self.final else self.act(out)


class Conditioning(nn.Module):
    """Project the reference image and the structure label onto a block's channels.

    The reference image, already resized to the block's resolution, goes
    through a 1-wide convolution; the one-hot label goes through a 1-wide
    convolution on a single pixel (a linear map) and is added to every pixel.
    The sum is added to the block's output (paper, Fig. 7 and Table 3).

    Parameters
    ----------
    reference_channels : int
        Channels of the reference image (0 for no reference).
    n_labels : int
        Number of structure labels (0 for no label).
    out_channels : int
        Channels of the block to condition.
    ndim : {2, 3}
        Number of spatial axes.
    spectral : bool, default=True
        Spectral normalization on both projections.

    Examples
    --------
    >>> import torch
    >>> from cellgen.nn import Conditioning
    >>> cond = Conditioning(2, 4, 8, ndim=2)
    >>> cond(torch.zeros(3, 2, 5, 5), torch.eye(4)[:3]).shape
    torch.Size([3, 8, 5, 5])
    """

    def __init__(self, reference_channels, n_labels, out_channels, ndim, spectral=True):
        super().__init__()
        self.ndim = _check_ndim(ndim)
        self.reference = (
            maybe_spectral_norm(_CONV[ndim](reference_channels, out_channels, 1), spectral)
            if reference_channels > 0
            else None
        )
        self.label = (
            maybe_spectral_norm(nn.Linear(n_labels, out_channels, bias=False), spectral)
            if n_labels > 0
            else None
        )

    def forward(self, reference: torch.Tensor | None, label: torch.Tensor | None) -> torch.Tensor:
        """Return the additive conditioning term for one block."""
        out = 0
        if self.reference is not None:
            out = self.reference(reference)
        if self.label is not None:
            lab = self.label(label)
            out = out + lab.reshape(*lab.shape, *([1] * self.ndim))
        return out
