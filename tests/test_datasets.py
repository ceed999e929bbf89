"""Tests for cellgen.datasets.make_cells and structure_ground_truth.

Placement is checked against masks derived from the images themselves
(thresholded membrane and DNA channels), never from the generator's internals.
"""

import doctest

import numpy as np
import pandas as pd
import pytest
from scipy import ndimage as ndi

from cellgen.datasets import STRUCTURES, _synthetic, make_cells, structure_ground_truth

RENDERED = ["nuclear_envelope", "nucleoli", "cell_periphery", "edge_dots",
            "cytoplasmic_puncta"]


def cell_mask(membrane):
    """Cell = the region enclosed by the bright membrane band."""
    return ndi.binary_fill_holes(membrane > 0.3)


def nucleus_mask(dna):
    return ndi.binary_fill_holes(dna > 0.2)


def fraction_in(image, mask):
    return image[mask].sum() / image.sum()


def dilate(mask, k):
    """Pixels within Euclidean distance k of the mask."""
    return ndi.distance_transform_edt(~mask) <= k


def erode(mask, k):
    """Mask pixels farther than Euclidean distance k from the outside."""
    return ndi.distance_transform_edt(mask) > k


@pytest.fixture(scope="module")
def clean_2d():
    """Interphase cells without noise, a few of each structure."""
    return make_cells(200, mitosis_fraction=0.0, noise=0.0, random_state=0)


@pytest.fixture(scope="module")
def noisy_2d():
    return make_cells(200, random_state=1)


def test_default_shapes_and_metadata():
    X, y, meta = make_cells(5, random_state=0)
    assert X.shape == (5, 3, 64, 64) and X.dtype == np.float32
    assert y.shape == (5,) and isinstance(meta, pd.DataFrame) and len(meta) == 5
    for col in ["structure", "cell_cycle_phase", "cell_area", "nucleus_area",
                "cell_major_axis", "cell_minor_axis", "cell_orientation",
                "cell_elongation", "nucleus_offset_y", "nucleus_offset_x",
                "membrane_intensity", "dna_intensity", "structure_intensity"]:
        assert col in meta.columns, col
    assert meta["structure"].tolist() == list(y)
    np.testing.assert_allclose(meta["dna_intensity"], X[:, 1].sum(axis=(1, 2)),
                               rtol=1e-4)

    X3, y3, meta3 = make_cells(2, ndim=3, random_state=0)
    assert X3.shape == (2, 3, 24, 64, 64) and X3.dtype == np.float32
    assert {"cell_volume", "nucleus_volume", "cell_height"} <= set(meta3.columns)
    assert meta3["cell_height"].between(1, 24).all()


@pytest.mark.parametrize("ndim, shape", [(2, (16, 16)), (2, (32, 32)), (2, (48, 64)),
                                         (3, (8, 16, 16)), (3, (12, 32, 40))])
def test_small_and_non_square_shapes(ndim, shape):
    n = 2 * len(STRUCTURES)
    X, y, meta = make_cells(n, ndim=ndim, shape=shape, mitosis_fraction=0.5,
                            noise=0.0, random_state=3)
    assert X.shape == (n, 3) + shape and X.dtype == np.float32
    assert np.isfinite(X).all() and X.min() >= 0.0 and X.max() <= 1.0
    # Reference channels are drawn, and stay clear of the image border.
    ref = X[:, :2]
    peak = ref.reshape(n, 2, -1).max(-1)
    assert (peak[:, 0] > 0.5).all() and (peak[:, 1] > 0.15).all()
    border = np.concatenate([np.moveaxis(ref, a, 0)[[0, -1]].ravel()
                             for a in range(2, ref.ndim)])
    assert border.max() < 0.05
    drawn = ~np.isin(y, ["control_blank"])
    assert (X[drawn, 2].reshape(drawn.sum(), -1).max(-1) > 0).all()


def test_values_in_unit_interval_with_noise(noisy_2d):
    X, _, _ = noisy_2d
    assert X.min() >= 0.0 and X.max() <= 1.0


@pytest.mark.parametrize("noise", [0.02, 0.05])
def test_background_noise_has_the_requested_sd(noise):
    X, _, _ = make_cells(50, shape=(32, 32), noise=noise, random_state=0)
    corners = X[:, :2, :3, :3]  # always outside the cell
    # N(0, sd) clipped at 0: half the pixels are 0, the mean is sd / sqrt(2 pi).
    assert 0.4 < (corners == 0).mean() < 0.6
    assert corners.mean() == pytest.approx(noise / np.sqrt(2 * np.pi), rel=0.15)


