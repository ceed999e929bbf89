import pickle

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.utils.estimator_checks import (
    check_get_params_invariance,
    check_no_attributes_set_in_init,
    check_parameters_default_constructible,
    check_set_params,
)

from cellgen import ConditionalStructureVAE, ReferenceVAE, StatisticalCell
from cellgen.datasets import make_cells

from .conftest import TINY

ESTIMATORS = [ReferenceVAE(**TINY), ConditionalStructureVAE(**TINY),
              StatisticalCell(ReferenceVAE(**TINY), ConditionalStructureVAE(**TINY))]
IDS = ["reference", "conditional", "statcell"]


def _fit(est, X, y):
    return est.fit(X[:, :2]) if isinstance(est, ReferenceVAE) else est.fit(X, y)


def _transform(est, X, y):
    return est.transform(X[:, :2]) if isinstance(est, ReferenceVAE) else \
        est.transform(X, structures=y)


# --------------------------------------------------------------- sklearn contract
@pytest.mark.parametrize("est", ESTIMATORS, ids=IDS)
def test_sklearn_parameter_checks(est):
    name = type(est).__name__
    check_no_attributes_set_in_init(name, clone(est))
    check_get_params_invariance(name, clone(est))
    check_set_params(name, clone(est))
    check_parameters_default_constructible(name, clone(est))


@pytest.mark.parametrize("est", ESTIMATORS, ids=IDS)
def test_clone_keeps_params_and_drops_fit(est, cells2d):
    X, y, _ = cells2d
    fitted = _fit(clone(est), X, y)
    copy = clone(fitted)
    assert copy.get_params().keys() == fitted.get_params().keys()
    with pytest.raises(NotFittedError):
        _transform(copy, X, y)


@pytest.mark.parametrize("est", ESTIMATORS, ids=IDS)
def test_fit_returns_self(est, cells2d):
    X, y, _ = cells2d
    est = clone(est)
    assert _fit(est, X[:32], y[:32]) is est


@pytest.mark.parametrize("est", ESTIMATORS, ids=IDS)
def test_not_fitted_errors(est, cells2d):
    X, y, _ = cells2d
    est = clone(est)
    with pytest.raises(NotFittedError):
        _transform(est, X, y)
    with pytest.raises(NotFittedError):
        est.score_samples(X[:, :2]) if isinstance(est, ReferenceVAE) else \
            est.score_samples(X, structures=y)


def test_statistical_cell_reuses_a_frozen_reference_model(cells2d, reference2d):
    from sklearn.frozen import FrozenEstimator

    X, y, _ = cells2d
    before = reference2d.transform(X[:, :2])
    cell = StatisticalCell(FrozenEstimator(reference2d), ConditionalStructureVAE(**TINY),
                           ).fit(X, y)
    assert cell.reference_model_ is reference2d  # kept as it is, not retrained
    np.testing.assert_array_equal(cell.transform(X, structures=y)[:, :4], before)
    # Cells the frozen model cannot read are refused at fit, not at the first transform.
    small = X[:, :, :8, :8]
    with pytest.raises(ValueError, match=r"spatial shape \(16, 16\).*shape \(8, 8\)"):
        StatisticalCell(FrozenEstimator(reference2d), ConditionalStructureVAE(**TINY)).fit(small, y)
    with pytest.raises(ValueError, match="2 channel.*1 reference channel"):
        StatisticalCell(FrozenEstimator(reference2d), ConditionalStructureVAE(**TINY),
                        reference_channels=[0], structure_channel=2).fit(X, y)


def test_tags_describe_images_in_and_float32_out():
    from sklearn.utils import get_tags

    from cellgen.analysis import StructureCoupling
    from cellgen.preprocessing import ImageFeatures, PadCrop

    for est in (ReferenceVAE(), ConditionalStructureVAE(), StatisticalCell()):
        tags = get_tags(est)
        assert not tags.input_tags.two_d_array
        assert tags.transformer_tags.preserves_dtype == ["float32"]
    for est in (PadCrop((8, 8)), ImageFeatures(), StructureCoupling(ConditionalStructureVAE())):
        assert not get_tags(est).input_tags.two_d_array


