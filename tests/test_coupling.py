"""Coupling of structures to reference channels (Eq. 4 and 5) and its plots."""

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.frozen import FrozenEstimator

from cellgen import ConditionalStructureVAE, ReferenceVAE, StatisticalCell
from cellgen.analysis import StructureCoupling, differential_coupling, structure_coupling
from cellgen.analysis._coupling import _swap_partners
from cellgen.datasets import make_cells, structure_ground_truth
from cellgen.plotting import plot_coupling, plot_differential_coupling

NAMES = ["membrane", "DNA"]


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    # On a shared 2-core machine torch's default threads spin against each other and
    # the known-answer fit went from 12 s to over 6 minutes; one thread is restored after.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ---------------------------------------------------------------- swap bookkeeping
@pytest.mark.parametrize("n_swaps", [1, 3, 10])
def test_partners_share_structure_and_are_never_self(n_swaps):
    labels = np.array(["a"] * 5 + ["b"] * 2 + ["c"] * 12, dtype=object)
    labels = labels[np.random.RandomState(0).permutation(len(labels))]
    partners = _swap_partners(labels, n_swaps, random_state=0)
    assert partners.shape == (len(labels), n_swaps)
    assert (labels[partners] == labels[:, None]).all()
    assert (partners != np.arange(len(labels))[:, None]).all()
    for i, row in enumerate(partners):
        # Without replacement whenever the structure has enough other cells.
        others = (labels == labels[i]).sum() - 1
        if others >= n_swaps:
            assert len(set(row)) == n_swaps
        else:
            # Every other cell, each used as often as n_swaps allows.
            counts = np.bincount(row, minlength=len(labels))[labels == labels[i]]
            counts = np.delete(counts, np.flatnonzero(np.flatnonzero(labels == labels[i]) == i))
            assert len(counts) == others and counts.min() >= 1
            assert counts.max() - counts.min() <= 1


def test_partners_cover_the_other_cells():
    labels = np.array(["a"] * 4, dtype=object)
    partners = _swap_partners(labels, 3, random_state=0)
    for i in range(4):
        assert sorted(partners[i]) == sorted(set(range(4)) - {i})


def test_single_cell_structure_is_named():
    labels = np.array(["a", "a", "lonely"], dtype=object)
    with pytest.raises(ValueError, match="'lonely'"):
        _swap_partners(labels, 2)


# ---------------------------------------------------------------- Eq. 4 with a real model
@pytest.fixture(scope="module")
def few(cells2d):
    """Three cells of each structure: every structure can swap, and scoring stays cheap."""
    X, y, _ = cells2d
    keep = pd.Series(y).groupby(y).cumcount().to_numpy() < 3
    return X[keep], y[keep]


@pytest.fixture(scope="module")
def coupling2d(conditional2d, few):
    X, y = few
    return structure_coupling(conditional2d, X, y, reference_names=NAMES, n_swaps=3,
                              random_state=0, return_partners=True)


def test_coupling_table(coupling2d, few):
    X, y = few
    frame, partners = coupling2d
    assert len(frame) == 2 * len(X)
    assert list(frame.columns) == ["cell", "structure", "reference", "elbo", "elbo_swapped",
                                   "coupling"]
    assert set(frame["reference"]) == set(NAMES)
    np.testing.assert_array_equal(frame.groupby("cell")["structure"].first(), y)
    np.testing.assert_allclose(frame["coupling"], frame["elbo"] / frame["elbo_swapped"])
    assert (frame["elbo"] < 0).all()
    assert (y[partners] == y[:, None]).all()
    assert (partners != np.arange(len(X))[:, None]).all()


def test_coupling_matches_manual_swap(conditional2d, few, coupling2d):
    X, y = few
    frame, partners = coupling2d
    elbo = conditional2d.score_samples(X, y)
    swapped = []
    for k in range(partners.shape[1]):
        Xs = X.copy()
        Xs[:, 1] = X[partners[:, k], 1]
        swapped.append(conditional2d.score_samples(Xs, y))
    expected = elbo / np.mean(swapped, axis=0)
    got = frame[frame["reference"] == "DNA"].sort_values("cell")["coupling"].to_numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_statistical_cell_uses_its_structure_model(statcell2d, few):
    X, y = few
    a = structure_coupling(statcell2d, X, y, n_swaps=2, random_state=0)
    b = structure_coupling(statcell2d.structure_model_, X, y, n_swaps=2, random_state=0)
    assert sorted(a["reference"].unique()) == ["ref0", "ref1"]
    pd.testing.assert_frame_equal(a, b)