def test_a_set_of_structures_gives_the_same_cells_under_any_hash_seed():
    import subprocess
    import sys

    code = ("from cellgen.datasets import make_cells; "
            "print(list(make_cells(12, shape=(16, 16), random_state=0, structures="
            "{'nucleoli', 'edge_dots', 'cell_periphery', 'control_blank'})[1]))")
    runs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           env={**__import__("os").environ, "PYTHONHASHSEED": seed},
                           check=True).stdout for seed in ("1", "2", "3")}
    assert len(runs) == 1


def test_same_seed_same_cells_other_seed_different():
    a = make_cells(30, shape=(32, 32), random_state=7)
    b = make_cells(30, shape=(32, 32), random_state=7)
    c = make_cells(30, shape=(32, 32), random_state=8)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    pd.testing.assert_frame_equal(a[2], b[2])
    assert not np.array_equal(a[0], c[0])
    # sklearn semantics: an int and a RandomState seeded with it agree.
    d = make_cells(30, shape=(32, 32), random_state=np.random.RandomState(7))
    np.testing.assert_array_equal(a[0], d[0])
    e = make_cells(30, shape=(32, 32), random_state=np.random.default_rng(7))
    f = make_cells(30, shape=(32, 32), random_state=np.random.default_rng(7))
    np.testing.assert_array_equal(e[0], f[0])


def test_labels_balanced_and_shuffled():
    _, y, _ = make_cells(23, shape=(16, 16), random_state=0)
    values, counts = np.unique(y, return_counts=True)
    assert set(values) == set(STRUCTURES)
    assert set(counts) <= {2, 3} and counts.sum() == 23
    _, y, _ = make_cells(100, shape=(16, 16), random_state=0)
    assert list(y) != list(np.resize(np.array(STRUCTURES, dtype=object), 100))


def test_structure_subset_respected():
    _, y, meta = make_cells(10, shape=(16, 16), structures=["nucleoli", "edge_dots"],
                            random_state=0)
    assert sorted(y) == ["edge_dots"] * 5 + ["nucleoli"] * 5
    _, y, _ = make_cells(3, shape=(16, 16), structures="control_dna", random_state=0)
    assert set(y) == {"control_dna"}


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(n_samples=0), ValueError, "n_samples"),
    (dict(n_samples=2.5), TypeError, "n_samples"),
    (dict(ndim=4), ValueError, "ndim"),
    (dict(ndim="2"), TypeError, "ndim"),
    (dict(shape=(64,)), ValueError, "shape"),
    (dict(shape=(64, 64, 64)), ValueError, "shape"),
    (dict(ndim=3, shape=(64, 64)), ValueError, "shape"),
    (dict(shape=(4, 64)), ValueError, "shape"),
    # Thinner stacks drew cells whose recorded volume was 0.
    (dict(ndim=3, shape=(8, 64, 64)), ValueError, r"Z must be at least 0.15 .* \(here 10\)"),
    (dict(shape="64x64"), TypeError, "shape"),
    (dict(shape=(32.0, 32)), TypeError, "shape"),
    (dict(structures=["golgi"]), ValueError, "golgi.*nuclear_envelope"),
    (dict(structures=[]), ValueError, "structures"),
    (dict(structures=[["nucleoli"]]), TypeError, "structures"),
    (dict(mitosis_fraction=1.5), ValueError, "mitosis_fraction"),
    (dict(mitosis_fraction=-0.1), ValueError, "mitosis_fraction"),
    (dict(mitosis_fraction="half"), TypeError, "mitosis_fraction"),
    (dict(noise=-0.1), ValueError, "noise"),
    (dict(noise=None), TypeError, "noise"),
    (dict(random_state="seed"), ValueError, "random_state"),
])
def test_bad_arguments_raise(kwargs, error, match):
    kwargs = {"n_samples": 2, **kwargs}
    with pytest.raises(error, match=match):
        make_cells(**kwargs)


def test_mitosis_fraction_and_rounding():
    _, _, meta = make_cells(400, shape=(16, 16), mitosis_fraction=0.25, random_state=0)
    assert (meta["cell_cycle_phase"] == "mitosis").sum() == 100
    assert set(meta["cell_cycle_phase"]) == {"interphase", "mitosis"}
    _, _, meta = make_cells(20, shape=(16, 16), mitosis_fraction=0.0, random_state=0)
    assert (meta["cell_cycle_phase"] == "interphase").all()
    _, _, meta = make_cells(20, shape=(16, 16), mitosis_fraction=1.0, random_state=0)
    assert (meta["cell_cycle_phase"] == "mitosis").all()


