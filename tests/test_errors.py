"""One table of bad inputs across preprocessing, io and analyses: each fails with a clear error.

The estimators have their own table (tests/test_validation.py); this one covers the
other public entry points, asserting the exception type and that the message names
what was wrong.
"""

import numpy as np
import pandas as pd
import pytest
from sklearn.utils._param_validation import InvalidParameterError

from cellgen.analysis import (
    aggregate_profiles,
    drug_effects,
    energy_distance_test,
    latent_feature_correlations,
    latent_walk,
    moa_accuracy,
)
from cellgen.io import load_manifest, read_image, save_cells, write_ome_tiff
from cellgen.preprocessing import (
    CellAligner,
    ImageFeatures,
    IntensityNormalizer,
    MaxProjector,
    PadCrop,
    VoxelResampler,
    add_control_structures,
)

GOOD = np.random.default_rng(0).random((4, 3, 16, 16), dtype=np.float32)

CASES = [
    ("3 axes", lambda: IntensityNormalizer().fit(np.zeros((3, 16, 16))), ValueError,
     "must have 4 axes"),
    ("NaN", lambda: CellAligner().fit(np.full((2, 3, 8, 8), np.nan)), ValueError,
     "NaN or infinite"),
    ("empty", lambda: PadCrop((8, 8)).fit(np.zeros((0, 3, 8, 8))), ValueError, "is empty"),
    ("strings", lambda: IntensityNormalizer().fit(np.full((2, 3, 8, 8), "a")), TypeError,
     "numeric array"),
    ("complex", lambda: MaxProjector().fit(np.zeros((2, 3, 4, 8, 8), complex)), TypeError,
     "real numbers"),
    ("unknown method", lambda: IntensityNormalizer(method="max").fit(GOOD),
     InvalidParameterError, "'method' parameter"),
    ("percentiles reversed",
     lambda: IntensityNormalizer(method="percentile", percentiles=(99, 1)).fit_transform(GOOD),
     ValueError, "low < high"),
    ("channel out of range", lambda: CellAligner(axis_channel=5).fit(GOOD), ValueError,
     "axis_channel=5 is out of range"),
    ("channels differ from fit", lambda: CellAligner().fit(GOOD).transform(GOOD[:, :2]),
     ValueError, "2 channels but 3 were expected"),
    ("negative voxel", lambda: VoxelResampler(voxel_size=-1).fit(GOOD), InvalidParameterError,
     "voxel_size"),
    ("zero size", lambda: PadCrop((0, 8)).fit(GOOD), ValueError, "positive integers"),
    ("project 2D", lambda: MaxProjector().fit(GOOD), ValueError, "already 2D"),
    ("bad n_jobs at fit", lambda: ImageFeatures(n_jobs="two").fit(GOOD), InvalidParameterError,
     "'n_jobs' parameter"),
    ("feature names", lambda: ImageFeatures(channels=["a"]).fit(GOOD), ValueError,
     "1 channels but X has 3"),
    ("unknown control", lambda: add_control_structures(GOOD, controls=["bogus"]), ValueError,
     "valid controls are"),
    ("labels length", lambda: add_control_structures(GOOD, np.array(["a"] * 3)), ValueError,
     "3 labels but the images hold 4 cells"),
    ("walk of a non-model", lambda: latent_walk(object(), 0), TypeError, "n_latent"),
    ("1D embedding", lambda: latent_feature_correlations(np.zeros(3), pd.DataFrame({"a": [1]})),
     ValueError, "must be 2D"),
    ("profiles length", lambda: aggregate_profiles(np.zeros((3, 2)),
                                                   pd.DataFrame({"plate": [1, 1]})),
     ValueError, "3 rows but metadata has 2"),
    ("profiles not from aggregate_profiles", lambda: moa_accuracy(pd.DataFrame({"x": [1.0]})),
     ValueError, "pass features= explicitly"),
    ("feature counts differ", lambda: energy_distance_test(np.zeros((3, 2)), np.zeros((3, 3))),
     ValueError, "same number of features"),
    ("NaN embedding", lambda: drug_effects(np.full((4, 2), np.nan),
                                           pd.DataFrame({"compound": ["DMSO"] * 2 + ["x"] * 2})),
     ValueError, "NaN or infinite"),
    ("missing image", lambda: read_image("no-such-image.ome.tif"), FileNotFoundError,
     "no-such-image"),
    ("one 2D plane", lambda: write_ome_tiff("never.ome.tif", np.zeros((8, 8))), ValueError,
     "3 axes"),
    ("missing manifest", lambda: load_manifest("no-such-manifest.csv"), FileNotFoundError,
     "no-such-manifest"),
    ("channel names", lambda: save_cells("never", GOOD, channel_names=["a"]), ValueError,
     "channel"),
]


@pytest.mark.parametrize("what, call, error, match", CASES, ids=[c[0] for c in CASES])
def test_bad_input_fails_clearly(what, call, error, match, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing may be written anywhere else
    with pytest.raises(error, match=match):
        call()
    assert list(tmp_path.iterdir()) == []  # and nothing half-written stays behind