def test_coupling_is_reproducible(conditional2d, few):
    X, y = few
    a = structure_coupling(conditional2d, X, y, n_swaps=1, random_state=3)
    b = structure_coupling(conditional2d, X, y, n_swaps=1, random_state=3)
    pd.testing.assert_frame_equal(a, b)


def test_coupling_errors(conditional2d, cells2d):
    X, y, _ = cells2d
    with pytest.raises(NotFittedError):
        structure_coupling(ConditionalStructureVAE(), X, y)
    with pytest.raises(NotFittedError):
        structure_coupling(StatisticalCell(), X, y)
    # A fitted model of the wrong kind is a TypeError, not "not fitted yet".
    reference = ReferenceVAE(n_latent=2, widths=(8,), max_epochs=1, batch_size=8,
                             random_state=0).fit(X[:, :2])
    with pytest.raises(TypeError, match="got ReferenceVAE .*reference channels alone"):
        structure_coupling(reference, X, y)
    with pytest.raises(TypeError, match="got str"):
        structure_coupling("model", X, y)
    from sklearn.pipeline import make_pipeline

    from cellgen.preprocessing import IntensityNormalizer

    with pytest.raises(TypeError, match=r"got Pipeline .*pipe\[-1\]"):
        structure_coupling(make_pipeline(IntensityNormalizer(), conditional2d), X, y)
    lonely = y.astype(object)
    lonely[0] = "only_me"
    with pytest.raises(ValueError, match="'only_me'"):
        structure_coupling(conditional2d, X, lonely)
    with pytest.raises(ValueError, match="reference_names"):
        structure_coupling(conditional2d, X, y, reference_names=["membrane"])
    with pytest.raises(ValueError, match="n_swaps"):
        structure_coupling(conditional2d, X, y, n_swaps=0)


def test_beta_weights_the_two_elbo_terms(conditional2d, few):
    X, y = few
    kw = dict(reference_names=NAMES, n_swaps=2, random_state=0)
    plain = structure_coupling(conditional2d, X, y, **kw)
    rec_only = structure_coupling(conditional2d, X, y, beta=0.0, **kw)
    kl_only = structure_coupling(conditional2d, X, y, beta=1.0, **kw)
    # Eq. 3 at beta 0 and 1 keeps one term each; together they are the plain ELBO.
    np.testing.assert_allclose(rec_only["elbo"] + kl_only["elbo"], plain["elbo"], rtol=1e-5)
    np.testing.assert_allclose(rec_only["elbo_swapped"] + kl_only["elbo_swapped"],
                               plain["elbo_swapped"], rtol=1e-5)
    # The KL term read off the posterior, independently of cellgen's arithmetic.
    mu, logvar = conditional2d.encode(X, y)
    sd = torch.as_tensor(logvar, dtype=torch.float64).mul(0.5).exp()
    posterior = torch.distributions.Normal(torch.as_tensor(mu, dtype=torch.float64), sd)
    prior = torch.distributions.Normal(0.0, 1.0)
    kl = torch.distributions.kl_divergence(posterior, prior).sum(1).numpy()
    own = kl_only[kl_only["reference"] == "DNA"].sort_values("cell")["elbo"]
    np.testing.assert_allclose(own, -kl, rtol=1e-5)
    # beta = 0.5 halves both ELBOs, so the ratio is the plain one.
    half = structure_coupling(conditional2d, X, y, beta=0.5, **kw)
    np.testing.assert_allclose(half["coupling"], plain["coupling"], rtol=1e-6)
    model_beta = structure_coupling(conditional2d, X, y, beta="model", **kw)
    given = structure_coupling(conditional2d, X, y, beta=conditional2d.beta, **kw)
    pd.testing.assert_frame_equal(model_beta, given)
    assert not np.allclose(rec_only["coupling"], kl_only["coupling"])


def test_beta_model_is_the_fitted_beta(conditional2d, few):
    import copy

    X, y = few
    model = copy.deepcopy(conditional2d)
    before = structure_coupling(model, X, y, n_swaps=2, beta="model", random_state=0)
    model.set_params(beta=0.9)  # not refitted: still the model trained at its own beta
    after = structure_coupling(model, X, y, n_swaps=2, beta="model", random_state=0)
    pd.testing.assert_frame_equal(before, after)