def test_set_params_leaves_a_fitted_model_alone(cells2d):
    # scikit-learn's contract: new parameters take effect at the next fit.
    X = cells2d[0][:32, :2]
    vae = ReferenceVAE(random_state=0, **TINY).fit(X)
    Z, feats = vae.transform(X), vae.encoder_features(X, blocks=[1])
    vae.set_params(n_latent=6, widths=(8,), augment="flips")
    assert len(vae.get_feature_names_out()) == Z.shape[1] == 4
    assert vae.sample(2).shape == (2,) + X.shape[1:]
    assert vae.inverse_transform(Z).shape == X.shape
    np.testing.assert_array_equal(vae.transform(X), Z)
    np.testing.assert_array_equal(vae.encoder_features(X, blocks=[1]), feats)


def test_numpy_integer_settings_train(cells2d):
    # What a search grid built with numpy (np.arange, np.array) hands out.
    X = cells2d[0][:32, :2]
    settings = dict(TINY, batch_size=np.int64(8), max_epochs=np.int64(1), n_latent=np.int32(4),
                    lr=np.float32(1e-3))
    vae = ReferenceVAE(random_state=0, **settings).fit(X)
    assert vae.transform(X).shape == (32, 4)


@pytest.mark.parametrize("fixture", ["reference2d", "conditional2d", "statcell2d"])
def test_pickle_round_trip(fixture, request, cells2d):
    est = request.getfixturevalue(fixture)
    X, y, _ = cells2d
    again = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(_transform(est, X, y), _transform(again, X, y))


# --------------------------------------------------------------- reference model
def test_reference_methods_shapes(reference2d, cells2d):
    X, _, _ = cells2d
    Xr = X[:, :2]
    Z = reference2d.transform(Xr)
    assert Z.shape == (len(X), 4) and Z.dtype == np.float32
    assert reference2d.inverse_transform(Z).shape == Xr.shape
    assert reference2d.sample(5, random_state=0).shape == (5, *Xr.shape[1:])
    scores = reference2d.score_samples(Xr)
    assert scores.shape == (len(X),) and np.all(scores < 0)
    assert reference2d.score(Xr) == pytest.approx(scores.mean())
    assert list(reference2d.get_feature_names_out()) == [f"ref_z{i}" for i in range(4)]


def test_history_has_every_elbo_term(reference2d):
    hist = reference2d.history_
    assert isinstance(hist, pd.DataFrame) and len(hist) == TINY["max_epochs"]
    for split in ("train", "valid"):
        for term in ("loss", "reconstruction", "kl", "elbo"):
            assert np.isfinite(hist[f"{split}_{term}"]).all()
    np.testing.assert_allclose(hist["train_elbo"], -(hist["train_reconstruction"]
                                                     + hist["train_kl"]), rtol=1e-4)


def test_sample_is_seeded(reference2d):
    a = reference2d.sample(3, random_state=1)
    b = reference2d.sample(3, random_state=1)
    c = reference2d.sample(3, random_state=2)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_set_output_pandas(reference2d, cells2d):
    X, _, _ = cells2d
    est = clone(reference2d).set_params(max_epochs=1).set_output(transform="pandas")
    Z = est.fit(X[:, :2]).transform(X[:, :2])
    assert isinstance(Z, pd.DataFrame) and list(Z.columns) == [f"ref_z{i}" for i in range(4)]


