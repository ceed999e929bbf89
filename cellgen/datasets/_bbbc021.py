"""Loader for single-cell crops of BBBC021 (MCF-7 cells, compounds, mechanisms of action).

The pixels are not shipped with cellgen and never downloaded by it: the loader
reads a folder that the user has arranged from the Broad Bioimage Benchmark
Collection's images, in the layout described in ``_LAYOUT`` below (also printed
by the errors and stored in the returned ``DESCR``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.utils import Bunch

from ..io import load_manifest
from ..io._paths import _expanduser

__all__ = ["load_bbbc021"]

_CHANNELS = ("DNA", "F-actin", "beta-tubulin")
# Metadata columns in the order of the returned table; the manifest must hold them all.
_COLUMNS = ("moa", "compound", "concentration", "batch", "plate", "well", "site", "replicate",
            "cell_index", "path")

_LAYOUT = """\
Expected layout::

    <path>/
        manifest.csv          one row per cell
        cells/<name>.ome.tif  one cell per file (any names; the manifest lists them)

Each image is one cell as a (C, Y, X) OME-TIFF (any integer or float type; the
crops cellgen is tested on are 68x68 uint16) whose OME channel names include
'DNA', 'F-actin' and 'beta-tubulin'. manifest.csv has the columns:

    path           image path, relative to <path> (e.g. cells/Week4_27861_B02_s1_180.ome.tif)
    plate          plate barcode with its week (e.g. Week4_27861)
    batch          experimental batch, the imaging week (e.g. Week4)
    well           well (e.g. B02)
    site           imaging site (field of view) within the well, an integer
    replicate      replicate number of the treatment, an integer
    compound       compound name ('DMSO' for the vehicle control)
    concentration  compound concentration in micromolar (0 for DMSO)
    moa            mechanism of action (12 classes, plus 'DMSO' for controls)
    cell_index     index of the cell among those cropped from its image

write_ome_tiff and save_cells in cellgen.io write files in this form."""

_DESCR = f"""\
.. _bbbc021_dataset:

BBBC021 single-cell crops
-------------------------

Single MCF-7 breast cancer cells from BBBC021v1 (Caie et al., Molecular Cancer
Therapeutics 2010), imaged in three channels (DNA, F-actin, beta-tubulin) after
treatment with compounds at several concentrations, with the mechanism of action
(MoA) of each compound as the label: 12 MoAs plus the DMSO vehicle control.
Obtained from the Broad Bioimage Benchmark Collection (Ljosa et al., Nature
Methods 2012), https://bbbc.broadinstitute.org/BBBC021. Cite both papers when
reporting results.

The images are NOT part of cellgen and cellgen never downloads them. Obtain
BBBC021 from the Broad, crop single cells (for example around the nuclei
segmented in the DNA channel), join the per-image metadata
(BBBC021_v1_image.csv) with the compound-to-MoA table (BBBC021_v1_moa.csv), and
save the crops and a manifest as follows.

{_LAYOUT}

