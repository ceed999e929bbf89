"""cellgen.preprocessing on real cells: one Allen 3D hiPSC cell and BBBC021 MCF-7 crops.

The data live beside the project (``../shared/data``, or ``$CELLGEN_SHARED_DATA``)
and are never copied into it; the tests skip where the files are absent.
"""


import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage.measure import moments_central

from cellgen.preprocessing import (
    CellAligner,
    IntensityNormalizer,
    MaxProjector,
    PadCrop,
    alignment_parameters,
)

from .conftest import SHARED_DATA

tifffile = pytest.importorskip("tifffile")

DATA = SHARED_DATA
ALLEN = DATA / "allen" / "AICS-10_5_5_segmentations.ome.tif"
BBBC021 = sorted((DATA / "bbbc021" / "cells").glob("*.ome.tif"))

needs_allen = pytest.mark.skipif(not ALLEN.exists(), reason=f"{ALLEN} not found")
needs_bbbc021 = pytest.mark.skipif(len(BBBC021) < 50, reason="BBBC021 cells not found")


def major_axis_angle(plane):
    """Orientation of the major axis of an intensity image, degrees from X, via scikit-image."""
    mu = moments_central(plane.astype(np.float64), order=2)  # mu[i, j]: rows^i cols^j
    return np.degrees(0.5 * np.arctan2(2 * mu[1, 1], mu[0, 2] - mu[2, 0]))


@pytest.fixture(scope="module")
def allen_cell():
    zcyx = tifffile.imread(ALLEN)
    assert zcyx.shape == (65, 3, 292, 204) and zcyx.dtype == np.uint8
    return np.ascontiguousarray(zcyx.transpose(1, 0, 2, 3))[None]  # (1, C, Z, Y, X)


@pytest.fixture(scope="module")
def bbbc021_cells():
    return np.stack([tifffile.imread(path) for path in BBBC021[:50]])


@needs_allen
def test_allen_alignment_centres_nucleus(allen_cell):
    out = CellAligner(axis_channel=0, center_channel=1, order=0).fit_transform(allen_cell)
    assert out.shape == allen_cell.shape
    centre = (np.array(out.shape[2:]) - 1) / 2
    np.testing.assert_allclose(ndi.center_of_mass(out[0, 1]), centre, atol=1.0)


@needs_allen
def test_allen_alignment_major_axis_along_x(allen_cell):
    # The cell spans nearly the whole 292 x 204 frame along Y; turned onto X it
    # would be cut by the 204 px width, so give it room first.
    padded = PadCrop((65, 380, 380)).fit_transform(allen_cell)
    assert abs(alignment_parameters(padded).loc[0, "angle"]) > 80  # it starts along Y
    out = CellAligner(axis_channel=0, center_channel=1, order=0).fit_transform(padded)
    assert out[0, 0].sum() == pytest.approx(allen_cell[0, 0].sum(dtype=np.float64), rel=0.01)
    # Rotation is about Z, from the Y-X moments of all voxels: measure on the Z sum.
    assert abs(major_axis_angle(out[0, 0].sum(axis=0))) < 3.0
    centre = (np.array(out.shape[2:]) - 1) / 2
    np.testing.assert_allclose(ndi.center_of_mass(out[0, 1]), centre, atol=1.0)


@needs_allen
def test_allen_max_projection(allen_cell):
    out = MaxProjector().fit_transform(allen_cell)
    np.testing.assert_array_equal(out, allen_cell.max(axis=2))


@needs_bbbc021
def test_bbbc021_mode_normalizer_removes_background(bbbc021_cells):
    X = bbbc021_cells
    assert X.shape == (50, 3, 68, 68) and X.dtype == np.uint16
    out = IntensityNormalizer().fit_transform(X)
    assert out.min() == 0.0
    for cell in out:
        for channel in cell:
            values, counts = np.unique(channel, return_counts=True)
            assert values[np.argmax(counts)] == 0.0
            assert channel.max() == 1.0


@needs_bbbc021
def test_bbbc021_alignment_centres_dna(bbbc021_cells):
    X = IntensityNormalizer().fit_transform(bbbc021_cells)
    # Crops hold parts of neighbouring nuclei near their borders; pad so that the
    # shift does not push them out of the frame and the DNA keeps all its mass.
    X = PadCrop((136, 136)).fit_transform(X)
    out = CellAligner(axis_channel=1, center_channel=0).fit_transform(X)
    np.testing.assert_allclose(out[:, 0].sum(axis=(1, 2)), X[:, 0].sum(axis=(1, 2)), rtol=1e-3)
    centres = np.array([ndi.center_of_mass(dna) for dna in out[:, 0]])
    np.testing.assert_allclose(centres, 67.5, atol=0.5)
    angles = [major_axis_angle(actin) for actin in out[:, 1]]
    np.testing.assert_allclose(angles, 0.0, atol=2.0)