@pytest.mark.parametrize("beta", [-0.1, 1.5, "paper", True, float("nan")])
def test_beta_must_be_none_model_or_in_unit_interval(conditional2d, few, beta):
    X, y = few
    with pytest.raises(ValueError, match="beta must be None, \"model\" or a number in \\[0, 1\\]"):
        structure_coupling(conditional2d, X, y, n_swaps=1, beta=beta)
    with pytest.raises(ValueError, match="beta must be"):
        StructureCoupling(conditional2d, beta=beta).fit(X)


# ---------------------------------------------------------------- Eq. 5 arithmetic
def _hand_made():
    # Two structures, membrane-coupled "m" (c_m < 1) and nucleus-coupled "n".
    c = {0: (0.5, 1.0), 1: (0.6, 1.0), 2: (1.0, 0.25), 3: (1.0, 0.5), 4: (0.8, 0.8)}
    structure = {0: "m", 1: "m", 2: "n", 3: "n", 4: "n"}
    rows = [dict(cell=i, structure=structure[i], reference=r, coupling=v)
            for i, (cm, cn) in c.items() for r, v in (("membrane", cm), ("DNA", cn))]
    return pd.DataFrame(rows)


def test_differential_coupling_arithmetic():
    d = differential_coupling(_hand_made()).set_index("structure")
    per_m = [(0.5 - 1) / 1.5, (0.6 - 1) / 1.6]
    per_n = [0.75 / 1.25, 0.5 / 1.5, 0.0]
    assert d.loc["m", "n_cells"] == 2 and d.loc["n", "n_cells"] == 3
    assert d.loc["m", "differential_coupling"] == pytest.approx(np.mean(per_m))
    assert d.loc["n", "differential_coupling"] == pytest.approx(np.mean(per_n))
    assert d.loc["n", "c_membrane"] == pytest.approx(2.8 / 3)
    assert d.loc["n", "c_nucleus"] == pytest.approx(1.55 / 3)
    sem = np.std(per_n, ddof=1) / np.sqrt(3)
    assert d.loc["n", "sem"] == pytest.approx(sem)
    # A t interval with 2 degrees of freedom: t(0.975, 2) = 4.302653.
    assert d.loc["n", "ci_high"] - d.loc["n", "ci_low"] == pytest.approx(2 * 4.302653 * sem)


def test_differential_coupling_with_a_reference_of_nan_couplings():
    # Cells without a swap partner have NaN couplings; a reference that is NaN for
    # every cell of the table gives NaN d, not a KeyError.
    c = pd.DataFrame({"cell": [0, 0, 1, 1, 2, 2], "structure": ["a"] * 4 + ["b"] * 2,
                      "reference": ["membrane", "DNA"] * 3,
                      "coupling": [np.nan, 1.0, np.nan, 0.9, np.nan, 0.8]})
    d = differential_coupling(c).set_index("structure")
    assert d["n_cells"].tolist() == [2, 1]
    assert d["differential_coupling"].isna().all()
    assert d.loc["a", "c_nucleus"] == pytest.approx(0.95)


def test_differential_coupling_by_metadata_and_pooled():
    c = _hand_made()
    meta = pd.DataFrame({"cell_cycle_phase": ["i", "x", "i", "i", "x"]})
    d = differential_coupling(c, by=("structure", "cell_cycle_phase"), metadata=meta)
    assert d[["structure", "cell_cycle_phase"]].values.tolist() == [
        ["m", "i"], ["m", "x"], ["n", "i"], ["n", "x"]]
    assert d["n_cells"].tolist() == [1, 1, 2, 1]
    row = d[(d.structure == "n") & (d.cell_cycle_phase == "i")]
    assert row["differential_coupling"].item() == pytest.approx((0.6 + 1 / 3) / 2)
    pooled = differential_coupling(c, by=())
    assert pooled["n_cells"].item() == 5


def test_differential_coupling_errors():
    c = _hand_made()
    with pytest.raises(ValueError, match="nucleus='nuc'"):
        differential_coupling(c, nucleus="nuc")
    with pytest.raises(ValueError, match="membrane='actin'"):
        differential_coupling(c, membrane="actin")
    with pytest.raises(ValueError, match="metadata"):
        differential_coupling(c, by=("cell_cycle_phase",))
    with pytest.raises(ValueError, match="rows"):
        differential_coupling(c, by=("phase",), metadata=pd.DataFrame({"phase": ["i"] * 2}))
    with pytest.raises(TypeError):
        differential_coupling(c.to_dict())


