"""Synthetic data sets with known ground truth, and loaders of real collections."""

from ._bbbc021 import load_bbbc021
from ._synthetic import STRUCTURES, make_cells, structure_ground_truth

__all__ = ["make_cells", "structure_ground_truth", "STRUCTURES", "load_bbbc021"]
