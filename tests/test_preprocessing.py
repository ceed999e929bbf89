"""Tests for cellgen.preprocessing, against answers known by construction.

Cells are drawn with numpy (ellipses, eggs, discs) at known angles and positions;
outputs are measured with scipy.ndimage and scikit-image, not with the code under
test, so a wrong convention in the transformers cannot hide in the checks.
"""

import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy import ndimage as ndi
from skimage.measure import regionprops
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from cellgen.datasets import STRUCTURES, make_cells
from cellgen.preprocessing import (
    CellAligner,
    ImageFeatures,
    IntensityNormalizer,
    MaxProjector,
    PadCrop,
    VoxelResampler,
    add_control_structures,
    alignment_parameters,
)

ANGLES = [30.0, 60.0, 120.0]


# ----------------------------------------------------------------------------- drawing
def _grid(shape):
    return np.meshgrid(*(np.arange(s, dtype=np.float64) for s in shape), indexing="ij")


def ellipse(shape, center, a, b, angle):
    """Filled ellipse, semi-axes a (major) and b, major axis at ``angle`` degrees from X to Y."""
    yy, xx = _grid(shape)
    t = np.deg2rad(angle)
    dx, dy = xx - center[1], yy - center[0]
    u = dx * np.cos(t) + dy * np.sin(t)
    v = -dx * np.sin(t) + dy * np.cos(t)
    return ((u / a) ** 2 + (v / b) ** 2 <= 1).astype(np.float32)


def disc(shape, center, r):
    grids = _grid(shape)
    return (sum((g - c) ** 2 for g, c in zip(grids, center)) <= r * r).astype(np.float32)


def egg(shape, center, angle):
    """An asymmetric cell: an ellipse, a smaller lobe along its axis and a bump off it."""
    t = np.deg2rad(angle)
    along = np.array([np.sin(t), np.cos(t)])  # (y, x) of the major axis
    across = np.array([np.cos(t), -np.sin(t)])
    c = np.asarray(center, dtype=float)
    body = ellipse(shape, c, 14, 8, angle)
    lobe = disc(shape, c + 13 * along, 6)
    bump = disc(shape, c - 4 * along + 8 * across, 3.5)
    return np.maximum.reduce([body, lobe, bump])


def cell_2d(angle, shape=(64, 64), center=(30.0, 33.5), nucleus_offset=(2.0, -3.0)):
    """(1, 2, Y, X): an elongated cell and a nucleus inside it, off the array centre."""
    cell = ellipse(shape, center, 18, 8, angle)
    nuc = disc(shape, np.add(center, nucleus_offset), 4.5)
    return np.stack([cell, nuc])[None]


def cell_3d(angle, shape=(16, 48, 48)):
    """(1, 2, Z, Y, X): an ellipsoid cell, flattened in Z, with an off-centre nucleus."""
    zz = np.arange(shape[0])[:, None, None]
    plane = ellipse(shape[1:], (22.0, 25.0), 15, 7, angle)
    cell = plane[None] * (np.abs(zz - 7.0) <= 5)
    nuc = disc(shape, (6.0, 23.0, 24.0), 3.5)
    return np.stack([cell, nuc])[None].astype(np.float32)


# ----------------------------------------------------------------------------- measuring
def orientation_from_x(image):
    """Angle of the major axis from the X axis, in degrees, by scikit-image's regionprops."""
    mask = (image > 0.5).astype(np.int32)
    (props,) = regionprops(mask)
    # regionprops: angle between the rows axis and the major axis.
    return 90.0 - abs(np.degrees(props.orientation))


def skew_along(image, axis):
    profile = image.sum(axis=tuple(a for a in range(image.ndim) if a != axis))
    coords = np.arange(profile.size)
    mean = (profile * coords).sum() / profile.sum()
    return (profile * (coords - mean) ** 3).sum()


def centre_of(shape):
    return (np.asarray(shape) - 1) / 2.0


# ----------------------------------------------------------------------------- alignment
@pytest.mark.parametrize("angle", ANGLES)
def test_align_2d_rotates_major_axis_to_x_and_centres_nucleus(angle):
    X = cell_2d(angle)
    out = CellAligner().fit_transform(X)
    assert out.shape == X.shape and out.dtype == np.float32
    assert orientation_from_x(out[0, 0]) < 2.0
    np.testing.assert_allclose(ndi.center_of_mass(out[0, 1]), centre_of(X.shape[2:]), atol=0.5)
    # The cell's mass is preserved (it stays inside the frame), up to interpolation.
    assert abs(out[0, 0].sum() / X[0, 0].sum() - 1) < 0.02


