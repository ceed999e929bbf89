"""Property-based tests: random shapes, dtypes and values through preprocessing and io.

Whatever the input, a transformer either returns a well-formed result or raises
one of the documented errors (ValueError or TypeError); it never crashes
otherwise, and its invariants hold.
"""

import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from cellgen.io import load_manifest, read_image, save_cells, write_ome_tiff
from cellgen.preprocessing import (
    CellAligner,
    ImageFeatures,
    IntensityNormalizer,
    MaxProjector,
    PadCrop,
)

FAST = settings(max_examples=25, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])

dtypes = st.sampled_from([np.uint8, np.uint16, np.int32, np.float32, np.float64])


@st.composite
def images(draw, ndim=None):
    ndim = draw(st.sampled_from([2, 3])) if ndim is None else ndim
    n, c = draw(st.integers(1, 3)), draw(st.integers(2, 3))
    spatial = draw(st.lists(st.integers(1, 12), min_size=ndim, max_size=ndim))
    dtype = draw(dtypes)
    if np.issubdtype(dtype, np.floating):
        elements = st.floats(-1e3, 1e3, allow_nan=False, width=32)
    else:
        info = np.iinfo(dtype)
        elements = st.integers(max(info.min, -1000), min(info.max, 5000))
    return draw(hnp.arrays(dtype, (n, c, *spatial), elements=elements))


@FAST
@given(images(), st.sampled_from(["mode", "percentile"]))
def test_normalized_output_is_finite_and_in_unit_range(X, method):
    out = IntensityNormalizer(method=method).fit_transform(X)
    assert out.shape == X.shape and out.dtype == np.float32
    assert np.isfinite(out).all() and out.min() >= 0 and out.max() <= 1


@FAST
@given(images())
def test_alignment_keeps_shape_and_stays_finite(X):
    X = np.abs(X.astype(np.float32))
    out = CellAligner(axis_channel=0, center_channel=1).fit_transform(X)
    assert out.shape == X.shape and np.isfinite(out).all()


@FAST
@given(images(ndim=3))
def test_projection_is_the_maximum_over_z(X):
    np.testing.assert_array_equal(MaxProjector().fit_transform(X), X.max(axis=2))


@FAST
@given(images(), st.data())
def test_pad_then_inverse_returns_the_input(X, data):
    bigger = tuple(s + data.draw(st.integers(0, 4)) for s in X.shape[2:])
    pc = PadCrop(bigger).fit(X)
    np.testing.assert_array_equal(pc.inverse_transform(pc.transform(X)), X.astype(np.float32))


@FAST
@given(images())
def test_features_are_finite_with_unique_names(X):
    f = ImageFeatures()
    out = f.fit_transform(X)
    names = f.get_feature_names_out()
    assert out.shape == (len(X), len(names)) and len(set(names)) == len(names)
    assert np.isfinite(out).all()


@FAST
@given(st.lists(st.integers(0, 6), min_size=0, max_size=6), dtypes)
def test_any_shape_either_works_or_fails_with_a_documented_error(shape, dtype):
    X = np.zeros(shape, dtype=dtype)
    for est in (IntensityNormalizer(), CellAligner(), MaxProjector(), ImageFeatures()):
        try:
            est.fit_transform(X)
        except (ValueError, TypeError) as exc:
            assert str(exc)  # a message, never an empty error


@FAST
@given(images(ndim=2))
def test_projection_of_an_already_2d_input_errors_clearly(X):
    with pytest.raises(ValueError, match="already 2D"):
        MaxProjector().fit_transform(X)


names = st.lists(st.text(st.characters(codec="ascii", categories=["L", "N"]), min_size=1,
                         max_size=8), min_size=3, max_size=3, unique=True)
sizes = st.floats(0.01, 10.0, allow_nan=False)


def _as_read(image):
    """What read_image documents returning: a single Z plane is a 2D image."""
    return image[:, 0] if image.ndim == 4 and image.shape[1] == 1 else image


@FAST
@given(images(), names, st.data())
def test_ome_tiff_write_then_read_is_exact(X, channel_names, data):
    image = X[0]
    channel_names = channel_names[:image.shape[0]]
    pixel_size = tuple(data.draw(sizes) for _ in range(image.ndim - 1))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "cell.ome.tif"
        write_ome_tiff(path, image, channel_names=channel_names, pixel_size=pixel_size)
        back, info = read_image(path)
        # Channels are selectable by the names written.
        picked, _ = read_image(path, channels=channel_names[::-1])
    assert back.dtype == image.dtype
    np.testing.assert_array_equal(back, _as_read(image))
    np.testing.assert_array_equal(picked, _as_read(image[::-1]))
    assert list(info["channel_names"]) == channel_names
    single_plane = image.ndim == 4 and image.shape[1] == 1
    np.testing.assert_allclose(info["pixel_size"], pixel_size[1:] if single_plane else pixel_size,
                               rtol=1e-6)


@FAST
@given(images())
def test_save_cells_then_load_manifest_is_exact(X):
    if X.ndim == 5 and X.shape[2] == 1:
        # One Z plane would read back 2D: save_cells refuses rather than lose the axis.
        with tempfile.TemporaryDirectory() as tmp, pytest.raises(ValueError, match="single Z"):
            save_cells(Path(tmp) / "cells", X)
        return
    with tempfile.TemporaryDirectory() as tmp:
        table = save_cells(Path(tmp) / "cells", X,
                           metadata={"well": [f"w{i}" for i in range(len(X))]})
        back, meta = load_manifest(Path(tmp) / "cells" / "manifest.csv",
                                   dtype=X.dtype)
    assert len(table) == len(X)
    np.testing.assert_array_equal(back, np.stack([_as_read(x) for x in X]))
    assert list(meta["well"]) == [f"w{i}" for i in range(len(X))]