def test_mitotic_cells_rounder_with_condensed_dna():
    X, _, meta = make_cells(200, mitosis_fraction=0.5, noise=0.0, random_state=2)
    mit = (meta["cell_cycle_phase"] == "mitosis").to_numpy()
    elong = meta["cell_elongation"].to_numpy()
    assert elong[mit].mean() < elong[~mit].mean() - 0.2
    # The metaphase plate: a small, bright, centred DNA region.
    assert meta["nucleus_area"][mit].mean() < 0.5 * meta["nucleus_area"][~mit].mean()
    assert np.allclose(meta.loc[mit, ["nucleus_offset_y", "nucleus_offset_x"]], 0)
    assert X[mit, 1].max(axis=(1, 2)).mean() > X[~mit, 1].max(axis=(1, 2)).mean()


def test_geometry_matches_the_images(clean_2d):
    X, _, meta = clean_2d
    cells = [cell_mask(x[0]) for x in X]
    nuclei = [nucleus_mask(x[1]) for x in X]
    cell_area = np.array([c.sum() for c in cells])
    nuc_area = np.array([m.sum() for m in nuclei])
    assert np.corrcoef(cell_area, meta["cell_area"])[0, 1] > 0.95
    assert np.corrcoef(nuc_area, meta["nucleus_area"])[0, 1] > 0.95
    for c, m in zip(cells, nuclei, strict=True):
        assert m.any() and not (m & ~erode(c, 1)).any()  # nucleus inside the cell
    # The nucleus sits off centre by the offset reported in the metadata.
    offset = np.array([np.subtract(ndi.center_of_mass(m), ndi.center_of_mass(c))
                       for c, m in zip(cells, nuclei, strict=True)])
    reported = meta[["nucleus_offset_y", "nucleus_offset_x"]].to_numpy()
    assert np.abs(offset - reported).max() < 1.5
    assert np.hypot(*reported.T).mean() > 1.0
    # Cells fill a good part of the field and vary in shape and orientation.
    assert 0.15 < (cell_area / 64**2).mean() < 0.6
    assert meta["cell_elongation"].std() > 0.1
    assert meta["cell_orientation"].between(0, np.pi).all()
    assert meta["cell_orientation"].std() > 0.5


@pytest.mark.parametrize("structure, region, minimum", [
    ("nuclear_envelope", "nucleus_shell", 0.8),
    ("nucleoli", "nucleus", 0.95),
    ("cell_periphery", "rim", 0.85),
    ("edge_dots", "rim", 0.85),
    ("cytoplasmic_puncta", "cytoplasm", 0.9),
])
def test_structure_placement_interphase(clean_2d, structure, region, minimum):
    X, y, _ = clean_2d
    fractions = []
    for x in X[y == structure]:
        cell, nuc = cell_mask(x[0]), nucleus_mask(x[1])
        masks = {"nucleus_shell": dilate(nuc, 2) & ~erode(nuc, 3),
                 "nucleus": dilate(nuc, 1), "rim": cell & ~erode(cell, 5),
                 "cytoplasm": cell & ~nuc}
        fractions.append(fraction_in(x[2], masks[region]))
    assert len(fractions) >= 10
    assert np.median(fractions) > minimum
    assert np.min(fractions) > minimum - 0.15


def test_peripheral_structures_avoid_the_nucleus(clean_2d):
    X, y, _ = clean_2d
    for name in ["cell_periphery", "edge_dots", "cytoplasmic_puncta"]:
        for x in X[y == name]:
            assert fraction_in(x[2], nucleus_mask(x[1])) < 0.1


def test_nuclear_envelope_dissolves_in_mitosis():
    X, y, meta = make_cells(80, structures=["nuclear_envelope"], mitosis_fraction=0.5,
                            noise=0.0, random_state=4)
    mit = (meta["cell_cycle_phase"] == "mitosis").to_numpy()
    shell = np.array([fraction_in(x[2], dilate(nucleus_mask(x[1]), 2)) for x in X])
    in_cell = np.array([fraction_in(x[2], cell_mask(x[0])) for x in X])
    assert shell[~mit].min() > 0.8
    assert shell[mit].max() < 0.35
    assert in_cell[mit].min() > 0.9  # diffuse, but still within the cell
    assert X[mit, 2].max() < 0.5 * X[~mit, 2].max()  # and faint


