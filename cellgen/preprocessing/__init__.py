"""scikit-learn transformers that prepare cell images.

The Statistical Cell's preprocessing, step by step: :class:`IntensityNormalizer`
(background removal and rescaling to [0, 1]), :class:`CellAligner` (major axis,
nucleus centring, flips by skew), :class:`VoxelResampler` (cubic voxels),
:class:`PadCrop` (a fixed shape) and :class:`MaxProjector` (3D to 2D); and
:func:`add_control_structures`, the paper's control structures for validating
coupling estimates; and :class:`ImageFeatures`, simple intensity and texture
features for a classical profiling baseline. The transformers work on
``(n_cells, n_channels, [Z,] Y, X)`` arrays, 2D and 3D alike, and compose in a
scikit-learn ``Pipeline``.
"""

from ._align import CellAligner, alignment_parameters
from ._controls import add_control_structures
from ._features import ImageFeatures
from ._geometry import MaxProjector, PadCrop, VoxelResampler
from ._normalize import IntensityNormalizer

__all__ = [
    "IntensityNormalizer",
    "CellAligner",
    "alignment_parameters",
    "VoxelResampler",
    "PadCrop",
    "MaxProjector",
    "add_control_structures",
    "ImageFeatures",
]
