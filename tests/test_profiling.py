"""Tests for treatment profiles, MoA accuracy (NSC/NSCB) and ImageFeatures."""


import numpy as np
import pandas as pd
import pytest
from sklearn.preprocessing import StandardScaler

from cellgen.analysis import aggregate_profiles, moa_accuracy
from cellgen.preprocessing import ImageFeatures, IntensityNormalizer

from .conftest import SHARED_DATA

SHARED = SHARED_DATA
BBBC021 = SHARED / "bbbc021"

# (compound, concentration, moa, angle in degrees, batch). Every treatment lies on the
# unit circle at its angle, so cosine similarity ranks neighbours by angular distance.
# C2 at concentration 2 sits at 5 degrees, among the m1 treatments.
TREATMENTS = [
    ("A1", 1, "m1", 0, "b1"), ("A1", 2, "m1", 2, "b1"),
    ("A2", 1, "m1", 10, "b1"), ("A2", 2, "m1", 12, "b1"),
    ("B1", 1, "m2", 120, "b2"), ("B1", 2, "m2", 122, "b2"),
    ("B2", 1, "m2", 130, "b3"), ("B2", 2, "m2", 132, "b3"),
    ("C1", 1, "m3", 240, "b1"), ("C1", 2, "m3", 242, "b1"),
    ("C2", 1, "m3", 250, "b1"), ("C2", 2, "m3", 5, "b3"),
    ("DMSO", 0, "DMSO", 1, "b3"),
]


def _cells(treatments=TREATMENTS, seed=0):
    """Three cells in each of two wells per treatment; each well's mean is the treatment's
    point times a random scale (cosine ignores the scale)."""
    rng = np.random.RandomState(seed)
    rows, emb = [], []
    for t, (comp, conc, moa, angle, batch) in enumerate(treatments):
        v = np.array([np.cos(np.radians(angle)), np.sin(np.radians(angle))])
        for w in range(2):
            scale, d = rng.uniform(1, 3), rng.normal(size=2)
            for cell in (v + d, v - d, v):
                emb.append(scale * cell)
                rows.append(dict(compound=comp, concentration=conc, moa=moa, batch=batch,
                                 plate=f"p{w}", well=f"w{t}"))
    return np.array(emb), pd.DataFrame(rows)


@pytest.fixture(scope="module")
def profiles():
    emb, meta = _cells()
    return aggregate_profiles(emb, meta)


def test_aggregate_structure(profiles):
    assert len(profiles) == len(TREATMENTS)
    assert list(profiles.columns[:6]) == ["compound", "concentration", "moa", "batches",
                                          "n_wells", "n_cells"]
    assert profiles.attrs["features"] == ["f0", "f1"]
    assert (profiles["n_wells"] == 2).all() and (profiles["n_cells"] == 6).all()
    row = profiles.set_index(["compound", "concentration"]).loc[("C2", 2)]
    assert row["batches"] == ("b3",)
    angle = np.degrees(np.arctan2(row["f1"], row["f0"]))
    assert angle == pytest.approx(5.0)


def test_nsc_known_answer(profiles):
    acc, table = moa_accuracy(profiles, holdout="NSC")
    # m1 treatments all find C2@2 (m3) first; C2@2 finds A1@2 (m1); the rest are right.
    assert acc == pytest.approx(7 / 12)
    assert len(table) == 12 and "DMSO" not in set(table["compound"])
    assert "DMSO" not in set(table["neighbour_compound"])
    wrong = table.loc[~table["correct"], ["compound", "concentration"]]
    assert sorted(map(tuple, wrong.to_numpy())) == [("A1", 1), ("A1", 2), ("A2", 1),
                                                   ("A2", 2), ("C2", 2)]
    assert (table["compound"] != table["neighbour_compound"]).all()


