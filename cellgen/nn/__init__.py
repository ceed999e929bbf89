"""Plain torch building blocks of the Statistical Cell networks (2D and 3D)."""

from ._blocks import (
    Conditioning,
    ReferencePyramid,
    ResidualDown,
    ResidualUp,
    downsample_pyramid,
    maybe_spectral_norm,
)
from ._coders import Decoder, Encoder

__all__ = [
    "ResidualDown",
    "ResidualUp",
    "Conditioning",
    "ReferencePyramid",
    "Encoder",
    "Decoder",
    "maybe_spectral_norm",
    "downsample_pyramid",
]
