"""Latent walks, correlations with cell features and the β sweep (paper 4.2, 4.3)."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from cellgen import ConditionalStructureVAE, ReferenceVAE
from cellgen.analysis import beta_sweep, latent_feature_correlations, latent_walk
from cellgen.datasets import make_cells
from cellgen.plotting import plot_feature_correlations, plot_latent_walk, plot_rate_distortion
from cellgen.train import RestoreBestWeights

from .conftest import TINY


def test_walk_decodes_the_stated_codes(reference2d, cells2d):
    X, _, _ = cells2d
    Z = reference2d.transform(X[:, :2])
    images, steps = latent_walk(reference2d, [2, 0], Z=Z)
    assert images.shape == (2, 9, 2, 16, 16) and steps.shape == (2, 9)
    # Steps span -2..+2 SD of the dimension across the cells.
    np.testing.assert_allclose(steps[0, [0, -1]], [-2 * Z[:, 2].std(), 2 * Z[:, 2].std()])
    code = np.zeros((1, TINY["n_latent"]), dtype=np.float32)
    code[0, 2] = steps[0, 7]
    np.testing.assert_allclose(images[0, 7], reference2d.inverse_transform(code)[0], atol=1e-5)
    centre = reference2d.inverse_transform(np.zeros((1, TINY["n_latent"]), np.float32))[0]
    np.testing.assert_allclose(images[1, 4], centre, atol=1e-5)
    # Without Z, the prior's SD: the ends sit at exactly -2 and +2.
    _, prior_steps = latent_walk(reference2d, 1)
    np.testing.assert_allclose(prior_steps[0, [0, 4, 8]], [-2, 0, 2])


def test_walk_in_a_given_cell_for_the_conditional_model(conditional2d, cells2d):
    X, y, _ = cells2d
    images, _ = latent_walk(conditional2d, [0, 1, 2], n_steps=5, reference=X[:1, :2],
                            structures=y[0])
    assert images.shape == (3, 5, 1, 16, 16)
    code = np.zeros((1, TINY["n_latent"]), np.float32)
    code[0, 1] = 1.0
    expected = conditional2d.inverse_transform(code, reference=X[:1, :2], structures=y[0])
    np.testing.assert_allclose(images[1, 3], expected[0], atol=1e-5)
    with pytest.raises(ValueError, match="pass reference="):
        latent_walk(conditional2d, 0)


@pytest.mark.parametrize("kwargs, match", [
    (dict(dimensions=4), r"lie in \[0, 4\)"),
    (dict(dimensions=[0], n_steps=1), "n_steps must be"),
    (dict(dimensions=[0], span=0), "span must be"),
    (dict(dimensions=[0], Z=np.zeros((5, 3))), "Z must be"),
    (dict(dimensions=[0.5]), "must be integers"),
    (dict(dimensions=[0], structures="nucleoli"), "are for a conditional model"),
])
def test_walk_errors(reference2d, kwargs, match):
    with pytest.raises(ValueError, match=match):
        latent_walk(reference2d, **kwargs)


def test_correlations_known_answers():
    rng = np.random.default_rng(0)
    n = 200
    area, height = rng.random(n), rng.random(n)
    Z = pd.DataFrame({"z_a": np.log(area) * -3, "z_h": height ** 3, "noise": rng.random(n)})
    feats = pd.DataFrame({"area": area, "height": height, "phase": ["G1"] * n})
    rho, p = latent_feature_correlations(Z, feats, return_pvalues=True)
    assert list(rho.columns) == ["area", "height"]  # non-numeric columns ignored
    assert rho.loc["z_a", "area"] == pytest.approx(-1.0)
    assert rho.loc["z_h", "height"] == pytest.approx(1.0)
    assert abs(rho.loc["noise", "area"]) < 0.2 and p.loc["noise", "area"] > 0.01
    assert p.loc["z_h", "height"] < 1e-10
    # An independent computation of one entry.
    assert rho.loc["noise", "height"] == pytest.approx(
        stats.spearmanr(Z["noise"], height).statistic)
    sub = latent_feature_correlations(Z.to_numpy(), feats, dimensions=[1, 0])
    assert list(sub.index) == ["1", "0"]
    assert sub.loc["1", "height"] == pytest.approx(1.0)
    # One dimension against one feature: a 1 x 1 table, not a scalar's shape error.
    one, p1 = latent_feature_correlations(Z, feats[["height"]], dimensions=[2],
                                          return_pvalues=True)
    assert one.shape == (1, 1) and list(one.index) == ["noise"]
    expected = stats.spearmanr(Z["noise"], height)
    assert one.loc["noise", "height"] == pytest.approx(expected.statistic)
    assert p1.loc["noise", "height"] == pytest.approx(expected.pvalue)

    # A collapsed dimension and a constant feature are NaN; every other pair is as
    # scipy computes it pair by pair, also with missing feature values.
    Zc = Z.assign(z_a=0.0)
    fc = feats.assign(dose=0.0, height=np.where(np.arange(n) % 7 == 0, np.nan, height))
    rho_c, p_c = latent_feature_correlations(Zc, fc, return_pvalues=True)
    assert rho_c["dose"].isna().all() and rho_c.loc["z_a"].isna().all()
    for dim in ("z_h", "noise"):
        for feat in ("area", "height"):
            ok = fc[feat].notna()
            ref = stats.spearmanr(Zc.loc[ok, dim], fc.loc[ok, feat])
            assert rho_c.loc[dim, feat] == pytest.approx(ref.statistic)
            assert p_c.loc[dim, feat] == pytest.approx(ref.pvalue, rel=1e-6, abs=1e-12)

    # A missing latent value drops that cell from its own dimension only.
    Zn = Z.copy()
    Zn.iloc[::5, 0] = np.nan
    rho_n = latent_feature_correlations(Zn, feats)
    for dim in ("z_h", "noise"):
        assert rho_n.loc[dim, "area"] == pytest.approx(stats.spearmanr(Z[dim], area).statistic)
    ok = Zn["z_a"].notna()
    assert rho_n.loc["z_a", "height"] == pytest.approx(
        stats.spearmanr(Zn.loc[ok, "z_a"], height[ok]).statistic)


def test_correlations_recover_cell_size_on_synthetic_cells(reference2d, cells2d):
    # The reference embedding of even a tiny model tracks cell area: some
    # dimension correlates with it well beyond chance.
    X, _, meta = cells2d
    rho = latent_feature_correlations(reference2d.transform(X[:, :2]),
                                      meta[["cell_area", "nucleus_area"]])
    assert rho["cell_area"].abs().max() > 0.4


def test_correlation_errors():
    with pytest.raises(ValueError, match="has 3 cells but features has 2"):
        latent_feature_correlations(np.zeros((3, 2)), pd.DataFrame({"a": [1.0, 2.0]}))
    with pytest.raises(ValueError, match="no numeric column"):
        latent_feature_correlations(np.zeros((2, 2)), pd.DataFrame({"a": ["x", "y"]}))
    with pytest.raises(TypeError, match="DataFrame"):
        latent_feature_correlations(np.zeros((2, 2)), np.zeros((2, 2)))


def test_feature_correlations_pair_dataframes_by_index_label():
    rng = np.random.default_rng(0)
    area = rng.random(30)
    index = np.arange(100, 130)
    Z = pd.DataFrame({"z0": area, "z1": rng.random(30)}, index=index)
    features = pd.DataFrame({"area": area}, index=index)
    shuffled = features.sample(frac=1, random_state=0)
    assert latent_feature_correlations(Z, shuffled).loc["z0", "area"] == pytest.approx(1.0)
    # Plain arrays are paired by position.
    rho = latent_feature_correlations(Z.to_numpy(), shuffled)
    assert abs(rho.loc["0", "area"]) < 0.9
    with pytest.raises(ValueError, match="labels differ"):
        latent_feature_correlations(Z, features.set_axis(np.arange(30)))


@pytest.fixture(scope="module")
def sweep_data():
    X, y, _ = make_cells(120, shape=(16, 16), random_state=5)
    return X, y


def test_beta_sweep_trades_rate_for_distortion(sweep_data):
    X, _ = sweep_data
    vae = ReferenceVAE(random_state=0, **dict(TINY, max_epochs=4))
    sweep = beta_sweep(vae, X[:96, :2], X[96:, :2], [0.001, 1.0])
    assert sweep["beta"].tolist() == [0.001, 1.0]
    low, high = sweep.iloc[0], sweep.iloc[1]
    # A heavier KL weight buys a lower rate and pays in distortion.
    assert high["rate"] < 0.5 * low["rate"]
    assert high["distortion"] > low["distortion"]
    assert (sweep["rate"] >= 0).all() and (sweep["distortion"] > 0).all()
    assert high["n_effective"] <= low["n_effective"]
    fig = plot_rate_distortion(sweep)
    assert len(fig.axes[0].lines) == 1 and len(fig.axes[0].texts) == 2


def test_beta_sweep_keeps_the_epoch_of_the_best_unweighted_elbo(sweep_data):
    # The paper's beta study selects each model on the unweighted validation ELBO
    # (section 6.4), not on the beta-weighted objective the estimators train on.
    X, _ = sweep_data
    settings = dict(TINY, max_epochs=8, validation_fraction=0.25)
    sweep = beta_sweep(ReferenceVAE(random_state=0, **settings), X[:96, :2], X[96:, :2], [0.01])
    # The same fit with the estimators' own choice: the same history, another epoch kept.
    plain = ReferenceVAE(random_state=0, beta=0.01, **settings).fit(X[:96, :2])
    by_elbo = 1 + int(np.argmax(plain.history_["valid_elbo"]))
    assert by_elbo != 1 + int(np.argmin(plain.history_["valid_loss"]))  # the choices differ
    assert sweep["best_epoch"].tolist() == [by_elbo]
    # Without a validation split the last epoch is kept.
    sweep = beta_sweep(ReferenceVAE(random_state=0, **dict(settings, validation_fraction=0)),
                       X[:96, :2], X[96:, :2], [0.01])
    assert sweep["best_epoch"].tolist() == [8]


def test_a_restore_best_callback_replaces_the_choice_of_epoch(sweep_data):
    X = sweep_data[0][:96, :2]
    settings = dict(TINY, max_epochs=8, validation_fraction=0.25, beta=0.01, random_state=0)
    chosen = ReferenceVAE(**settings, callbacks=[
        ("restore_best", RestoreBestWeights("valid_elbo_best"))]).fit(X)
    best = 1 + int(np.argmax(chosen.history_["valid_elbo"]))
    assert best < 8
    # Training is deterministic, so a run stopped at that epoch has the same weights.
    stopped = ReferenceVAE(**dict(settings, max_epochs=best), callbacks=[
        ("restore_best", RestoreBestWeights(None))]).fit(X)
    np.testing.assert_allclose(chosen.transform(X), stopped.transform(X), rtol=1e-5, atol=1e-6)
    default = ReferenceVAE(**settings).fit(X)
    assert not np.allclose(default.transform(X), chosen.transform(X))


def test_beta_sweep_on_the_conditional_model(sweep_data):
    X, y = sweep_data
    model = ConditionalStructureVAE(random_state=0, **dict(TINY, max_epochs=1))
    sweep = beta_sweep(model, X[:96], X[96:], [0.05], fit_params={"structures": y[:96]},
                       score_params={"structures": y[96:]})
    assert len(sweep) == 1 and np.isfinite(sweep[["rate", "distortion", "elbo"]]).all().all()
    with pytest.raises(ValueError, match=r"betas must be values in \[0, 1\]"):
        beta_sweep(model, X[:96], X[96:], [2.0])


def test_walk_and_correlation_figures(reference2d):
    images, steps = latent_walk(reference2d, [0, 1, 2], n_steps=5)
    fig = plot_latent_walk(images, steps, dimension_names=["a", "b", "c"])
    assert len(fig.axes) == 15
    assert fig.axes[0].get_title() == f"{steps[0, 0]:+.2f}"
    with pytest.raises(ValueError, match="steps must have shape"):
        plot_latent_walk(images, steps[:, :2])
    # Labels and titles may also come as plot_image_grid's own keywords.
    fig = plot_latent_walk(images, row_labels=["a", "b", "c"], titles=None)
    assert len(fig.axes) == 15 and fig.axes[0].get_title() == ""
    with pytest.raises(TypeError, match="not both"):
        plot_latent_walk(images, dimension_names=["a", "b", "c"], row_labels=["a", "b", "c"])
    one = plot_latent_walk(images[:1], dimension_names="size")  # one name, not four letters
    assert len(one.axes) == 5
    rho = pd.DataFrame(np.eye(3)[:, :2], index=["z0", "z1", "z2"], columns=["f", "g"])
    fig = plot_feature_correlations(rho)
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["f", "g"]