def test_no_holdout_uses_same_compound(profiles):
    acc, table = moa_accuracy(profiles, holdout="none")
    assert acc == pytest.approx(11 / 12)
    a11 = table.set_index(["compound", "concentration"]).loc[("A1", 1)]
    assert a11["neighbour_compound"] == "A1" and a11["correct"]


def test_nscb_known_answer(profiles):
    acc, table = moa_accuracy(profiles, holdout="NSCB")
    # C1 and C2@1 share batch b1, so the C treatments lose their m3 neighbours.
    assert acc == pytest.approx(4 / 12)
    c11 = table.set_index(["compound", "concentration"]).loc[("C1", 1)]
    assert c11["neighbour_compound"] == "B2" and not c11["correct"]
    assert table.attrs["n_dropped"] == 0
    both = moa_accuracy(profiles, holdout="both")
    assert both["NSC"][0] == pytest.approx(7 / 12) and both["NSCB"][0] == pytest.approx(4 / 12)


def test_dmso_exclusion(profiles):
    _, table = moa_accuracy(profiles, exclude=())
    assert len(table) == 13
    # DMSO at 1 degree is now A1@1's nearest other compound.
    assert table.set_index(["compound", "concentration"]).loc[("A1", 1), "neighbour_compound"] \
        == "DMSO"
    # A bare string names one MoA, as the tuple does.
    as_string, t_string = moa_accuracy(profiles, exclude="DMSO")
    as_tuple, t_tuple = moa_accuracy(profiles, exclude=("DMSO",))
    assert as_string == as_tuple and len(t_string) == len(t_tuple) == 12


def test_treatments_without_moa_are_left_out(profiles):
    # An unannotated treatment at 1 degree would otherwise be A1@1's neighbour.
    extra = profiles.iloc[[0]].assign(compound="U", moa=np.nan, f0=np.cos(np.radians(1.0)),
                                      f1=np.sin(np.radians(1.0)))
    with_u = pd.concat([profiles, extra], ignore_index=True)
    acc, table = moa_accuracy(with_u, features=["f0", "f1"])
    assert acc == pytest.approx(7 / 12) and len(table) == 12
    assert "U" not in set(table["compound"]) | set(table["neighbour_compound"])
    # exclude=None keeps the controls, as exclude=() does.
    assert len(moa_accuracy(profiles, exclude=None)[1]) == 13


def test_nothing_to_predict_gives_nan(profiles):
    acc, table = moa_accuracy(profiles[profiles["moa"] == "DMSO"], features=["f0", "f1"])
    assert np.isnan(acc) and len(table) == 0 and "correct" in table.columns


def test_batches_as_arrays_and_keep_repeating_a_treatment_column():
    emb, meta = _cells()
    by_treatment = aggregate_profiles(emb, meta, keep=("moa", "compound"))
    assert list(by_treatment.columns[:4]) == ["compound", "concentration", "moa", "batches"]
    reference = moa_accuracy(by_treatment, holdout="NSCB")
    # The batches as arrays, as groupby(...).unique() gives them.
    by_treatment["batches"] = [np.array(b) for b in by_treatment["batches"]]
    assert moa_accuracy(by_treatment, holdout="NSCB")[0] == pytest.approx(reference[0])


def test_euclidean_neighbours_survive_a_large_offset():
    # Profiles far from the origin with a small spread, as unscaled features can be:
    # the neighbours must be those of the exact distances.
    from scipy.spatial.distance import cdist

    rng = np.random.default_rng(0)
    n = 30
    X = 1e6 + 0.05 * rng.standard_normal((n, 8))
    prof = pd.DataFrame(X, columns=[f"f{i}" for i in range(8)]).assign(
        compound=[f"c{i}" for i in range(n)], moa=[f"m{i % 3}" for i in range(n)])
    _, table = moa_accuracy(prof, metric="euclidean", features=[f"f{i}" for i in range(8)],
                            holdout="none")
    D = cdist(X, X)
    np.fill_diagonal(D, np.inf)
    expected = [f"c{j}" for j in D.argmin(axis=1)]
    assert table["neighbour_compound"].tolist() == expected