# --------------------------------------------------------------- determinism
def test_same_random_state_same_weights_and_embeddings(cells2d):
    X, _, _ = cells2d
    a = ReferenceVAE(random_state=3, **TINY).fit(X[:, :2])
    b = ReferenceVAE(random_state=3, **TINY).fit(X[:, :2])
    for (ka, va), (kb, vb) in zip(a.module_.state_dict().items(), b.module_.state_dict().items()):
        assert ka == kb and torch.equal(va, vb), ka
    np.testing.assert_array_equal(a.transform(X[:, :2]), b.transform(X[:, :2]))
    c = ReferenceVAE(random_state=4, **TINY).fit(X[:, :2])
    assert not np.allclose(a.transform(X[:, :2]), c.transform(X[:, :2]))


def test_fit_leaves_global_torch_rng_alone(cells2d):
    X, _, _ = cells2d
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    ReferenceVAE(random_state=0, **dict(TINY, max_epochs=1)).fit(X[:, :2])
    torch.testing.assert_close(torch.rand(3), expected)


def test_load_and_unpickle_leave_global_torch_rng_alone(reference2d, tmp_path):
    folder = reference2d.save(tmp_path / "model")
    blob = pickle.dumps(reference2d)
    torch.manual_seed(123)
    expected = torch.rand(3)
    for restore in (lambda: ReferenceVAE.load(folder), lambda: pickle.loads(blob)):
        torch.manual_seed(123)
        restore()
        torch.testing.assert_close(torch.rand(3), expected)


@pytest.mark.parametrize("fixture", ["conditional2d", "statcell2d"])
def test_inference_is_repeatable_and_stateless(fixture, request, cells2d):
    est = request.getfixturevalue(fixture)
    X, y, _ = cells2d
    module = est.module_ if hasattr(est, "module_") else est.structure_model_.module_
    before = {k: v.clone() for k, v in module.state_dict().items()}
    np.testing.assert_array_equal(_transform(est, X, y), _transform(est, X, y))
    np.testing.assert_array_equal(est.score_samples(X, structures=y),
                                  est.score_samples(X, structures=y))
    est.impute(X[:4, :2], y[:4] if fixture == "conditional2d" else None)
    for k, v in module.state_dict().items():
        assert torch.equal(v, before[k]), k


# --------------------------------------------------------------- conditional model
def test_conditional_impute_and_sample_shapes(conditional2d, cells2d):
    X, y, _ = cells2d
    ref = X[:5, :2]
    assert conditional2d.impute(ref, "nucleoli").shape == (5, 1, 16, 16)
    assert conditional2d.impute(X[:5], y[:5], n_samples=3, random_state=0).shape == \
        (5, 3, 1, 16, 16)
    assert conditional2d.sample(ref, y[:5], random_state=0).shape == (5, 1, 16, 16)
    Z = conditional2d.transform(X[:5], structures=y[:5])
    assert conditional2d.inverse_transform(Z, reference=ref, structures=y[:5]).shape == \
        (5, 1, 16, 16)


def test_conditional_channels_are_parameters(cells2d):
    X, y, _ = cells2d
    moved = X[:, [2, 0, 1]]  # structure first
    est = ConditionalStructureVAE(structure_channel=0, random_state=0,
                                  **dict(TINY, max_epochs=1)).fit(moved, y)
    assert est.structure_channel_ == 0 and est.reference_channels_ == [1, 2]
    assert est.impute(moved[:3], y[:3]).shape == (3, 1, 16, 16)


