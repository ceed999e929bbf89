"""Flip augmentation: random flips in training, a flip-invariant embedding."""

import numpy as np
import torch

from cellgen import ConditionalStructureVAE, ReferenceVAE
from cellgen.train import RowDataset

from .conftest import TINY

X = np.random.RandomState(0).rand(32, 2, 16, 16).astype(np.float32)


def test_flip_augmentation_and_invariant_embedding():
    # The dataset flips every image of an item alike, and labels not at all.
    data = {"x": np.arange(2 * 1 * 2 * 3, dtype=np.float32).reshape(2, 1, 2, 3),
            "c": np.array([4, 5])}
    torch.manual_seed(0)
    seen = {tuple(RowDataset(data, flip_axes=(-2, -1))[0][0]["x"].flatten().tolist())
            for _ in range(40)}
    x0 = torch.as_tensor(data["x"][0])
    flips = {tuple(x0.flip(d).flatten().tolist()) if d else tuple(x0.flatten().tolist())
             for d in ((), (-1,), (-2,), (-2, -1))}
    assert seen == flips  # all four, and nothing else
    assert int(RowDataset(data, flip_axes=(-1,))[1][0]["c"]) == 5

    est = ReferenceVAE(**dict(TINY, augment="flips"), random_state=0).fit(X)
    Z = est.transform(X)
    # The embedding of a mirrored cell is the cell's own.
    np.testing.assert_allclose(est.transform(X[..., ::-1].copy()), Z, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(est.transform(X[..., ::-1, :].copy()), Z, rtol=1e-4, atol=1e-5)
    plain = ReferenceVAE(**TINY, random_state=0).fit(X)
    assert not np.allclose(plain.transform(X[..., ::-1].copy()), plain.transform(X), atol=1e-3)
    # Reproducible with a seed.
    again = ReferenceVAE(**dict(TINY, augment="flips"), random_state=0).fit(X)
    np.testing.assert_array_equal(again.transform(X), Z)


def test_conditional_flip_invariant_embedding():
    X3 = np.random.RandomState(1).rand(32, 3, 16, 16).astype(np.float32)
    y = np.array(["a", "b"] * 16, dtype=object)
    est = ConditionalStructureVAE(**dict(TINY, augment="flips"), random_state=0).fit(X3, y)
    np.testing.assert_allclose(est.transform(X3[..., ::-1].copy(), structures=y),
                               est.transform(X3, structures=y), rtol=1e-4, atol=1e-5)