def test_nscb_drops_treatments_without_neighbour():
    prof = pd.DataFrame({"compound": ["a", "b", "c"], "moa": ["m1", "m1", "m2"],
                         "batches": [("x",), ("x",), ("x", "y")],
                         "f0": [1.0, 1.0, 0.0], "f1": [0.0, 0.1, 1.0]})
    acc, table = moa_accuracy(prof, holdout="NSCB", features=["f0", "f1"])
    assert np.isnan(acc) and table.attrs["n_dropped"] == 3
    assert not table["has_neighbour"].any()
    prof["batches"] = [("x",), ("z",), ("x", "z")]
    acc, table = moa_accuracy(prof, holdout="NSCB", features=["f0", "f1"])
    assert table.attrs["n_dropped"] == 1 and acc == pytest.approx(1.0)


def test_whitening_makes_controls_white():
    rng = np.random.RandomState(0)
    n = 400
    A = np.array([[2.0, 0.0, 0.0], [1.5, 0.5, 0.0], [0.0, 0.3, 3.0]])
    emb = rng.normal(size=(n, 3)) @ A + 5.0
    # Each control cell is its own treatment in its own well, so profiles are cells.
    meta = pd.DataFrame({"compound": ["DMSO"] * n, "concentration": np.arange(n),
                         "moa": "DMSO", "batch": "b", "plate": "p",
                         "well": [f"w{i}" for i in range(n)]})
    prof = aggregate_profiles(emb, meta, whiten="control", shrinkage=1e-9)
    Z = prof[prof.attrs["features"]].to_numpy()
    np.testing.assert_allclose(Z.mean(0), 0.0, atol=1e-8)
    np.testing.assert_allclose(np.cov(Z, rowvar=False), np.eye(3), atol=1e-6)


def test_mean_sd_and_dataframe_input():
    emb = pd.DataFrame({"a": [0.0, 2.0, 4.0], "b": [1.0, 1.0, 1.0]})
    meta = pd.DataFrame({"compound": "x", "concentration": 1.0, "moa": "m", "batch": ["b1", "b2",
                         "b2"], "plate": "p", "well": ["w1", "w1", "w2"]})
    prof = aggregate_profiles(emb, meta, method="mean+sd")
    assert prof.attrs["features"] == ["a", "b", "a_sd", "b_sd"]
    # Wells: w1 mean (1, 1) sd (1, 0); w2 mean (4, 1) sd (0, 0); median of two wells.
    np.testing.assert_allclose(prof.loc[0, ["a", "b", "a_sd", "b_sd"]].to_numpy(float),
                               [2.5, 1.0, 0.5, 0.0])
    assert prof.loc[0, "batches"] == ("b1", "b2")


def test_errors(profiles):
    emb, meta = _cells()
    with pytest.raises(ValueError, match="rows but metadata has"):
        aggregate_profiles(emb[:-1], meta)
    with pytest.raises(ValueError, match="available columns"):
        aggregate_profiles(emb, meta.drop(columns="plate"))
    bad = meta.copy()
    bad.loc[0, "moa"] = "other"
    with pytest.raises(ValueError, match="not constant within treatment"):
        aggregate_profiles(emb, bad)
    with pytest.raises(ValueError, match="method must be"):
        aggregate_profiles(emb, meta, method="median")
    with pytest.raises(ValueError, match="no control cell"):
        aggregate_profiles(emb, meta, whiten="control", control=("compound", "PBS"))
    with pytest.raises(ValueError, match="NaN"):
        aggregate_profiles(np.full_like(emb, np.nan), meta)
    with pytest.raises(ValueError, match="holdout must be"):
        moa_accuracy(profiles, holdout="NSCX")
    with pytest.raises(ValueError, match="pass features="):
        moa_accuracy(pd.DataFrame(profiles))
    with pytest.raises(ValueError, match="available columns"):
        moa_accuracy(profiles, moa="mechanism")