# --------------------------------------------------------------- statistical cell
def test_statistical_cell_methods(statcell2d, cells2d):
    X, y, _ = cells2d
    Z = statcell2d.transform(X, structures=y)
    assert Z.shape == (len(X), 8)
    assert list(statcell2d.get_feature_names_out()[-1:]) == ["struct_z3"]
    cells, labels = statcell2d.sample(6, random_state=0)
    assert cells.shape == (6, 3, 16, 16) and set(labels) <= set(statcell2d.classes_)
    cells, labels = statcell2d.sample(2, structures="nucleoli", random_state=0)
    assert list(labels) == ["nucleoli", "nucleoli"]
    integrated = statcell2d.impute(X[:3])
    assert integrated.shape == (3, 2 + len(statcell2d.classes_), 16, 16)
    np.testing.assert_array_equal(integrated[:, :2], X[:3, :2])
    assert statcell2d.impute(X[:3, :2], ["nucleoli"], n_samples=2).shape == (3, 2, 3, 16, 16)
    with pytest.raises(ValueError, match="structures is empty"):
        statcell2d.impute(X[:3], [])
    total = statcell2d.score_samples(X, structures=y)
    parts = statcell2d.reference_model_.score_samples(X[:, :2]) + \
        statcell2d.structure_model_.score_samples(X, structures=y)
    np.testing.assert_allclose(total, parts, rtol=1e-6)
    assert statcell2d.score(X, y) == pytest.approx(total.mean())


def test_statistical_cell_3d_every_method(statcell3d, cells3d):
    X, y, _ = cells3d
    shape = X.shape[2:]
    assert statcell3d.transform(X, structures=y).shape == (len(X), 8)
    assert statcell3d.sample(2, random_state=0)[0].shape == (2, 3, *shape)
    assert statcell3d.impute(X[:2], ["nucleoli", "cell_periphery"]).shape == (2, 4, *shape)
    assert statcell3d.score_samples(X, structures=y).shape == (len(X),)
    ref = statcell3d.reference_model_
    Z = ref.transform(X[:, :2])
    assert ref.inverse_transform(Z).shape == (len(X), 2, *shape)
    assert ref.sample(2, random_state=0).shape == (2, 2, *shape)
    cond = statcell3d.structure_model_
    assert cond.impute(X[:2], "nucleoli", n_samples=2).shape == (2, 2, 1, *shape)


def test_statistical_cell_sample_leaves_unused_channels_at_zero(cells2d):
    # A fourth channel that neither model reads (a bright-field image, say).
    X, y, _ = cells2d
    X4 = np.concatenate([X, np.ones_like(X[:, :1])], axis=1)
    model = StatisticalCell(ReferenceVAE(random_state=0, **TINY),
                            ConditionalStructureVAE(random_state=0, **TINY),
                            reference_channels=[0, 1], structure_channel=2).fit(X4, y)
    for seed in range(3):
        cells, _ = model.sample(6, random_state=seed)
        assert cells.shape == (6, 4, *X.shape[2:])
        assert (cells[:, 3] == 0).all()
        assert np.abs(cells[:, :3]).sum() > 0


# --------------------------------------------------------------- pipelines
def test_pipeline_with_knn_and_metadata_routing(cells2d):
    import sklearn
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline

    X, y, meta = cells2d
    phase = meta["cell_cycle_phase"].to_numpy()
    with sklearn.config_context(enable_metadata_routing=True):
        cell = StatisticalCell(ReferenceVAE(random_state=0, **TINY),
                               ConditionalStructureVAE(random_state=0, **TINY))
        cell.set_fit_request(structures=True).set_transform_request(structures=True)
        pipe = make_pipeline(cell, KNeighborsClassifier(3))
        pipe.fit(X, phase, structures=y)
        pred = pipe.predict(X, structures=y)
        assert pred.shape == (len(X),) and set(pred) <= set(phase)
        direct = pipe[-1].predict(pipe[0].transform(X, structures=y))
        np.testing.assert_array_equal(pred, direct)
        assert 0.0 <= pipe.score(X, phase, structures=y) <= 1.0


def test_pipeline_structure_labels_as_target(cells2d):
    # Without routing, y is the structure label: fit_transform uses it.
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y, _ = cells2d
    pipe = make_pipeline(StatisticalCell(ReferenceVAE(random_state=0, **TINY),
                                         ConditionalStructureVAE(random_state=0, **TINY)),
                         StandardScaler())
    Z = pipe.fit_transform(X, y)
    assert Z.shape == (len(X), 8)
    np.testing.assert_allclose(Z.mean(0), 0, atol=1e-5)