@pytest.mark.parametrize("angle", ANGLES)
def test_alignment_parameters_report_the_drawn_geometry(angle):
    X = cell_2d(angle)
    params = alignment_parameters(X)
    assert list(params.columns) == ["angle", "shift_y", "shift_x", "flip_y", "flip_x"]
    expected = (angle + 90.0) % 180.0 - 90.0  # orientation in (-90, 90]
    assert abs(params.loc[0, "angle"] - expected) < 1.0
    nucleus = np.array(ndi.center_of_mass(X[0, 1]))
    np.testing.assert_allclose(params.loc[0, ["shift_y", "shift_x"]].to_numpy(float),
                               centre_of((64, 64)) - nucleus, atol=1e-6)


def test_align_memmap_gives_a_plain_array(tmp_path):
    X, _, _ = make_cells(6, shape=(16, 16), random_state=0)
    np.save(tmp_path / "cells.npy", X)
    mm = np.load(tmp_path / "cells.npy", mmap_mode="r")
    out = CellAligner().fit_transform(mm)
    assert type(out) is np.ndarray  # like every other transformer, not a memmap
    np.testing.assert_array_equal(out, CellAligner().fit_transform(X))


def test_align_to_y_axis():
    X = cell_2d(30.0)
    out = CellAligner(axis=-2).fit_transform(X)
    assert orientation_from_x(out[0, 0]) > 88.0


@pytest.mark.parametrize("angle", ANGLES)
def test_align_3d_rotates_about_z_and_centres_nucleus_in_3d(angle):
    X = cell_3d(angle)
    out = CellAligner().fit_transform(X)
    assert out.shape == X.shape
    assert orientation_from_x(out[0, 0].max(axis=0)) < 2.0
    np.testing.assert_allclose(ndi.center_of_mass(out[0, 1]), centre_of(X.shape[2:]), atol=0.5)
    params = alignment_parameters(X)
    assert list(params.columns) == ["angle", "shift_z", "shift_y", "shift_x", "flip_y", "flip_x"]
    assert params.loc[0, "shift_z"] == pytest.approx(7.5 - 6.0, abs=1e-6)


def test_align_3d_never_flips_z():
    X = cell_3d(45.0)
    X[0, 0, :, :, :] *= np.linspace(1.0, 0.2, X.shape[2])[:, None, None]  # skewed in Z
    aligner = CellAligner().fit(X)
    out = aligner.transform(X)
    out_zflipped = aligner.transform(X[:, :, ::-1])
    np.testing.assert_allclose(out_zflipped, out[:, :, ::-1], atol=1e-4)


@pytest.mark.parametrize("angle", [20.0, 75.0, 140.0])
def test_mirrored_and_rotated_cells_align_to_the_same_image(angle):
    shape = (72, 72)
    X = np.stack([egg(shape, (34.0, 37.0), angle), disc(shape, (35.0, 36.0), 5)])[None]
    aligner = CellAligner().fit(X)
    out = aligner.transform(X)
    # Mirror along X, along Y, rotate by 90 and 180 degrees: exact grid symmetries,
    # so the aligned images agree up to rounding.
    variants = [X[..., ::-1], X[..., ::-1, :], np.rot90(X, axes=(2, 3)), X[..., ::-1, ::-1]]
    for Xv in variants:
        np.testing.assert_allclose(aligner.transform(Xv), out, atol=1e-4)
    # The flips make the skew of the cell non-negative along both axes.
    assert skew_along(out[0, 0], 1) > 0 and skew_along(out[0, 0], 0) > 0
    flips = alignment_parameters(np.concatenate([X, X[..., ::-1]]))
    assert flips.loc[0, "flip_x"] != flips.loc[1, "flip_x"] or \
        flips.loc[0, "flip_y"] != flips.loc[1, "flip_y"]


def test_mirrored_3d_cell_aligns_to_the_same_image():
    shape = (64, 64)
    plane = egg(shape, (30.0, 33.0), 50.0)
    cell = np.stack([plane * (abs(z - 5) <= 3) for z in range(12)])
    nuc = disc((12,) + shape, (5.0, 31.0, 32.0), 4)
    X = np.stack([cell, nuc])[None]
    aligner = CellAligner().fit(X)
    np.testing.assert_allclose(aligner.transform(X[..., ::-1]), aligner.transform(X), atol=1e-4)