# ---------------------------------------------------------------------------- ImageFeatures
def _feature(F, names, name):
    return F[:, list(names).index(name)]


def test_image_features_known_answers():
    X = np.zeros((3, 2, 20, 20), np.float32)
    X[0] = 0.5                      # uniform
    X[1, :, 5:15, 5:15] = 1.0      # a bright square
    X[2, :, 5:15, 5:15] = 2.0      # the same, brighter
    est = ImageFeatures(channels=["a", "b"]).fit(X)
    F, names = est.transform(X), est.get_feature_names_out()
    assert F.shape == (3, 32) and np.isfinite(F).all()
    assert len(set(names)) == len(names) and names[0] == "a_mean"
    for name in ("a_sd", "a_gradient_mean", "a_laplacian_var", "a_glcm_contrast",
                 "a_otsu_fraction"):
        assert _feature(F, names, name)[0] == 0.0
    assert _feature(F, names, "a_p10")[0] == _feature(F, names, "a_p90")[0] == 0.5
    mean = _feature(F, names, "a_mean")
    assert mean[2] > mean[1] > 0
    assert _feature(F, names, "a_otsu_fraction")[1] == pytest.approx(0.25)
    # A centred square: centre of mass at the image centre.
    assert _feature(F, names, "a_centroid_distance")[1] == pytest.approx(0.0, abs=1e-9)
    # Texture is computed on each cell's own range: brightness does not change it.
    np.testing.assert_allclose(_feature(F, names, "a_glcm_contrast")[1],
                               _feature(F, names, "a_glcm_contrast")[2])


def test_image_features_centroid_and_radial():
    X = np.zeros((1, 1, 11, 11), np.float32)
    X[0, 0, 5, 8] = 1.0             # 3 pixels right of the centre (5, 5)
    est = ImageFeatures().fit(X)
    F, names = est.transform(X), est.get_feature_names_out()
    assert _feature(F, names, "ch0_centroid_distance")[0] == pytest.approx(3.0)
    assert _feature(F, names, "ch0_radial_mean")[0] == pytest.approx(0.0)


def test_image_features_3d_pandas_and_jobs():
    rng = np.random.RandomState(0)
    X = rng.rand(5, 2, 4, 12, 12).astype(np.float32)
    F = ImageFeatures().fit_transform(X)
    assert F.shape == (5, 32) and np.isfinite(F).all()
    np.testing.assert_allclose(ImageFeatures(n_jobs=2).fit_transform(X), F)
    df = ImageFeatures(channels=["x", "y"]).set_output(transform="pandas").fit_transform(X)
    assert isinstance(df, pd.DataFrame) and df.columns[-1] == "y_glcm_energy"
    with pytest.raises(ValueError, match="channels"):
        ImageFeatures(channels=["x"]).fit(X)
    with pytest.raises(ValueError):
        ImageFeatures().fit(X).transform(X[:, :1])


@pytest.mark.skipif(not (BBBC021 / "manifest.csv").is_file(),
                    reason="shared BBBC021 data not available")
def test_bbbc021_profiling_above_chance():
    from cellgen.datasets import load_bbbc021

    data = load_bbbc021(BBBC021)
    Xn = IntensityNormalizer().fit_transform(data.images)
    F = StandardScaler().fit_transform(ImageFeatures().fit_transform(Xn))
    prof = aggregate_profiles(F, data.metadata)
    res = moa_accuracy(prof, holdout="both")
    n_moa = prof["moa"].nunique() - 1
    for acc, table in res.values():
        assert 0.0 <= acc <= 1.0
        assert len(table) == (prof["moa"] != "DMSO").sum()
    # Chance is about 1 / 12; simple features reach about a third.
    assert res["NSC"][0] > 2.5 / n_moa