# ---------------------------------------------------------------- several fits
def test_several_models_score_each_on_shared_partners(conditional2d, statcell2d, few):
    X, y = few
    kw = dict(reference_names=NAMES, n_swaps=2, random_state=4)
    both = structure_coupling([conditional2d, statcell2d], X, y, **kw)
    assert list(both.columns) == ["model", "cell", "structure", "reference", "elbo",
                                  "elbo_swapped", "coupling"]
    # Each model's rows are exactly what that model gives alone with the same partners;
    # a StatisticalCell (which reads its own channels) and a bare model mix.
    for k, model in enumerate([conditional2d, statcell2d]):
        alone = structure_coupling(model, X, y, **kw)
        rows = both[both["model"] == k].drop(columns="model").reset_index(drop=True)
        pd.testing.assert_frame_equal(rows, alone)
    # Two seeds of a model do not agree exactly, so the spread below is not trivially zero.
    assert not np.allclose(both[both.model == 0]["coupling"], both[both.model == 1]["coupling"])


def test_differential_coupling_over_models_averages_cells_and_reports_spread():
    one = _hand_made()
    other = one.assign(coupling=one["coupling"] * np.where(one["reference"] == "DNA", 0.5, 1.0))
    two = pd.concat([one.assign(model=0), other.assign(model=1)], ignore_index=True)
    d = differential_coupling(two).set_index("structure")
    # The same as Eq. 5 on the per-cell mean coupling over the two models...
    mean = one.assign(coupling=(one["coupling"] + other["coupling"]) / 2)
    expected = differential_coupling(mean).set_index("structure")
    for col in ("n_cells", "c_membrane", "c_nucleus", "differential_coupling", "sem"):
        np.testing.assert_allclose(d[col], expected[col])
    # ...plus how the two models' own d differ.
    d0 = differential_coupling(one).set_index("structure")["differential_coupling"]
    d1 = differential_coupling(other).set_index("structure")["differential_coupling"]
    np.testing.assert_allclose(d["sd_between_models"], np.abs(d0 - d1) / np.sqrt(2))
    assert (d["n_models"] == 2).all()
    # Halving c_nucleus turns structure "m" (d0 < 0) nucleus-ward only if it crosses zero.
    agree = (np.sign(d0) == np.sign(d["differential_coupling"])).astype(float) / 2 + (
        np.sign(d1) == np.sign(d["differential_coupling"])).astype(float) / 2
    np.testing.assert_allclose(d["sign_agreement"], agree)
    assert set(d["sign_agreement"]) <= {0.0, 0.5, 1.0}


def test_one_model_twice_has_no_spread(conditional2d, few):
    X, y = few
    kw = dict(reference_names=NAMES, n_swaps=2, random_state=0)
    twice = differential_coupling(structure_coupling([conditional2d, conditional2d], X, y, **kw))
    once = differential_coupling(structure_coupling(conditional2d, X, y, **kw))
    np.testing.assert_allclose(twice["differential_coupling"], once["differential_coupling"])
    np.testing.assert_allclose(twice["sd_between_models"], 0.0, atol=1e-12)
    assert (twice["sign_agreement"] == 1.0).all()
    assert "sd_between_models" not in once.columns


def test_several_models_errors(conditional2d, cells2d):
    X, y, _ = cells2d
    with pytest.raises(ValueError, match="empty list"):
        structure_coupling([], X, y)
    with pytest.raises(NotFittedError):
        structure_coupling([conditional2d, ConditionalStructureVAE()], X, y)
    # The same channels in another order: a swap would move different channels.
    other = ConditionalStructureVAE(reference_channels=[1, 0], structure_channel=2,
                                    random_state=0, max_epochs=1, n_latent=2, widths=(8,),
                                    batch_size=32).fit(X, y)
    with pytest.raises(ValueError, match=r"model\[1\] reads reference channels \[1, 0\]"):
        structure_coupling([conditional2d, other], X, y)
    two = pd.concat([_hand_made().assign(model=k) for k in range(2)], ignore_index=True)
    with pytest.raises(ValueError, match='must not hold "model"'):
        differential_coupling(two, by=("structure", "model"))


