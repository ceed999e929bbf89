"""The whole path on real cells: OME-TIFF manifest -> preprocessing Pipeline -> StatisticalCell.

Uses the BBBC021 crops beside the project (``../shared/data`` or
``$CELLGEN_SHARED_DATA``); skipped where they are absent.
"""


import numpy as np
import pandas as pd
import pytest
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline

from cellgen import ConditionalStructureVAE, ReferenceVAE, StatisticalCell
from cellgen.datasets import load_bbbc021
from cellgen.io import cache_manifest
from cellgen.preprocessing import CellAligner, IntensityNormalizer, PadCrop, add_control_structures

from .conftest import SHARED_DATA, TINY

DATA = SHARED_DATA
BBBC021 = DATA / "bbbc021"
pytestmark = pytest.mark.skipif(not (BBBC021 / "manifest.csv").is_file(),
                                reason="shared BBBC021 cells not available")


@pytest.fixture(scope="module")
def subset(tmp_path_factory):
    """64 real cells in the BBBC021 layout (a subset manifest pointing at the shared files)."""
    rows = pd.read_csv(BBBC021 / "manifest.csv").sample(64, random_state=0)
    rows["path"] = [str(BBBC021 / p) for p in rows["path"]]
    folder = tmp_path_factory.mktemp("bbbc")
    rows.to_csv(folder / "manifest.csv", index=False)
    return folder


def _prepare():
    return [IntensityNormalizer(), CellAligner(axis_channel=0, center_channel=1),
            PadCrop((64, 64))]


def test_pipeline_with_statistical_cell_fits_bbbc021(subset):
    data = load_bbbc021(subset, channels=("F-actin", "DNA", "beta-tubulin"))
    assert data.images.shape == (64, 3, 68, 68)
    y = np.full(len(data.images), "beta-tubulin", dtype=object)
    X, labels, source = add_control_structures(data.images, y, random_state=0)
    assert X.shape[0] == 6 * 64 and set(labels) == {
        "beta-tubulin", "control_blank", "control_dna", "control_membrane", "control_noise",
        "control_random"}
    model = make_pipeline(*_prepare(), StatisticalCell(ReferenceVAE(random_state=0, **TINY),
                                                       ConditionalStructureVAE(random_state=0,
                                                                               **TINY)))
    model.set_output(transform="pandas")
    model.fit(X, labels)
    cell = model[-1]
    assert cell.spatial_shape_ == (64, 64) and len(cell.classes_) == 6
    prepared = model[:-1].transform(X)
    assert prepared.shape == (len(X), 3, 64, 64)
    assert prepared.min() >= 0 and prepared.max() <= 1
    Z = cell.transform(prepared, structures=labels)
    assert isinstance(Z, pd.DataFrame) and Z.shape == (len(X), 2 * TINY["n_latent"])
    assert np.isfinite(Z.to_numpy()).all()
    # The reference part of a control copy equals its source cell's, so their
    # reference embeddings coincide; only the structure part differs.
    ref_cols = [c for c in Z.columns if c.startswith("ref_")]
    np.testing.assert_allclose(Z[ref_cols].to_numpy()[64:128],
                               Z[ref_cols].to_numpy()[source[64:128]], atol=1e-5)
    # The embedding feeds scikit-learn models directly.
    knn = KNeighborsClassifier(3).fit(Z.to_numpy(), labels)
    assert knn.score(Z.to_numpy(), labels) > 1 / 6


def test_cached_collection_trains_like_the_loaded_one(subset, tmp_path):
    from sklearn.pipeline import make_pipeline as mp

    data = load_bbbc021(subset, channels=("F-actin", "DNA", "beta-tubulin"))
    in_memory = mp(*_prepare()).fit_transform(data.images)
    cached, meta = cache_manifest(subset / "manifest.csv", tmp_path / "cells.npy",
                                  channels=["F-actin", "DNA", "beta-tubulin"],
                                  preprocessor=mp(*_prepare()), chunk_size=16)
    assert isinstance(cached, np.memmap) and len(meta) == 64
    np.testing.assert_allclose(np.asarray(cached), in_memory, atol=1e-6)
    y = np.full(64, "beta-tubulin")

    def fitted():
        return StatisticalCell(ReferenceVAE(random_state=0, **TINY),
                               ConditionalStructureVAE(random_state=0, **TINY))

    a = fitted().fit(cached, y)  # trains from the memory map, batch by batch
    b = fitted().fit(in_memory, y)
    np.testing.assert_allclose(a.transform(cached, structures=y),
                               b.transform(in_memory, structures=y), atol=1e-4)


def test_coupling_recovers_the_control_pattern_on_bbbc021():
    """DNA copy -> nucleus, F-actin copy -> cell body, blank and random -> neither."""
    from cellgen.analysis import differential_coupling, structure_coupling
    from cellgen.preprocessing import VoxelResampler

    data = load_bbbc021(BBBC021, channels=("F-actin", "DNA", "beta-tubulin"))
    idx = np.random.RandomState(0).choice(len(data.images), 100, replace=False)
    prepare = make_pipeline(IntensityNormalizer(), CellAligner(axis_channel=0, center_channel=1),
                            VoxelResampler(1.0, 2.0), PadCrop((32, 32)))
    X = prepare.fit_transform(data.images[idx])
    X, y, _ = add_control_structures(X, np.full(len(X), "beta-tubulin", dtype=object),
                                     random_state=0)
    model = ConditionalStructureVAE(n_latent=16, widths=(16, 32, 64), beta=0.05, lr=3e-3,
                                    max_epochs=12, n_elbo_samples=4, random_state=0,
                                    device="cpu").fit(X, y)
    c = structure_coupling(model, X, y, reference_names=["F-actin", "DNA"], n_swaps=5,
                           random_state=0)
    d = differential_coupling(c, membrane="F-actin", nucleus="DNA").set_index("structure")
    # c < 1: swapping that channel made the structure less likely (coupled).
    assert d.loc["control_dna", "c_nucleus"] < 0.5 < 0.9 < d.loc["control_dna", "c_membrane"]
    assert d.loc["control_membrane", "c_membrane"] < 0.5
    assert d.loc["control_membrane", "c_nucleus"] > 0.9
    assert d.loc["control_dna", "differential_coupling"] > 0.5
    assert d.loc["control_membrane", "differential_coupling"] < -0.5
    for control in ("control_blank", "control_random"):
        assert abs(d.loc[control, "differential_coupling"]) < 0.1
        assert abs(d.loc[control, "c_membrane"] - 1) < 0.1
        assert abs(d.loc[control, "c_nucleus"] - 1) < 0.1