Intensities are returned raw (as stored, converted to float32): normalize each
channel before modelling. The standard evaluation aggregates per-cell features
per well and per treatment and predicts the MoA of each treatment by its
nearest neighbour among treatments of other compounds (NSC) or of other
compounds in other batches (NSCB), leaving DMSO out of the predicted treatments.
"""


def load_bbbc021(path, *, channels=_CHANNELS, n_jobs=None, verbose=False, return_X_y=False):
    """Load single-cell crops of BBBC021 with their mechanism-of-action labels.

    Reads a folder holding ``manifest.csv`` and one OME-TIFF per cell (the
    layout is given in the ``DESCR`` of the result and in the error raised when
    the folder is missing) through :func:`cellgen.io.load_manifest`. The data
    are not shipped with cellgen and never downloaded: get BBBC021 from
    https://bbbc.broadinstitute.org/BBBC021 and arrange it in that layout.

    Parameters
    ----------
    path : str or path-like
        The folder holding ``manifest.csv`` and the images (or the path of the
        ``manifest.csv`` itself).
    channels : sequence of str, default=("DNA", "F-actin", "beta-tubulin")
        Channels to read, by OME channel name, in this order.
    n_jobs : int, default=None
        Number of threads reading files (``None`` means 1; -1 all cores).
    verbose : bool, default=False
        Whether to show a progress bar.
    return_X_y : bool, default=False
        If True, return ``(images, target)`` instead of a Bunch.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        With the fields

        images : ndarray of shape (n_cells, n_channels, Y, X), float32
            Raw intensities, not normalized.
        target : ndarray of shape (n_cells,), object
            The mechanism of action of each cell's treatment (``"DMSO"`` for
            controls).
        metadata : pandas.DataFrame
            One row per cell with columns ``moa``, ``compound``,
            ``concentration``, ``batch``, ``plate``, ``well``, ``site``,
            ``replicate``, ``cell_index`` and ``path`` (then any further
            manifest columns); ``attrs`` holds ``channel_names`` and
            ``pixel_size``.
        channel_names : list of str
            The names of the image channels.
        target_names : ndarray of str
            The sorted distinct mechanisms of action.
        DESCR : str
            A description of the data, their source and the expected layout.

    (images, target) : tuple of ndarray
        If ``return_X_y`` is True.

    Raises
    ------
    FileNotFoundError
        If the folder, its ``manifest.csv`` or an image is missing; the message
        describes the expected layout.
    ValueError
        If the manifest lacks a required column or has cells without a MoA, or
        an image lacks one of ``channels``.

    See Also
    --------
    cellgen.io.load_manifest : Read any collection laid out as a manifest.
    make_cells : Synthetic cells with known ground truth.

    Examples
    --------
    >>> import tempfile, numpy as np, pandas as pd
    >>> from pathlib import Path
    >>> from cellgen.datasets import load_bbbc021
    >>> from cellgen.io import save_cells
    >>> folder = Path(tempfile.mkdtemp()) / "bbbc021"
    >>> meta = pd.DataFrame({"plate": "Week1_22123", "batch": "Week1", "well": "B02",
    ...                      "site": 1, "replicate": 1, "compound": ["DMSO", "taxol"],
    ...                      "concentration": [0.0, 0.3],
    ...                      "moa": ["DMSO", "Microtubule stabilizers"], "cell_index": [0, 1]})
    >>> X = np.random.RandomState(0).randint(0, 4000, (2, 3, 68, 68)).astype(np.uint16)
    >>> _ = save_cells(folder, X, channel_names=["DNA", "F-actin", "beta-tubulin"],
    ...                metadata=meta)
    >>> data = load_bbbc021(folder)
    >>> data.images.shape, data.images.dtype, data.target.tolist()
    ((2, 3, 68, 68), dtype('float32'), ['DMSO', 'Microtubule stabilizers'])
    """
    given = _expanduser(path)
    manifest = given if given.suffix.lower() == ".csv" else given / "manifest.csv"
    if not manifest.parent.is_dir():
        raise FileNotFoundError(f"No BBBC021 folder at '{manifest.parent}'.\n{_LAYOUT}")
    if not manifest.is_file():
        raise FileNotFoundError(
            f"'{manifest.parent}' has no manifest.csv, so it is not a BBBC021 folder.\n{_LAYOUT}"
        )
    channels = [channels] if isinstance(channels, str) else list(channels)
    # Only the header: a wrong table must fail before thousands of images are read.
    columns = pd.read_csv(manifest, nrows=0).columns
    missing = [c for c in _COLUMNS if c not in columns]
    if missing:
        raise ValueError(
            f"'{manifest}' lacks the column(s) {missing}; it has {list(columns)}.\n{_LAYOUT}"
        )
    images, metadata = load_manifest(manifest, channels=channels, n_jobs=n_jobs,
                                     verbose=verbose)
    unlabeled = metadata.index[metadata["moa"].isna()].tolist()
    if unlabeled:
        raise ValueError(
            f"{len(unlabeled)} row(s) of '{manifest}' have no moa (rows {unlabeled[:5]}); "
            "label controls 'DMSO' and drop cells of treatments without a known MoA."
        )
    attrs = dict(metadata.attrs)
    metadata = metadata[list(_COLUMNS) + [c for c in metadata.columns if c not in _COLUMNS]]
    metadata.attrs.update(attrs)
    target = metadata["moa"].to_numpy(dtype=object)
    if return_X_y:
        return images, target
    return Bunch(
        images=images,
        target=target,
        metadata=metadata,
        channel_names=list(attrs["channel_names"]),
        target_names=np.unique(target.astype(str)),
        DESCR=_DESCR,
    )