# --------------------------------------------------------------- learning
def test_short_fit_learns():
    X, y, _ = make_cells(600, shape=(32, 32), random_state=1)
    Xr = X[:, :2]
    est = ReferenceVAE(n_latent=16, widths=(16, 32, 64), max_epochs=12, lr=1e-3, beta=0.02,
                       batch_size=16,
                       device="cpu", random_state=0).fit(Xr[:540])
    hist = est.history_
    assert hist["valid_loss"].iloc[-1] < 0.9 * hist["valid_loss"].iloc[0]
    test = Xr[540:]
    recon = est.inverse_transform(est.transform(test))
    mse_model = ((recon - test) ** 2).mean()
    mse_mean = ((Xr[:540].mean(0) - test) ** 2).mean()
    assert mse_model < 0.8 * mse_mean, (mse_model, mse_mean)


# --------------------------------------------------------------- training options
def test_best_validation_weights_are_restored(cells2d):
    from skorch.callbacks import Callback

    X, _, _ = cells2d
    snapshots = {}

    class SpoilLastEpoch(Callback):
        # Shift the decoder output at the start of epoch 3 so that epoch 2 stays best.
        def on_epoch_begin(self, net, **kwargs):
            if len(net.history) == 3:
                with torch.no_grad():
                    net.module_.decoder.blocks[-1].conv2.bias.add_(5.0)

        def on_epoch_end(self, net, **kwargs):
            snapshots[len(net.history)] = {k: v.clone() for k, v in
                                           net.module_.state_dict().items()}

    est = ReferenceVAE(random_state=0, callbacks=[SpoilLastEpoch()],
                       **dict(TINY, max_epochs=3)).fit(X[:, :2])
    hist = est.history_
    assert int(hist.loc[hist["valid_loss"].idxmin(), "epoch"]) == 2
    final = est.module_.state_dict()
    assert all(torch.equal(final[k], v) for k, v in snapshots[2].items())
    assert not all(torch.equal(final[k], v) for k, v in snapshots[3].items())


def test_verbose_prints_progress(cells2d, capsys):
    X, _, _ = cells2d
    ReferenceVAE(random_state=0, verbose=1, **dict(TINY, max_epochs=1)).fit(X[:32, :2])
    out = capsys.readouterr()
    assert "train_loss" in out.out and "valid_loss" in out.out
    # Nothing the user set was re-set, so nothing may say so.
    assert "Re-initializing" not in out.out + out.err


class _PoisonAtEpoch:
    """A skorch callback that makes the weights NaN when ``epoch`` begins."""

    def __new__(cls, epoch):
        from skorch.callbacks import Callback

        class Poison(Callback):
            def on_epoch_begin(self, net, **kwargs):
                if len(net.history) == epoch:
                    with torch.no_grad():
                        for p in net.module_.parameters():
                            p.fill_(float("nan"))

        return Poison()


def test_non_finite_loss_stops_loudly_and_keeps_the_best_weights(cells2d):
    X = cells2d[0][:, :2]
    vae = ReferenceVAE(random_state=0, callbacks=[_PoisonAtEpoch(3)],
                       **dict(TINY, max_epochs=5))
    with pytest.raises(FloatingPointError, match=r"training loss .* at epoch 3, training "
                                                  r"batch 1.*weights of epoch 2"):
        vae.fit(X)
    # Two whole epochs were trained; the model is usable with the best of them.
    assert len(vae.history_.dropna(subset=["train_loss"])) == 2
    Z = vae.transform(X)
    assert np.isfinite(Z).all()
    clean = ReferenceVAE(random_state=0, **dict(TINY, max_epochs=2)).fit(X)
    np.testing.assert_allclose(Z, clean.transform(X), atol=1e-5)


