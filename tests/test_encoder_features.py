"""ReferenceVAE.encoder_features: pooled encoder feature maps as a cell profile."""

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from cellgen import ConditionalStructureVAE, ReferenceVAE
from cellgen.datasets import make_cells

from .conftest import TINY


def _hooked_maps(vae, *inputs):
    """Every encoder block's output, caught by forward hooks (not by the method)."""
    maps = []
    hooks = [b.register_forward_hook(lambda m, i, o: maps.append(o.detach()))
             for b in vae.module_.encoder.blocks]
    try:
        with torch.no_grad():
            vae.module_.eval()
            vae.module_.encode(*(torch.as_tensor(v) for v in inputs))
    finally:
        for h in hooks:
            h.remove()
    return maps


def test_columns_are_channel_means_then_sds_of_each_block(reference2d, cells2d):
    X = cells2d[0][:20, :2]
    F = reference2d.encoder_features(X, blocks=(-1, 0))
    maps = _hooked_maps(reference2d, X)
    expected = []
    for h in (maps[1], maps[0]):  # the order asked for, not the network's order
        flat = h.flatten(2).double()
        expected += [flat.mean(2), flat.std(2, correction=0)]
    expected = torch.cat(expected, 1).numpy()
    assert F.shape == (20, 2 * (16 + 8))
    np.testing.assert_allclose(F, expected, rtol=1e-4, atol=1e-5)


def test_flip_augmented_model_gives_flip_invariant_features(cells2d):
    X = cells2d[0][:, :2]
    flips = ReferenceVAE(**dict(TINY, augment="flips"), random_state=0).fit(X)
    F = flips.encoder_features(X)
    for axes in ((-1,), (-2,), (-2, -1)):
        np.testing.assert_allclose(flips.encoder_features(np.flip(X, axes)), F,
                                   rtol=1e-4, atol=1e-5)
    # Without flip augmentation the features see orientation.
    plain = ReferenceVAE(**TINY, random_state=0).fit(X)
    assert not np.allclose(plain.encoder_features(np.flip(X, -1)), plain.encoder_features(X),
                           atol=1e-4)


def test_features_separate_mitotic_from_interphase_cells():
    X, _, meta = make_cells(160, shape=(16, 16), mitosis_fraction=0.5, random_state=3)
    phase = (meta["cell_cycle_phase"] == "mitosis").to_numpy()
    vae = ReferenceVAE(**TINY, random_state=0).fit(X[:, :2])
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    acc = cross_val_score(clf, vae.encoder_features(X[:, :2]), phase, cv=4).mean()
    assert acc > 0.85


def test_three_dimensional_cells(statcell3d, cells3d):
    X = cells3d[0][:, :2]
    F = statcell3d.reference_model_.encoder_features(X, blocks=[-1])
    assert F.shape == (len(X), 2 * 16)
    assert np.isfinite(F).all() and F[:, 16:].max() > 0


@pytest.mark.parametrize("blocks, match", [
    ((), "non-empty"), ((2,), "does not exist"), ((-3,), "does not exist"),
    ((0, -2), "repeat"), ((0.5,), "integers"), ((True,), "integers")])
def test_bad_blocks_are_refused(reference2d, cells2d, blocks, match):
    with pytest.raises(ValueError, match=match):
        reference2d.encoder_features(cells2d[0][:4, :2], blocks=blocks)


def test_conditional_features_pool_the_conditioned_encoder(conditional2d, cells2d):
    X, y, _ = cells2d
    X, y = X[:20], y[:20]
    F = conditional2d.encoder_features(X, structures=y, blocks=[-1])
    labels = np.searchsorted(conditional2d.classes_, y)
    maps = _hooked_maps(conditional2d, X[:, 2:], X[:, :2], labels)
    flat = maps[-1].flatten(2).double()
    expected = torch.cat([flat.mean(2), flat.std(2, correction=0)], 1).numpy()
    np.testing.assert_allclose(F, expected, rtol=1e-4, atol=1e-5)
    # The label is injected into the encoder: another label gives other features.
    other = np.roll(y, 1)
    assert not np.allclose(conditional2d.encoder_features(X, structures=other, blocks=[-1]),
                           F, atol=1e-4)


def test_conditional_flip_augmented_features_are_flip_invariant(cells2d):
    X, y, _ = cells2d
    cvae = ConditionalStructureVAE(**dict(TINY, augment="flips"), random_state=0).fit(X, y)
    F = cvae.encoder_features(X, structures=y)
    np.testing.assert_allclose(cvae.encoder_features(np.flip(X, (-2, -1)), structures=y), F,
                               rtol=1e-4, atol=1e-5)


def test_statistical_cell_features_join_both_models(statcell2d, cells2d):
    X, y, _ = cells2d
    F = statcell2d.encoder_features(X, structures=y, blocks=(0,))
    ref = statcell2d.reference_model_.encoder_features(X[:, :2], blocks=(0,))
    struct = statcell2d.structure_model_.encoder_features(X, structures=y, blocks=(0,))
    assert F.shape == (len(X), 2 * 8 + 2 * 8)
    np.testing.assert_array_equal(F, np.hstack([ref, struct]))
    with pytest.raises(ValueError, match="does not exist"):
        statcell2d.encoder_features(X, structures=y, blocks=(5,))
