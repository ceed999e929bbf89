"""Residual down/up blocks and conditioning layers of the Statistical Cell.

One implementation serves 2D and 3D images: every layer is picked by the number
of spatial axes (``ndim``), so the two models of the paper differ only in data.
"""

from __future__ import annotations

import contextlib
import contextvars

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import spectral_norm

__all__ = [
    "ResidualDown",
    "ResidualUp",
    "Conditioning",
    "ReferencePyramid",
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


#: False while building a module whose weights are loaded right after (see below).
_EXACT_GAIN_INIT = contextvars.ContextVar("cellgen_exact_gain_init", default=True)


@contextlib.contextmanager
def _weights_loaded_after():
    """Build modules whose every weight a ``load_state_dict`` then overwrites.

    The exact spectral norm that initializes each gain is an SVD per layer (1.7 s
    for the paper's 2D reference model on a CPU core), wasted when the gain is
    loaded at once: restoring a saved or pickled model (every ``load``, every
    worker of ``map_manifest``) skips it.
    """
    token = _EXACT_GAIN_INIT.set(False)
    try:
        yield
    finally:
        _EXACT_GAIN_INIT.reset(token)


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
    if gain and not _EXACT_GAIN_INIT.get():
        init = 1.0  # overwritten by the weights about to be loaded
    elif gain:
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

    The reference image, already resized to the block's resolution (or the
    reference features of :class:`ReferencePyramid` at that resolution), goes
    through a 1-wide convolution; the one-hot label goes through a 1-wide
    convolution on a single pixel (a linear map) and is added to every pixel.
    The sum is added to the block's output (paper, Fig. 7 and Table 3).

    With ``modulate=True`` the label also scales every reference channel
    before the projection, ``proj(ref * (1 + gamma(label))) + label_term``
    (feature-wise linear modulation), so each structure can weigh the
    features of each reference channel differently, down to ignoring them;
    ``gamma`` starts at zero, so the layer starts as the additive one.

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
    modulate : bool, default=False
        Let the label scale each reference channel.

    Examples
    --------
    >>> import torch
    >>> from cellgen.nn import Conditioning
    >>> cond = Conditioning(2, 4, 8, ndim=2)
    >>> cond(torch.zeros(3, 2, 5, 5), torch.eye(4)[:3]).shape
    torch.Size([3, 8, 5, 5])
    """

    def __init__(self, reference_channels, n_labels, out_channels, ndim, spectral=True,
                 modulate=False):
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
        self.gamma = None
        if modulate and self.reference is not None and self.label is not None:
            # Zero-initialized and not spectrally normalized (a zero matrix has
            # no direction to normalize): training starts from the additive layer.
            self.gamma = nn.Linear(n_labels, reference_channels, bias=False)
            nn.init.zeros_(self.gamma.weight)

    def _per_pixel(self, v: torch.Tensor) -> torch.Tensor:
        return v.reshape(*v.shape, *([1] * self.ndim))

    def forward(self, reference: torch.Tensor | None, label: torch.Tensor | None) -> torch.Tensor:
        """Return the additive conditioning term for one block."""
        out = 0
        if self.reference is not None:
            if self.gamma is not None:
                reference = reference * (1 + self._per_pixel(self.gamma(label)))
            out = self.reference(reference)
        if self.label is not None:
            out = out + self._per_pixel(self.label(label))
        return out


class _ChannelPyramid(nn.Module):
    """Features of one reference channel: a 3-wide stem, then one down block per level."""

    def __init__(self, widths, ndim, spectral):
        super().__init__()
        self.channels = [widths[0], *widths]
        self.stem = maybe_spectral_norm(_CONV[ndim](1, widths[0], 3, 1, 1), spectral)
        self.blocks = nn.ModuleList(
            ResidualDown(self.channels[i], self.channels[i + 1], ndim, spectral)
            for i in range(len(widths))
        )
        self.act = nn.LeakyReLU(0.2)

    def forward(self, x):
        levels = [self.act(self.stem(x))]
        for block in self.blocks:
            levels.append(block(levels[-1]))
        return levels


class ReferencePyramid(nn.Module):
    """Convolutional features of each reference channel at every resolution.

    The paper conditions each block on the reference image resized to its
    resolution, through a 1×1 convolution: a block sees the reference only
    at the same place. This module computes features with growing receptive
    fields, a 3-wide convolution at full resolution and then one
    :class:`ResidualDown` block per halving, so a block can be told, for
    example, whether a pixel lies inside the cell outline or near the nuclear
    boundary. Each reference channel gets its own small pyramid and the
    channels are not mixed here: a structure that follows only the membrane can
    then be modelled from the membrane's features alone (with the label
    scaling of :class:`Conditioning`), which keeps it indifferent to a DNA
    channel from another cell when coupling is measured. The features are
    computed once per cell and shared by the encoder and the decoder.

    Parameters
    ----------
    reference_channels : int
        Channels of the reference image.
    widths : sequence of int
        Total channels of the features after each halving, split evenly between
        the reference channels (at least one each); the full-resolution
        features have as many channels as the first halving.
    ndim : {2, 3}
        Number of spatial axes.
    spectral : bool, default=True
        Spectral normalization on every convolution.

    Attributes
    ----------
    channels : list of int
        Channels of each level, full resolution first; the first
        ``channels[k] // reference_channels`` come from reference channel 0,
        and so on.

    Examples
    --------
    >>> import torch
    >>> from cellgen.nn import ReferencePyramid
    >>> pyramid = ReferencePyramid(2, (8, 16), ndim=2)
    >>> [tuple(t.shape) for t in pyramid(torch.zeros(1, 2, 8, 8))]
    [(1, 8, 8, 8), (1, 8, 4, 4), (1, 16, 2, 2)]
    """

    def __init__(self, reference_channels, widths, ndim, spectral=True):
        super().__init__()
        ndim = _check_ndim(ndim)
        n = int(reference_channels)
        if n < 1:
            raise ValueError(f"reference_channels must be at least 1, got {reference_channels}.")
        sub = [max(1, int(w) // n) for w in widths]
        self.parts = nn.ModuleList(_ChannelPyramid(sub, ndim, spectral) for _ in range(n))
        self.channels = [c * n for c in self.parts[0].channels]

    def forward(self, reference: torch.Tensor) -> list[torch.Tensor]:
        """Return ``len(widths) + 1`` feature maps, full resolution first."""
        per_channel = [part(reference[:, i:i + 1]) for i, part in enumerate(self.parts)]
        return [torch.cat(level, 1) for level in zip(*per_channel)]