def test_non_finite_loss_without_validation_keeps_the_last_finished_epoch(cells2d):
    X = cells2d[0][:, :2]
    settings = dict(TINY, validation_fraction=0)
    vae = ReferenceVAE(random_state=0, callbacks=[_PoisonAtEpoch(3)],
                       **dict(settings, max_epochs=5))
    with pytest.raises(FloatingPointError, match=r"weights of epoch 2 \(the last finished"):
        vae.fit(X)
    clean = ReferenceVAE(random_state=0, **dict(settings, max_epochs=2)).fit(X)
    np.testing.assert_allclose(vae.transform(X), clean.transform(X), atol=1e-5)


def test_non_finite_validation_loss_says_so(cells2d):
    # One finite but huge cell in the validation split overflows its squared error.
    X = cells2d[0][:64, :2].copy()
    vae = ReferenceVAE(random_state=0, **dict(TINY, max_epochs=3))
    rng = np.random.RandomState(0)  # the split fit will draw: after the seed, from rng
    rng.randint(2**31 - 1)
    _, valid = vae._split(len(X), rng)
    X[valid[0]] = 3e19
    with pytest.raises(FloatingPointError, match=r"validation loss .* at epoch 1, validation "
                                                  r"batch 1.*left as it was before fit"):
        vae.fit(X)
    assert not hasattr(vae, "net_")


def test_failed_refit_leaves_the_earlier_fit_in_place(cells2d):
    X, y, _ = cells2d
    vae = ReferenceVAE(random_state=0, **TINY).fit(X[:, :2])
    Z = vae.transform(X[:, :2])
    # Fails after the new channel count is known, before any training.
    with pytest.raises(ValueError, match="batch_size"):
        vae.set_params(batch_size=10_000).fit(X)
    assert vae.n_channels_in_ == 2
    np.testing.assert_array_equal(vae.transform(X[:, :2]), Z)
    # Diverges in the first epoch: nothing trained, nothing replaced.
    vae.set_params(batch_size=TINY["batch_size"], callbacks=[_PoisonAtEpoch(1)])
    with pytest.raises(FloatingPointError, match="left as it was before fit"):
        vae.fit(X)
    assert vae.n_channels_in_ == 2
    np.testing.assert_array_equal(vae.transform(X[:, :2]), Z)
    # A first fit that fails leaves no fitted attribute behind.
    fresh = ConditionalStructureVAE(random_state=0, **dict(TINY, batch_size=10_000))
    with pytest.raises(ValueError, match="batch_size"):
        fresh.fit(X, y)
    assert not hasattr(fresh, "classes_") and not hasattr(fresh, "n_channels_in_")
    cell = StatisticalCell(ReferenceVAE(random_state=0, **TINY),
                           ConditionalStructureVAE(random_state=0, **TINY)).fit(X, y)
    before = cell.transform(X, structures=y)
    cell.set_params(structure_model__batch_size=10_000)
    with pytest.raises(ValueError, match="batch_size"):
        cell.fit(X[:, [1, 0, 2]], y)
    np.testing.assert_array_equal(cell.transform(X, structures=y), before)


def test_keyboard_interrupt_leaves_a_usable_model(cells2d):
    from skorch.callbacks import Callback

    class Interrupt(Callback):
        def on_epoch_end(self, net, **kwargs):
            if len(net.history) == 2:
                raise KeyboardInterrupt

    X = cells2d[0][:, :2]
    vae = ReferenceVAE(random_state=0, callbacks=[Interrupt()], **dict(TINY, max_epochs=6))
    vae.fit(X)  # returns: the interrupt ends training, it does not lose it
    assert len(vae.history_) == 2
    assert np.isfinite(vae.transform(X)).all()


def test_gradient_clipping_through_skorch_callbacks(cells2d):
    from skorch.callbacks import GradientNormClipping

    X = cells2d[0][:, :2]
    vae = ReferenceVAE(random_state=0, callbacks=[GradientNormClipping(1.0)],
                       **dict(TINY, max_epochs=1)).fit(X)
    assert np.isfinite(vae.transform(X)).all()