def test_transformer_and_plot_average_models(conditional2d, statcell2d, few):
    X, y = few
    kw = dict(n_swaps=2, random_state=1, reference_names=NAMES)
    models = [conditional2d, statcell2d]
    both = StructureCoupling(models, **kw).fit(X).transform(X, structures=y)
    each = [StructureCoupling(m, **kw).fit(X).transform(X, structures=y) for m in models]
    np.testing.assert_allclose(both, np.mean(each, axis=0))
    frame = structure_coupling(models, X, y, **kw)
    fig = plot_coupling(frame)
    # One point per cell, at the mean over the models.
    points = np.concatenate([c.get_offsets() for c in fig.axes[0].collections])
    assert len(points) == len(X)
    wide = frame.groupby(["cell", "reference"])["coupling"].mean().unstack()
    np.testing.assert_allclose(np.sort(points[:, 0]), np.sort(wide["membrane"]), rtol=1e-6)
    # The bars carry the spread between fits as a second error bar, ±1 SD long.
    d = differential_coupling(frame)
    fig = plot_differential_coupling(d)
    spread = [c for c in fig.axes[0].containers if c.get_label() == "±1 SD between fits"]
    assert len(spread) == 1
    segments = spread[0].lines[2][0].get_segments()
    lengths = np.array([seg[1][1] - seg[0][1] for seg in segments])
    np.testing.assert_allclose(lengths, 2 * d["sd_between_models"], rtol=1e-6)


# ---------------------------------------------------------------- transformer
def test_structure_coupling_transformer(conditional2d, few):
    X, y = few
    sc = StructureCoupling(conditional2d, n_swaps=2, random_state=0, reference_names=NAMES)
    with pytest.raises(NotFittedError):
        sc.transform(X, y)
    C = sc.fit(X).transform(X, structures=y)
    frame = structure_coupling(conditional2d, X, y, reference_names=NAMES, n_swaps=2,
                               random_state=0)
    assert C.shape == (len(X), 2)
    np.testing.assert_allclose(C[:, 1], frame[frame.reference == "DNA"]["coupling"])
    weighted = StructureCoupling(conditional2d, n_swaps=2, random_state=0, beta=0.0).fit(X)
    rec_only = structure_coupling(conditional2d, X, y, n_swaps=2, random_state=0, beta=0.0)
    np.testing.assert_allclose(weighted.transform(X, structures=y)[:, 1],
                               rec_only[rec_only.reference == "ref1"]["coupling"])
    out = sc.set_output(transform="pandas").transform(X, structures=y)
    assert list(out.columns) == ["coupling_membrane", "coupling_DNA"]
    with pytest.raises(NotFittedError):
        StructureCoupling(ConditionalStructureVAE()).fit(X)
    # A frozen model survives clone(); a bare one would come back unfitted.
    frozen = clone(StructureCoupling(FrozenEstimator(conditional2d), n_swaps=2,
                                     random_state=0)).fit(X)
    np.testing.assert_allclose(frozen.transform(X, structures=y), C)
    with pytest.raises(ValueError, match="structure label of each cell"):
        sc.transform(X)


def test_structure_coupling_transformer_in_a_pipeline(conditional2d, few):
    import sklearn
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = few
    kw = dict(n_swaps=2, random_state=0)
    C = StructureCoupling(conditional2d, **kw).fit(X).transform(X, structures=y)
    # fit_transform takes the labels as y, as StatisticalCell does without routing...
    np.testing.assert_allclose(StructureCoupling(conditional2d, **kw).fit_transform(X, y), C)
    np.testing.assert_allclose(
        StructureCoupling(conditional2d, **kw).fit_transform(X, structures=y), C)
    pipe = make_pipeline(StructureCoupling(FrozenEstimator(conditional2d), **kw),
                         StandardScaler())
    expected = StandardScaler().fit_transform(C)
    np.testing.assert_allclose(pipe.fit_transform(X, y), expected)
    # ... and as routed metadata, for the transform of new cells too.
    with sklearn.config_context(enable_metadata_routing=True):
        step = StructureCoupling(FrozenEstimator(conditional2d), **kw)
        step.set_fit_request(structures=True).set_transform_request(structures=True)
        pipe = make_pipeline(step, StandardScaler()).fit(X, structures=y)
        np.testing.assert_allclose(pipe.transform(X, structures=y), expected)


