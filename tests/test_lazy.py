"""Fitting and embedding a memory-mapped collection without loading it whole."""

import tracemalloc

import numpy as np
import pytest

from cellgen import ConditionalStructureVAE, StatisticalCell
from cellgen.datasets import make_cells

from .conftest import TINY

ONE_EPOCH = dict(TINY, max_epochs=1)


@pytest.fixture(scope="module")
def on_disk(tmp_path_factory):
    X, y, _ = make_cells(48, shape=(16, 16), random_state=3)
    path = tmp_path_factory.mktemp("cache") / "cells.npy"
    np.save(path, X)
    return np.load(path, mmap_mode="r"), X, y


def _statcell():
    return StatisticalCell(
        reference_model=__import__("cellgen").ReferenceVAE(random_state=0, **ONE_EPOCH),
        structure_model=ConditionalStructureVAE(random_state=0, **ONE_EPOCH))


def test_memmap_gives_the_same_model_as_memory(on_disk):
    mm, X, y = on_disk
    a = _statcell().fit(mm, y)
    b = _statcell().fit(X, y)
    np.testing.assert_array_equal(a.transform(mm, structures=y), b.transform(X, structures=y))
    np.testing.assert_allclose(a.score_samples(mm, structures=y),
                               b.score_samples(X, structures=y), rtol=1e-5)


@pytest.mark.parametrize("reference_channels", [[0, 1], [0]])
@pytest.mark.parametrize("n_samples", [None, 2])
def test_impute_on_a_memmap_equals_impute_in_memory(on_disk, reference_channels, n_samples):
    mm, X, y = on_disk
    model = StatisticalCell(
        reference_model=__import__("cellgen").ReferenceVAE(random_state=0, **ONE_EPOCH),
        structure_model=ConditionalStructureVAE(random_state=0, **ONE_EPOCH),
        reference_channels=reference_channels, structure_channel=2).fit(X, y)
    kw = dict(n_samples=n_samples, random_state=0)
    a = model.impute(mm, ["nucleoli", "cell_periphery"], **kw)
    b = model.impute(X, ["nucleoli", "cell_periphery"], **kw)
    assert a.shape == b.shape
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def _peak_bytes(tmp_path, n):
    """Peak traced memory of fitting and embedding a memory-mapped collection of n cells."""
    X, y, _ = make_cells(n, shape=(32, 32), random_state=4)
    path = tmp_path / f"cells{n}.npy"
    np.save(path, X)
    mm = np.load(path, mmap_mode="r")
    model = ConditionalStructureVAE(random_state=0, **ONE_EPOCH)
    model.fit(X[:32], y[:32])  # first use imports modules lazily; keep that out of the trace
    tracemalloc.start()
    try:
        model.fit(mm, y)
        model.transform(mm, structures=y)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    np.testing.assert_array_equal(np.load(path), X)  # the cache is left untouched
    return peak, X.nbytes


def test_memmap_collection_is_never_copied_whole(tmp_path):
    # numpy allocations are traced. Memory must be bounded by the batch, not
    # by the collection: 8x the cells may not raise the peak by a copy's worth.
    small, _ = _peak_bytes(tmp_path, 150)
    large, nbytes = _peak_bytes(tmp_path, 1200)
    assert large - small < nbytes / 4, (small, large, nbytes)


def test_memmap_with_nan_is_rejected(tmp_path):
    X, y, _ = make_cells(8, shape=(16, 16), random_state=0)
    X[5, 2, 3, 3] = np.nan
    np.save(tmp_path / "bad.npy", X)
    mm = np.load(tmp_path / "bad.npy", mmap_mode="r")
    with pytest.raises(ValueError, match="1 NaN or infinite"):
        ConditionalStructureVAE(**ONE_EPOCH).fit(mm, y)


