"""Reading and writing cell images and manifests.

Single cells are read from and written to (OME-)TIFF files as arrays
``(C, [Z,] Y, X)`` with their channel names and pixel sizes; collections are
described by a manifest (a CSV file with one row per cell) and read into the
``(n_cells, C, [Z,] Y, X)`` arrays that cellgen's estimators take, in memory
(:func:`load_manifest`) or as a memory-mapped cache on disk
(:func:`cache_manifest`). :func:`save_cells` writes results back for Fiji and
napari.
"""

from ._cache import cache_manifest
from ._manifest import load_manifest, read_manifest
from ._save import save_cells
from ._tiff import read_image, write_ome_tiff

__all__ = [
    "read_image",
    "write_ome_tiff",
    "read_manifest",
    "load_manifest",
    "cache_manifest",
    "save_cells",
]