def test_controls(noisy_2d):
    X, y, meta = noisy_2d
    dna, mem = y == "control_dna", y == "control_membrane"
    blank = y == "control_blank"
    assert dna.any() and mem.any() and blank.any()
    np.testing.assert_array_equal(X[dna, 2], X[dna, 1])
    np.testing.assert_array_equal(X[mem, 2], X[mem, 0])
    assert (X[blank, 2] == 0).all()
    for x in X[y == "control_noise"]:
        cell = cell_mask(x[0])
        assert (x[2][~dilate(cell, 1)] == 0).all()
        assert x[2][cell].std() > 0.05  # noise, not a smooth pattern
        nuc = erode(nucleus_mask(x[1]), 1)
        assert x[2][nuc].mean() > x[2][cell & ~dilate(nuc, 2)].mean()
    rand = y == "control_random"
    assert set(meta.loc[rand, "rendered_structure"]) <= set(RENDERED)
    assert (meta.loc[~rand, "rendered_structure"] == meta.loc[~rand, "structure"]).all()


def test_control_random_ignores_the_cells_own_reference():
    X, y, meta = make_cells(300, structures=["nuclear_envelope", "control_random"],
                            mitosis_fraction=0.0, noise=0.0, random_state=5)
    shell = np.array([fraction_in(x[2], dilate(nucleus_mask(x[1]), 2))
                      if x[2].sum() > 0 else 0.0 for x in X])
    own = y == "nuclear_envelope"
    borrowed = (y == "control_random") & (meta["rendered_structure"]
                                          == "nuclear_envelope").to_numpy()
    assert borrowed.sum() >= 10
    assert shell[own].mean() > 0.8
    assert shell[borrowed].mean() < 0.6


def test_3d_cells_flattened_with_nucleus_inside():
    X, y, meta = make_cells(30, ndim=3, mitosis_fraction=0.0, noise=0.0, random_state=6,
                            structures=["nuclear_envelope", "cell_periphery"])
    assert (meta["cell_height"] < meta["cell_minor_axis"]).all()
    assert (meta["cell_height"] < 24).all()
    for x, name in zip(X, y, strict=True):
        cell, nuc = cell_mask(x[0]), nucleus_mask(x[1])
        assert nuc.any() and not (nuc & ~cell).any()
        if name == "nuclear_envelope":
            assert fraction_in(x[2], dilate(nuc, 2) & ~erode(nuc, 3)) > 0.75
        else:
            assert fraction_in(x[2], cell & ~erode(cell, 5)) > 0.85
    vol = [cell_mask(x[0]).sum() for x in X]
    assert np.corrcoef(vol, meta["cell_volume"])[0, 1] > 0.95


def test_structure_ground_truth_table():
    gt = structure_ground_truth()
    assert len(gt) == 2 * len(STRUCTURES)
    pairs = set(zip(gt["structure"], gt["cell_cycle_phase"], strict=True))
    assert pairs == {(s, p) for s in STRUCTURES for p in ["interphase", "mitosis"]}
    m, n = gt["membrane_coupling"], gt["nucleus_coupling"]
    assert m.between(0, 1).all() and n.between(0, 1).all()
    total = (m + n).replace(0, np.nan)
    np.testing.assert_allclose(gt["differential_coupling"], ((m - n) / total).fillna(0))
    diff = gt["differential_coupling"]
    dep = gt["depends_on"]
    assert (diff[dep == "membrane"] > 0).all()
    assert (diff[dep == "nucleus"] < 0).all()
    assert (diff[dep == "neither"] == 0).all()
    assert (diff[dep == "both"].abs() < 1).all()
    assert set(dep) <= {"membrane", "nucleus", "both", "neither"}
    lookup = gt.set_index(["structure", "cell_cycle_phase"])["depends_on"]
    assert lookup["nuclear_envelope", "interphase"] == "nucleus"
    assert lookup["nuclear_envelope", "mitosis"] == "membrane"
    assert lookup["cell_periphery", "mitosis"] == "membrane"
    assert lookup["control_blank", "interphase"] == "neither"
    assert lookup["control_random", "mitosis"] == "neither"
    assert lookup["cytoplasmic_puncta", "interphase"] == "both"


def test_docstring_examples_run():
    result = doctest.testmod(_synthetic, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