def test_statistical_cell_scores_a_memmap_without_copying_it(tmp_path):
    X, y, _ = make_cells(1200, shape=(32, 32), random_state=4)
    model = _statcell().fit(X[:48], y[:48])
    model.score_samples(X[:32], structures=y[:32])  # lazy imports out of the trace
    peaks = []
    for n in (150, 1200):
        path = tmp_path / f"cells{n}.npy"
        np.save(path, X[:n])
        mm = np.load(path, mmap_mode="r")
        tracemalloc.start()
        try:
            model.score_samples(mm, structures=y[:n])
            peaks.append(tracemalloc.get_traced_memory()[1])
        finally:
            tracemalloc.stop()
    # The reference channels of 1050 more cells would be 8.6 MB.
    assert peaks[1] - peaks[0] < X[:1050, :2].nbytes / 4, peaks


def _growth(fn, small, large):
    """Traced peak of ``fn(large) - fn(small)``: what more cells cost."""
    peaks = []
    for arg in (small, large):
        tracemalloc.start()
        try:
            fn(arg)
            peaks.append(tracemalloc.get_traced_memory()[1])
        finally:
            tracemalloc.stop()
    return peaks[1] - peaks[0]


def test_in_memory_cells_are_not_copied_channel_by_channel():
    # Splitting X into reference and structure channels must read batches, not
    # copy the collection (a StatisticalCell held 2.3 copies of X at its peak).
    from cellgen.analysis import structure_coupling

    X, y, _ = make_cells(1200, shape=(32, 32), random_state=4)
    model = _statcell().fit(X[:48], y[:48])
    structure_coupling(model, X[:32], y[:32], n_swaps=1)  # lazy imports out of the trace
    extra = X[150:].nbytes  # 1050 more cells, all channels
    for name, fn in [
        ("transform", lambda n: model.transform(X[:n], structures=y[:n])),
        ("score_samples", lambda n: model.score_samples(X[:n], structures=y[:n])),
        ("coupling", lambda n: structure_coupling(model, X[:n], y[:n], n_swaps=2,
                                                  random_state=0)),
    ]:
        growth = _growth(fn, 150, 1200)
        assert growth < extra / 4, (name, growth, extra)


def test_swapped_rows_equal_the_swapped_array():
    from cellgen.analysis._coupling import _Swapped
    from cellgen.utils._arrays import channel_view

    X = np.random.default_rng(0).random((7, 3, 4, 4), dtype=np.float32)
    partners = np.array([3, 0, 6, 1, 2, 2, 4])
    expected = X.copy()
    expected[:, 1] = X[partners, 1]
    view = _Swapped(X, 1, partners)
    np.testing.assert_array_equal(np.asarray(view), expected)
    np.testing.assert_array_equal(view[2:5], expected[2:5])
    np.testing.assert_array_equal(view[4], expected[4])
    np.testing.assert_array_equal(view[np.array([6, 0, 3])], expected[[6, 0, 3]])
    # Through a channel selection, as a StatisticalCell's structure model reads it.
    sel = channel_view(X, [1, 0, 2])
    np.testing.assert_array_equal(np.asarray(_Swapped(sel, 0, partners)),
                                  expected[:, [1, 0, 2]])
    assert not np.shares_memory(view[0:7], X)  # the caller's X is never written


def test_impute_holds_its_output_once():
    # Parts concatenated at the end held the integrated cells twice, and the
    # reference was repeated once per draw.
    X, y, _ = make_cells(1200, shape=(32, 32), random_state=4)
    model = _statcell().fit(X[:48], y[:48])
    model.impute(X[:8], n_samples=2, random_state=0)  # lazy imports out of the trace
    out_growth = model.impute(X[:1050], n_samples=3, random_state=0).nbytes  # 1200 - 150 cells
    growth = _growth(lambda n: model.impute(X[:n], n_samples=3, random_state=0), 150, 1200)
    assert growth < 1.5 * out_growth, (growth, out_growth)  # the output of 1050 more cells