# ---------------------------------------------------------------- plots
def test_plots():
    c = _hand_made()
    fig = plot_coupling(c)
    assert len(fig.axes[0].collections) == 2
    with pytest.raises(ValueError, match="nucleus"):
        plot_coupling(c, nucleus="nuc")
    meta = pd.DataFrame({"cell_cycle_phase": ["i", "x", "i", "i", "x"]})
    d = differential_coupling(c, by=("structure", "cell_cycle_phase"), metadata=meta)
    fig = plot_differential_coupling(d)
    heights = [p.get_height() for p in fig.axes[0].patches]
    assert sorted(heights) == pytest.approx(sorted(d["differential_coupling"]))
    with pytest.raises(ValueError, match="structure"):
        plot_differential_coupling(d.drop(columns="structure"))
    # Another second grouping would stack bars on top of each other: refused.
    by_plate = differential_coupling(c, by=("structure", "plate"),
                                     metadata=pd.DataFrame({"plate": ["a", "b", "a", "b", "a"]}))
    with pytest.raises(ValueError, match="several rows per structure"):
        plot_differential_coupling(by_plate)


# ---------------------------------------------------------------- known answer
KNOWN = ["nuclear_envelope", "cell_periphery", "control_dna", "control_membrane",
         "control_blank"]


@pytest.mark.parametrize("conditioning", ["linear", "convolutional"])
def test_known_answer_signs(conditioning):
    """A briefly trained model recovers which channel each structure follows.

    Eq. 4 couplings are ELBO ratios below 1 when coupled, so Eq. 5 is negative
    for membrane-coupled structures: the opposite sign of the ground truth's
    ``differential_coupling``, which is written on coupling strengths.
    """
    X, y, meta = make_cells(300, shape=(24, 24), structures=KNOWN, mitosis_fraction=0,
                            random_state=0)
    model = ConditionalStructureVAE(n_latent=16, widths=(16, 32, 64), beta=0.05, lr=3e-3,
                                    max_epochs=25, batch_size=32, n_elbo_samples=4,
                                    device="cpu", random_state=0,
                                    conditioning=conditioning).fit(X, y)
    c = structure_coupling(model, X, y, reference_names=NAMES, n_swaps=4, random_state=0)
    d = differential_coupling(c).set_index("structure")
    truth = structure_ground_truth()
    truth = truth[truth.cell_cycle_phase == "interphase"].set_index("structure")
    for s in ["nuclear_envelope", "cell_periphery", "control_dna", "control_membrane"]:
        expected = -np.sign(truth.loc[s, "differential_coupling"])
        assert np.sign(d.loc[s, "differential_coupling"]) == expected, (s, d)
        assert d.loc[s, "ci_low"] * d.loc[s, "ci_high"] > 0, (s, d)  # clear of zero
    # The copies are coupled to their own channel only, more than any real structure.
    assert d.loc["control_dna", "c_nucleus"] < d.loc["nuclear_envelope", "c_nucleus"] < 0.95
    assert d.loc["control_membrane", "c_membrane"] < d.loc["cell_periphery", "c_membrane"] < 0.95
    assert abs(d.loc["control_blank", "differential_coupling"]) < 0.1


def test_partners_can_be_kept_within_a_group():
    labels = np.array(["a"] * 6 + ["b"] * 4, dtype=object)
    phase = np.array(["G1", "G1", "G1", "M", "M", "M", "G1", "G1", "M", "M"], dtype=object)
    partners = _swap_partners(labels, 3, random_state=0, groups=phase)
    assert (labels[partners] == labels[:, None]).all()
    assert (phase[partners] == phase[:, None]).all()
    assert (partners != np.arange(10)[:, None]).all()
    # Without groups the same seed mixes the phases of structure "a".
    mixed = _swap_partners(labels, 3, random_state=0)
    assert (phase[mixed] != phase[:, None]).any()
    with pytest.raises(ValueError, match="single cell in group 'M'"):
        _swap_partners(labels, 2, groups=np.where(np.arange(10) == 9, "M", "G1"))


def test_groups_reach_the_swaps(conditional2d, few):
    X, y = few
    phase = np.tile(["G1", "G1", "M"], len(X))[:len(X)]
    phase[y == y[0]] = "G1"  # every group of a structure needs two cells
    counts = pd.crosstab(y, phase)
    keep = np.array([counts.loc[s, p] >= 2 for s, p in zip(y, phase)])
    _, partners = structure_coupling(conditional2d, X[keep], y[keep], n_swaps=2,
                                     groups=phase[keep], random_state=0,
                                     return_partners=True)
    assert (phase[keep][partners] == phase[keep][:, None]).all()
    with pytest.raises(ValueError, match="one value per cell"):
        structure_coupling(conditional2d, X, y, groups=phase[:3])
