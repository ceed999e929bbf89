"""Synthetic data sets with known ground truth for testing and demonstrating cellgen."""

from ._synthetic import STRUCTURES, make_cells, structure_ground_truth

__all__ = ["make_cells", "structure_ground_truth", "STRUCTURES"]