def test_round_cell_and_empty_channels():
    shape = (33, 33)
    X = np.stack([disc(shape, (16, 16), 10), disc(shape, (16, 16), 4)])[None]
    params = alignment_parameters(X)
    assert params.loc[0, "angle"] == 0.0 and not params.loc[0, ["flip_y", "flip_x"]].any()
    np.testing.assert_allclose(CellAligner().fit_transform(X), X, atol=1e-6)

    # Empty axis channel: no rotation, only the shift of the nucleus.
    X2 = np.stack([np.zeros(shape), disc(shape, (12, 14), 3)])[None].astype(np.float32)
    out = CellAligner().fit_transform(X2)
    assert alignment_parameters(X2).loc[0, "angle"] == 0.0
    np.testing.assert_allclose(out[0, 1], ndi.shift(X2[0, 1], (4, 2), order=1), atol=1e-5)
    # Everything empty: nothing moves, no NaN.
    zeros = np.zeros((2, 2, 16, 16))
    np.testing.assert_array_equal(CellAligner().fit_transform(zeros), zeros)
    assert not alignment_parameters(zeros).isna().any().any()


def test_switches_rotate_center_flip():
    X = cell_2d(40.0)
    nucleus = np.array(ndi.center_of_mass(X[0, 1]))
    only_shift = CellAligner(rotate=False, flip=False).fit_transform(X)
    expected = ndi.shift(X[0], (0,) + tuple(centre_of((64, 64)) - nucleus), order=1)
    np.testing.assert_allclose(only_shift[0], expected, atol=1e-5)
    only_rotate = CellAligner(center=False, flip=False).fit_transform(X)
    assert orientation_from_x(only_rotate[0, 0]) < 2.0
    np.testing.assert_allclose(ndi.center_of_mass(only_rotate[0, 0]),
                               ndi.center_of_mass(ellipse((64, 64), (31.5, 31.5), 18, 8, 0)),
                               atol=3.0)  # rotated about the array centre, not moved to it
    nothing = CellAligner(rotate=False, center=False, flip=False).fit_transform(X)
    np.testing.assert_allclose(nothing, X, atol=1e-6)


def test_align_order_0_keeps_mask_values_and_channel_choice():
    X = np.concatenate([cell_2d(30.0)[:, ::-1], cell_2d(30.0)[:, :1]], axis=1)  # nuc, cell, cell
    out = CellAligner(axis_channel=1, center_channel=0, order=0).fit_transform(X)
    assert set(np.unique(out)) <= {0.0, 1.0}
    assert orientation_from_x(out[0, 1]) < 2.0
    np.testing.assert_allclose(ndi.center_of_mass(out[0, 0]), centre_of((64, 64)), atol=0.5)


def test_transform_is_per_cell_and_parallel_is_identical():
    rng = np.random.RandomState(0)
    X = np.concatenate([cell_2d(a, shape=(40, 40), center=(20, 20), nucleus_offset=(1, 2))
                        for a in rng.uniform(0, 180, 150)])
    X += rng.rand(*X.shape).astype(np.float32) * 0.05
    aligner = CellAligner().fit(X[:3])
    serial = aligner.transform(X)
    np.testing.assert_array_equal(aligner.set_params(n_jobs=2).transform(X), serial)
    np.testing.assert_array_equal(aligner.transform(X[7:8]), serial[7:8])
    norm = IntensityNormalizer().fit(X)
    np.testing.assert_array_equal(clone(norm).set_params(n_jobs=2).fit_transform(X),
                                  norm.transform(X))


