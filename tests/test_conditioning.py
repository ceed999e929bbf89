"""Conditioning works: imputed structures land where their label says, in the given cell."""

import numpy as np
import pytest
from scipy import ndimage

from cellgen import ConditionalStructureVAE
from cellgen.datasets import make_cells

NUCLEAR = ["nuclear_envelope", "nucleoli"]
MEMBRANE = ["cell_periphery", "edge_dots"]


@pytest.fixture(scope="module", params=["linear", "convolutional"])
def fitted(request):
    kw = dict(shape=(32, 32), structures=NUCLEAR + MEMBRANE, mitosis_fraction=0.0)
    X, y, _ = make_cells(800, random_state=0, **kw)
    Xt, _, _ = make_cells(60, random_state=1, **kw)
    model = ConditionalStructureVAE(n_latent=16, widths=(16, 32, 64), beta=0.05, lr=1e-3,
                                    max_epochs=25, device="cpu", random_state=0,
                                    conditioning=request.param).fit(X, y)
    return model, Xt


def _correlation(images, reference):
    """Pearson correlation per cell between imputed images and a (blurred) reference channel."""
    ref = ndimage.gaussian_filter(reference, sigma=(0, 1.5, 1.5))
    a = images[:, 0].reshape(len(images), -1)
    b = ref.reshape(len(ref), -1)
    a = a - a.mean(1, keepdims=True)
    b = b - b.mean(1, keepdims=True)
    return (a * b).sum(1) / np.sqrt((a * a).sum(1) * (b * b).sum(1) + 1e-12)


def test_imputed_structures_follow_their_reference(fitted):
    model, Xt = fitted
    shuffled = Xt[np.random.RandomState(0).permutation(len(Xt))]
    for label in NUCLEAR + MEMBRANE:
        channel = Xt[:, 1] if label in NUCLEAR else Xt[:, 0]
        own = _correlation(model.impute(Xt, label), channel).mean()
        other = _correlation(model.impute(shuffled, label), channel).mean()
        print(label, own, other)
        assert own > 0.3, (label, own)
        assert own > other + 0.15, (label, own, other)


def test_label_changes_the_imputation(fitted):
    model, Xt = fitted
    dna, membrane = Xt[:, 1], Xt[:, 0]
    for nuc, mem in zip(NUCLEAR, MEMBRANE):
        imp_nuc, imp_mem = model.impute(Xt, nuc), model.impute(Xt, mem)
        print(nuc, mem, _correlation(imp_nuc, dna).mean(), _correlation(imp_mem, dna).mean(),
              _correlation(imp_mem, membrane).mean(), _correlation(imp_nuc, membrane).mean())
        assert _correlation(imp_nuc, dna).mean() > _correlation(imp_mem, dna).mean() + 0.2
        assert _correlation(imp_mem, membrane).mean() > _correlation(imp_nuc, membrane).mean() + 0.2
