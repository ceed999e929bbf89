"""Property-based tests: random shapes, dtypes and values through preprocessing.

Whatever the input, a transformer either returns a well-formed result or raises
one of the documented errors (ValueError or TypeError); it never crashes
otherwise, and its invariants hold.
"""

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

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