# ----------------------------------------------------------------------------- normalization
def test_mode_normalizer_removes_constant_background_uint16():
    shape = (48, 48)
    signal = 900 * np.exp(-((_grid(shape)[0] - 24) ** 2 + (_grid(shape)[1] - 20) ** 2) / 40)
    raw = (100 + np.round(signal)).astype(np.uint16)
    raw[0, :5] = 90  # darker than the background: zeroed
    X = np.stack([raw, np.full(shape, 7, np.uint16)])[None]  # second channel: all background
    out = IntensityNormalizer().fit_transform(X)
    assert out.dtype == np.float32 and np.isfinite(out).all()
    expected = np.clip(raw.astype(np.float64) - 100, 0, None) / (raw.max() - 100.0)
    np.testing.assert_allclose(out[0, 0], expected, rtol=1e-6)
    assert out[0, 0].max() == 1.0 and out[0, 0].min() == 0.0
    np.testing.assert_array_equal(out[0, 1], 0.0)
    # Without clipping the darker pixels stay negative.
    unclipped = IntensityNormalizer(clip=False).fit_transform(X)
    assert unclipped[0, 0, 0, 0] < 0 and unclipped[0, 0].max() == 1.0


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.int64, np.uint64, np.float32])
def test_mode_normalizer_dtypes_and_3d(dtype):
    rng = np.random.RandomState(1)
    X = np.full((2, 3, 6, 10, 12), 20, dtype=dtype)
    X[:, :, 2:4, 3:7, 4:9] += rng.randint(1, 50, size=(2, 3, 2, 4, 5)).astype(dtype)
    out = IntensityNormalizer().fit_transform(X)
    assert out.shape == X.shape and out.dtype == np.float32
    flat = out.reshape(6, -1)
    assert (flat.max(axis=1) == 1.0).all()
    # The background (the most frequent value) becomes exactly 0.
    assert ((flat == 0).sum(axis=1) >= 6 * 10 * 12 - 2 * 4 * 5).all()


@pytest.mark.parametrize("dtype", [np.uint16, np.float32])
def test_saturated_pixels_are_not_the_background(dtype):
    # A noisy background spreads over many values, each rarer than a line of
    # saturated pixels: those must not be taken for the background (which would
    # blank the channel).
    rng = np.random.RandomState(0)
    X = rng.normal(1000, 300, (1, 1, 68, 68)).clip(0)
    X[0, 0, 20:40, 20:40] += 3000
    X[0, 0, 30, 25:60] = 65535
    out = IntensityNormalizer().fit_transform(X.astype(dtype))[0, 0]
    assert out.max() == 1.0
    assert (out[20:40, 20:40] > 0).all()  # the bright square survives
    assert np.median(out[:15, :15]) < 0.1  # and the background is near 0
    # A channel of one value is still all background.
    flat = np.full((1, 1, 8, 8), 5, dtype=dtype)
    np.testing.assert_array_equal(IntensityNormalizer().fit_transform(flat), 0.0)


def test_integer_torch_tensor_is_normalized_like_the_numpy_array():
    torch = pytest.importorskip("torch")
    rng = np.random.RandomState(3)
    X = rng.normal(1000, 300, (2, 2, 24, 24)).clip(0).astype(np.int16)
    X[:, :, 8:16, 8:16] += 2000
    expected = IntensityNormalizer().fit_transform(X)
    np.testing.assert_array_equal(IntensityNormalizer().fit_transform(torch.from_numpy(X)),
                                  expected)

    class OnDisk:  # what h5py, zarr or xarray hand over: a dtype and __array__
        dtype = X.dtype
        shape = X.shape
        ndim = X.ndim

        def __array__(self, dtype=None, copy=None):
            return X if dtype is None else X.astype(dtype)

        def __len__(self):
            return len(X)

    np.testing.assert_array_equal(IntensityNormalizer().fit_transform(OnDisk()), expected)


def test_mode_normalizer_float_noisy_background():
    rng = np.random.RandomState(2)
    X = (0.3 + 0.01 * rng.randn(1, 1, 64, 64)).astype(np.float32)
    X[0, 0, 20:40, 20:40] += 1.0
    out = IntensityNormalizer().fit_transform(X)
    assert abs(np.median(out[0, 0, :15, :15])) < 0.01
    assert out.max() == 1.0 and out.min() == 0.0


@pytest.mark.parametrize("values, expected", [
    # A range wider than float32 holds: binning in float32 overflowed to inf and crashed.
    ([-3e38, 0, 0, 0, 3e38], [0, 0, 0, 0, 1]),
    # Subtracting the mode overflows float32 too.
    ([-3e38, -3e38, -3e38, 3e38], [0, 0, 0, 1]),
    # So narrow a range that 1024 bins over it overflowed the scale.
    ([0, 0, 0, 1e-45, 2.9e-45], [0, 0, 0, 0.5, 1]),
])
def test_mode_normalizer_extreme_float_ranges(values, expected):
    X = np.asarray(values, np.float32).reshape(1, 1, 1, -1)
    out = IntensityNormalizer().fit_transform(X)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out[0, 0, 0], expected, atol=1e-6)


