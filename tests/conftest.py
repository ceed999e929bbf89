"""Shared fixtures: tiny synthetic cells and tiny fitted models (CPU, seconds)."""

import os
from pathlib import Path

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")

from cellgen import ConditionalStructureVAE, ReferenceVAE, StatisticalCell  # noqa: E402
from cellgen.datasets import make_cells  # noqa: E402

#: Real data kept beside the project (never copied into it); tests that need it skip
#: where it is absent. ``$CELLGEN_SHARED_DATA`` points elsewhere.
SHARED_DATA = Path(os.environ.get("CELLGEN_SHARED_DATA")
                   or Path(__file__).resolve().parents[1].parent / "shared" / "data")

#: Cheap settings for every estimator in the tests: 16x16 images, two blocks.
TINY = dict(n_latent=4, widths=(8, 16), max_epochs=2, batch_size=16, lr=1e-3, device="cpu")


@pytest.fixture(scope="session")
def cells2d():
    X, y, meta = make_cells(96, shape=(16, 16), random_state=0)
    return X, y, meta


@pytest.fixture(scope="session")
def cells3d():
    X, y, meta = make_cells(32, ndim=3, shape=(8, 16, 16), random_state=0)
    return X, y, meta


@pytest.fixture(scope="session")
def reference2d(cells2d):
    X, _, _ = cells2d
    return ReferenceVAE(random_state=0, **TINY).fit(X[:, :2])


@pytest.fixture(scope="session")
def conditional2d(cells2d):
    X, y, _ = cells2d
    return ConditionalStructureVAE(random_state=0, **TINY).fit(X, y)


@pytest.fixture(scope="session")
def statcell2d(cells2d):
    X, y, _ = cells2d
    return StatisticalCell(ReferenceVAE(random_state=0, **TINY),
                           ConditionalStructureVAE(random_state=1, **TINY)).fit(X, y)


@pytest.fixture(scope="session")
def statcell3d(cells3d):
    X, y, _ = cells3d
    return StatisticalCell(ReferenceVAE(random_state=0, **TINY),
                           ConditionalStructureVAE(random_state=1, **TINY)).fit(X, y)


@pytest.fixture
def rng():
    return np.random.RandomState(0)