def test_unclipped_mode_normalizer_scales_a_channel_with_nothing_above_its_mode():
    # In float32, 100000001 (the mode: the maximum is never the background) and
    # 100000002 (the maximum) are both 1e8: the channel had no peak above its mode
    # and was returned unscaled, -1e8.
    X = np.array([0, 100000001, 100000001, 100000002], np.int32).reshape(1, 1, 2, 2)
    out = IntensityNormalizer(clip=False).fit_transform(X)
    np.testing.assert_array_equal(out.ravel(), [-1, 0, 0, 0])
    np.testing.assert_array_equal(IntensityNormalizer().fit_transform(X), 0.0)


def test_percentile_normalizer():
    X = np.arange(2 * 100, dtype=np.float32).reshape(1, 2, 10, 10)
    X[0, 1] *= 3
    out = IntensityNormalizer(method="percentile", percentiles=(10, 90)).fit_transform(X)
    for c in range(2):
        lo, hi = np.percentile(X[0, c], [10, 90])
        np.testing.assert_allclose(out[0, c], np.clip((X[0, c] - lo) / (hi - lo), 0, 1),
                                   atol=1e-6)
    raw = IntensityNormalizer(method="percentile", percentiles=(10, 90), clip=False)
    out = raw.fit_transform(X)
    assert out.min() < 0 and out.max() > 1
    flat = IntensityNormalizer(method="percentile").fit_transform(np.ones((1, 1, 4, 4)))
    np.testing.assert_array_equal(flat, 0.0)


@pytest.mark.parametrize("percentiles", [(50, 10), (-1, 99), (1, 101), ("a", "b"), (1, 2, 3)])
def test_percentiles_validated(percentiles):
    with pytest.raises(ValueError, match="percentiles must be two numbers"):
        IntensityNormalizer(method="percentile", percentiles=percentiles).fit(
            np.ones((1, 1, 4, 4)))


@settings(max_examples=25, deadline=None)
@given(hnp.arrays(st.sampled_from([np.uint8, np.uint16, np.int32]),
                  hnp.array_shapes(min_dims=4, max_dims=5, min_side=1, max_side=6),
                  elements=st.integers(0, 255)),
       st.sampled_from(["mode", "percentile"]))
def test_normalized_output_always_in_unit_interval(X, method):
    out = IntensityNormalizer(method=method).fit_transform(X)
    assert out.dtype == np.float32 and np.isfinite(out).all()
    assert out.min() >= 0.0 and out.max() <= 1.0


# ----------------------------------------------------------------------------- pad, crop
def test_pad_preserves_content_and_inverse_restores():
    rng = np.random.RandomState(0)
    X = rng.rand(3, 2, 5, 8).astype(np.float32)
    pc = PadCrop((10, 11), fill_value=-1.0).fit(X)
    out = pc.transform(X)
    assert out.shape == (3, 2, 10, 11)
    np.testing.assert_array_equal(out[:, :, 2:7, 1:9], X)  # offsets (10-5)//2, (11-8)//2
    assert (out[:, :, :2] == -1).all() and (out[:, :, 7:] == -1).all()
    np.testing.assert_array_equal(pc.inverse_transform(out), X)


def test_crop_is_centred_and_mixed_3d():
    X = np.arange(6 * 7 * 8, dtype=np.float32).reshape(1, 1, 6, 7, 8)
    out = PadCrop((4, 5, 10)).fit_transform(X)
    assert out.shape == (1, 1, 4, 5, 10)
    np.testing.assert_array_equal(out[0, 0, :, :, 1:9], X[0, 0, 1:5, 1:6, :])
    np.testing.assert_array_equal(out[0, 0, :, :, [0, 9]], 0.0)
    odd = PadCrop((2, 2)).fit_transform(np.arange(25.0).reshape(1, 1, 5, 5))
    np.testing.assert_array_equal(odd[0, 0], [[6, 7], [11, 12]])


@settings(max_examples=25, deadline=None)
@given(hnp.arrays(np.float32, hnp.array_shapes(min_dims=4, max_dims=5, min_side=1, max_side=7),
                  elements=st.floats(-1e3, 1e3, width=32)),
       st.data())
def test_pad_then_inverse_is_identity(X, data):
    shape = tuple(data.draw(st.integers(s, s + 5)) for s in X.shape[2:])
    pc = PadCrop(shape).fit(X)
    np.testing.assert_array_equal(pc.inverse_transform(pc.transform(X)), X)


def test_padcrop_errors():
    X = np.zeros((1, 2, 4, 4, 4))
    with pytest.raises(ValueError, match="has 2 axes but the images have 3 spatial axes"):
        PadCrop((8, 8)).fit(X)
    with pytest.raises(ValueError, match="positive integers"):
        PadCrop((8, 0, 8)).fit(X)
    with pytest.raises(TypeError, match="positive integers"):
        PadCrop((8, 2.5, 8)).fit(X)
    pc = PadCrop((6, 6, 6)).fit(X)
    with pytest.raises(ValueError, match="spatial shape"):
        pc.inverse_transform(X)
    # A refused refit leaves the earlier fit in place.
    Xt = pc.transform(X)
    with pytest.raises(ValueError, match="spatial axes"):
        pc.fit(np.zeros((1, 2, 4, 4)))
    assert pc.spatial_ndim_ == 3
    np.testing.assert_array_equal(pc.inverse_transform(Xt), X)


# ----------------------------------------------------------------------------- projection
def test_max_projection():
    X = np.random.RandomState(0).rand(2, 3, 5, 6, 7).astype(np.float32)
    np.testing.assert_array_equal(MaxProjector().fit_transform(X), X.max(axis=2))
    np.testing.assert_allclose(MaxProjector(method="mean").fit_transform(X), X.mean(axis=2),
                               rtol=1e-6)
    np.testing.assert_array_equal(MaxProjector(axis=-1).fit_transform(X), X.max(axis=4))
    with pytest.raises(ValueError, match="already 2D"):
        MaxProjector().fit(X[:, :, 0])
    with pytest.raises(ValueError, match="already 2D"):
        MaxProjector().fit(X).transform(X[:, :, 0])


# ----------------------------------------------------------------------------- voxels
def test_voxel_resampler_shape_and_physical_size():
    voxel = (0.3, 0.1, 0.1)
    shape = (21, 41, 41)
    zz, yy, xx = (g * v for g, v in zip(_grid(shape), voxel))
    centre = [(s - 1) / 2 * v for s, v in zip(shape, voxel)]
    sigma = 0.6  # micrometres, the same along every axis
    blob = np.exp(-sum((g - c) ** 2 for g, c in zip((zz, yy, xx), centre)) / (2 * sigma**2))
    X = blob[None, None].astype(np.float32)
    rs = VoxelResampler(voxel).fit(X)
    out = rs.transform(X)
    assert rs.target_voxel_size_ == (0.1, 0.1, 0.1)
    assert out.shape == (1, 1, 63, 41, 41) == (1, 1) + rs.spatial_shape_out_
    # The blob is round again (cubic voxels) and keeps its physical width and centre.
    profile_z = out[0, 0].sum(axis=(1, 2))
    z = np.arange(profile_z.size)
    mean = (profile_z * z).sum() / profile_z.sum()
    width = np.sqrt((profile_z * (z - mean) ** 2).sum() / profile_z.sum()) * 0.1
    assert abs(width / sigma - 1) < 0.05
    assert abs(mean - 31.0) < 0.05


def test_voxel_resampler_2d_scalar_target_and_errors():
    X = np.zeros((2, 1, 10, 20), dtype=np.float32)
    X[:, :, 3:7, 5:15] = 1
    out = VoxelResampler(0.2, target_voxel_size=0.1, order=0).fit_transform(X)
    assert out.shape == (2, 1, 20, 40) and set(np.unique(out)) == {0.0, 1.0}
    assert out[0, 0].sum() == pytest.approx(X[0, 0].sum() * 4)
    down = VoxelResampler((0.1, 0.1), target_voxel_size=(0.2, 0.3)).fit_transform(X)
    assert down.shape == (2, 1, 5, 7)
    with pytest.raises(ValueError, match="voxel_size has 3 values but the images have 2"):
        VoxelResampler((0.3, 0.1, 0.1)).fit(X)
    with pytest.raises(ValueError, match="positive and finite"):
        VoxelResampler((0.3, -0.1)).fit(X)


# ----------------------------------------------------------------------------- controls
@pytest.fixture
def three_channel_cells():
    rng = np.random.RandomState(0)
    cells = []
    for i in range(6):
        mem = ellipse((32, 32), (16, 16), 12, 7, 30 * i)
        dna = disc((32, 32), (16, 15), 4) * 0.8
        struct = rng.rand(32, 32).astype(np.float32) * mem
        cells.append(np.stack([mem, dna, struct]))
    return np.stack(cells)


def test_controls_content_labels_and_order(three_channel_cells):
    X = three_channel_cells
    y = np.array(["tubulin"] * 6, dtype=object)
    X_out, y_out, source = add_control_structures(X, y, threshold=0.5, random_state=0)
    n = len(X)
    assert X_out.shape == (6 * n, 3, 32, 32) and X_out.dtype == np.float32
    np.testing.assert_array_equal(source, np.tile(np.arange(n), 6))
    names = ["control_blank", "control_dna", "control_membrane", "control_noise",
             "control_random"]
    assert y_out[:n].tolist() == ["tubulin"] * n
    assert [y_out[n * (k + 1)] for k in range(5)] == names
    assert set(names) <= set(STRUCTURES)
    blocks = X_out.reshape(6, n, 3, 32, 32)
    np.testing.assert_array_equal(blocks[:, :, :2], np.broadcast_to(X[:, :2], (6, n, 2, 32, 32)))
    np.testing.assert_array_equal(blocks[0], X)
    np.testing.assert_array_equal(blocks[1, :, 2], 0.0)
    np.testing.assert_array_equal(blocks[2, :, 2], X[:, 1])
    np.testing.assert_array_equal(blocks[3, :, 2], X[:, 0])
    noise, mask = blocks[4, :, 2], (X[:, 0] > 0.5) | (X[:, 1] > 0.5)
    np.testing.assert_array_equal(noise[~mask], 0.0)
    assert (noise[mask] >= 0).all() and noise[mask].max() <= X[:, 2].max()
    assert noise[mask].std() > 0.05
    for i, img in enumerate(blocks[5, :, 2]):
        matches = [j for j in range(n) if np.array_equal(img, X[j, 2])]
        assert matches and i not in matches


def test_controls_options(three_channel_cells):
    X = three_channel_cells
    X_out, y_out, source = add_control_structures(X, controls=["random"], include_original=False,
                                                  structure_name="s", random_state=1)
    assert X_out.shape[0] == 6 and set(y_out) == {"control_random"}
    again = add_control_structures(X, controls=["random"], include_original=False,
                                   random_state=1)[0]
    np.testing.assert_array_equal(again, X_out)
    _, y_out, _ = add_control_structures(X, controls="blank", structure_name="s")
    assert y_out.tolist() == ["s"] * 6 + ["control_blank"] * 6
    # Otsu thresholds by default: the noise still sits inside the cell.
    X_out, _, _ = add_control_structures(X, controls=["noise"], include_original=False,
                                         random_state=0)
    assert (X_out[:, 2][X[:, 0] + X[:, 1] == 0] == 0).all() and X_out[:, 2].max() > 0
    X3 = np.stack([cell_3d(30.0)[0, 0], cell_3d(30.0)[0, 1], cell_3d(60.0)[0, 0]])[None]
    X_out, _, _ = add_control_structures(np.concatenate([X3, X3]), controls=["noise", "dna"])
    assert X_out.shape == (6, 3, 16, 48, 48)


def test_controls_errors(three_channel_cells):
    X = three_channel_cells
    with pytest.raises(ValueError, match=r"Unknown controls \['halo'\]; valid controls are"):
        add_control_structures(X, controls=("blank", "halo"))
    with pytest.raises(ValueError, match="at least 2 cells"):
        add_control_structures(X[:1], controls=("random",))
    with pytest.raises(ValueError, match="must differ from membrane_channel"):
        add_control_structures(X, structure_channel=1)
    with pytest.raises(ValueError, match="Nothing to return"):
        add_control_structures(X, controls=(), include_original=False)
    with pytest.raises(ValueError, match="labels but the images hold 6 cells"):
        add_control_structures(X, ["a", "b"])


# ----------------------------------------------------------------------------- API contract
ESTIMATORS = [
    IntensityNormalizer(method="percentile", percentiles=(2.0, 98.0)),
    CellAligner(order=0, axis=-2),
    VoxelResampler((0.3, 0.1, 0.1)),
    PadCrop((6, 20, 20)),
    MaxProjector(method="mean"),
]


@pytest.mark.parametrize("est", ESTIMATORS, ids=lambda e: type(e).__name__)
def test_sklearn_contract(est):
    X = cell_3d(30.0)
    with pytest.raises(NotFittedError):
        clone(est).transform(X)
    params = est.get_params()
    cloned = clone(est)
    assert cloned is not est and cloned.get_params() == params
    assert cloned.fit(X) is cloned
    Xt = cloned.transform(X)
    assert isinstance(Xt, np.ndarray) and Xt.dtype == np.float32
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(cloned)).transform(X), Xt)
    np.testing.assert_array_equal(cloned.fit_transform(X), Xt)
    assert cloned.set_output(transform="pandas") is cloned
    assert isinstance(cloned.transform(X), np.ndarray)
    assert clone(cloned)._sklearn_output_config == {"transform": "pandas"}
    with pytest.raises(ValueError, match="transform must be one of"):
        cloned.set_output(transform="arrow")
    key = next(iter(params))
    assert clone(est).set_params(**{key: params[key]}).get_params() == params
    # Images have no feature names; None lets a Pipeline pass through to a later step.
    with pytest.raises(NotFittedError):
        clone(est).get_feature_names_out()
    assert cloned.get_feature_names_out() is None


@pytest.mark.parametrize("est", ESTIMATORS[:3], ids=lambda e: type(e).__name__)
def test_input_errors(est):
    X = cell_3d(30.0)
    fitted = clone(est).fit(X)
    with pytest.raises(ValueError, match="3 channels but 2 were expected"):
        fitted.transform(np.concatenate([X, X[:, :1]], axis=1))
    with pytest.raises(ValueError, match="2 spatial axes .* but 3 were expected"):
        fitted.transform(X[:, :, 0])
    with pytest.raises(ValueError, match="must have 4 axes"):
        fitted.transform(X[0, 0])


def test_invalid_parameters():
    X = cell_2d(30.0)
    with pytest.raises(ValueError, match="method"):
        IntensityNormalizer(method="median").fit(X)
    with pytest.raises(ValueError, match="axis"):
        CellAligner(axis=0).fit(X)
    with pytest.raises(ValueError, match="center_channel=2 is out of range"):
        CellAligner(center_channel=2).fit(X)
    with pytest.raises(ValueError, match="axis_channel=5 is out of range"):
        alignment_parameters(X, axis_channel=5)


def test_pipeline_feature_names_come_from_image_features():
    X = np.concatenate([cell_2d(a) for a in ANGLES]) * 1000
    pipe = make_pipeline(IntensityNormalizer(), CellAligner(), PadCrop((32, 32)),
                         ImageFeatures(), StandardScaler()).fit(X)
    names = pipe.get_feature_names_out()
    np.testing.assert_array_equal(names, pipe[-2].get_feature_names_out())
    assert names[0] == "ch0_mean" and len(names) == 2 * 16
    # The same names as the columns that set_output("pandas") gives.
    out = clone(pipe).set_output(transform="pandas").fit(X).transform(X)
    assert list(out.columns) == list(names)
    # The other image transformers pass through too (3D, projected to 2D).
    pipe3d = make_pipeline(VoxelResampler((0.3, 0.1, 0.1)), MaxProjector(),
                           ImageFeatures(channels=["cell", "nucleus"])).fit(cell_3d(30.0))
    names = pipe3d.get_feature_names_out()
    assert names[0] == "cell_mean" and names[-1] == "nucleus_glcm_energy"


def test_pipeline_with_set_output_pandas_keeps_arrays():
    X = np.concatenate([cell_2d(a) for a in ANGLES]) * 1000
    pipe = make_pipeline(IntensityNormalizer(), CellAligner(), PadCrop((40, 40)))
    out = pipe.set_output(transform="pandas").fit_transform(X.astype(np.uint16))
    assert isinstance(out, np.ndarray) and out.shape == (3, 2, 40, 40)
    assert isinstance(clone(pipe).fit(X).transform(X), np.ndarray)
    loaded = pickle.loads(pickle.dumps(pipe))
    np.testing.assert_array_equal(loaded.transform(X.astype(np.uint16)), out)
