"""Bad input at every public method gets a clear ValueError or TypeError."""

import numpy as np
import pandas as pd
import pytest

from cellgen import ConditionalStructureVAE, ReferenceVAE, StatisticalCell
from cellgen.utils import check_images

from .conftest import TINY

GOOD = np.random.RandomState(0).rand(4, 3, 16, 16).astype(np.float32)
LABELS = np.array(["nucleoli"] * 4, dtype=object)


def _nan():
    x = GOOD.copy()
    x[0, 0, 0, 0] = np.nan
    return x


def _inf():
    x = GOOD.copy()
    x[1, 0, 3, 3] = np.inf
    return x


# (case id, bad X, expected error, message fragment)
BAD_X = [
    ("3 axes", GOOD[0], ValueError, "4 axes"),
    ("6 axes", GOOD[None, None], ValueError, "4 axes"),
    ("nan", _nan(), ValueError, "NaN or infinite"),
    ("inf", _inf(), ValueError, "NaN or infinite"),
    ("empty", GOOD[:0], ValueError, "empty"),
    ("strings", np.full((2, 3, 16, 16), "a"), TypeError, "numeric"),
    ("complex", GOOD.astype(np.complex64), TypeError, "complex"),
    ("other size", np.zeros((2, 3, 16, 12), np.float32), ValueError, "spatial shape"),
    ("3D not 2D", np.zeros((2, 3, 4, 16, 16), np.float32), ValueError, "spatial axes"),
]


def _calls(statcell, conditional, reference):
    """Every public method that takes images, as (name, function of X)."""
    return [
        ("reference.transform", lambda X: reference.transform(X[:, :2])),
        ("reference.score_samples", lambda X: reference.score_samples(X[:, :2])),
        ("reference.encode", lambda X: reference.encode(X[:, :2])),
        ("conditional.transform", lambda X: conditional.transform(X, structures="nucleoli")),
        ("conditional.score_samples",
         lambda X: conditional.score_samples(X, structures="nucleoli")),
        ("conditional.impute", lambda X: conditional.impute(X, "nucleoli")),
        ("conditional.sample", lambda X: conditional.sample(X, "nucleoli")),
        ("statcell.transform", lambda X: statcell.transform(X, structures="nucleoli")),
        ("statcell.score_samples", lambda X: statcell.score_samples(X, structures="nucleoli")),
        ("statcell.impute", lambda X: statcell.impute(X)),
    ]


@pytest.mark.parametrize("case, X, error, match", BAD_X, ids=[c[0] for c in BAD_X])
def test_bad_images_at_every_method(case, X, error, match, statcell2d, conditional2d,
                                    reference2d):
    for _name, call in _calls(statcell2d, conditional2d, reference2d):
        with pytest.raises(error, match=match):
            call(X)


@pytest.mark.parametrize("case, X, error, match", BAD_X[:7], ids=[c[0] for c in BAD_X[:7]])
@pytest.mark.parametrize("Est", [ReferenceVAE, ConditionalStructureVAE, StatisticalCell])
def test_bad_images_at_fit(case, X, error, match, Est):
    est = Est(**TINY) if Est is not StatisticalCell else Est(ReferenceVAE(**TINY),
                                                             ConditionalStructureVAE(**TINY))
    y = None if Est is ReferenceVAE else np.array(["a"] * (len(X) if np.ndim(X) > 3 else 1))
    with pytest.raises(error, match=match):
        est.fit(X, y) if y is not None else est.fit(X)


def test_none_is_rejected(reference2d, conditional2d, statcell2d):
    for call in (lambda: reference2d.transform(None),
                 lambda: conditional2d.impute(None, "nucleoli"),
                 lambda: statcell2d.transform(None, structures="nucleoli")):
        with pytest.raises(TypeError, match="got None"):
            call()


def test_wrong_channel_count(reference2d, conditional2d, statcell2d):
    with pytest.raises(ValueError, match="3 channels but 2 were expected"):
        reference2d.transform(GOOD)
    with pytest.raises(ValueError, match="channels but 3 were expected"):
        conditional2d.transform(GOOD[:, :2], structures=LABELS)
    with pytest.raises(ValueError, match="channels but 3 were expected"):
        statcell2d.score_samples(GOOD[:, :1], structures=LABELS)
    with pytest.raises(ValueError, match="reference channel"):
        statcell2d.impute(GOOD[:, :1])


def test_unknown_structure_lists_known(conditional2d, statcell2d):
    for call in (lambda: conditional2d.transform(GOOD, structures="golgi"),
                 lambda: conditional2d.impute(GOOD, "golgi"),
                 lambda: conditional2d.score_samples(GOOD, structures=["golgi"] * 4),
                 lambda: statcell2d.impute(GOOD, ["golgi"]),
                 lambda: statcell2d.sample(2, structures="golgi"),
                 lambda: statcell2d.score(GOOD, ["nucleoli", "nucleoli", "golgi", "x"])):
        with pytest.raises(ValueError, match=r"not seen during fit: .*'golgi'.*\. Known"):
            call()


def test_unknown_labels_show_their_type():
    from cellgen.utils import check_labels

    # The integer 0 and the text "0" must not read alike in the message.
    with pytest.raises(ValueError, match=r"fit: '0', '1'\. Known labels: 0, 1\.$"):
        check_labels(np.array(["0", "1"]), 2, known=np.array([0, 1]))


def test_float64_beyond_float32_is_named_as_such():
    X = GOOD[:, :2].astype(np.float64)
    X[0, 0, 0, :3] = 1e39
    X[1, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match=r"4 NaN or infinite values \(3 of them finite in "
                                         r"float64 but beyond float32's range"):
        check_images(X)
    X[0, 0, 0, :3] = 0.5  # a NaN alone: no mention of float32's range
    with pytest.raises(ValueError, match=r"1 NaN or infinite values; remove"):
        check_images(X)


def test_labels_length_mismatch(conditional2d, statcell2d):
    with pytest.raises(ValueError, match="3 labels but the images hold 4 cells"):
        conditional2d.transform(GOOD, structures=LABELS[:3])
    with pytest.raises(ValueError, match="3 labels but the images hold 4 cells"):
        StatisticalCell(ReferenceVAE(**TINY), ConditionalStructureVAE(**TINY)).fit(
            GOOD, LABELS[:3])
    with pytest.raises(ValueError, match="structure label"):
        ConditionalStructureVAE(**TINY).fit(GOOD)
    with pytest.raises(ValueError, match="structures is required|structure label"):
        statcell2d.transform(GOOD)


@pytest.mark.parametrize("missing", [None, np.nan, pd.NA])
@pytest.mark.parametrize("as_series", ["object", "string"])
def test_missing_labels_are_named(missing, as_series):
    labels = pd.Series(list(LABELS), dtype=object)
    labels[1] = missing
    if as_series == "string":
        labels = labels.astype("string")
    with pytest.raises(ValueError, match="missing .* labels"):
        ConditionalStructureVAE(**TINY).fit(GOOD, labels)
    # As a plain list of strings, where numpy would turn a NaN into the string 'nan'.
    as_list = list(LABELS)
    as_list[1] = missing
    with pytest.raises(ValueError, match="missing .* labels"):
        ConditionalStructureVAE(**TINY).fit(GOOD, as_list)


def test_bfloat16_tensors_are_images():
    import torch

    from cellgen.utils import check_images

    X = torch.rand(2, 1, 8, 8).bfloat16()
    np.testing.assert_array_equal(check_images(X), X.float().numpy())


@pytest.mark.parametrize("param, value, error", [
    ("beta", 1.5, ValueError), ("beta", -0.1, ValueError), ("n_latent", 0, ValueError),
    ("batch_size", 0, ValueError), ("max_epochs", 0, ValueError), ("lr", 0.0, ValueError),
    ("validation_fraction", 1.0, ValueError), ("widths", [8, 0], ValueError),
    ("widths", [], ValueError), ("device", "tpu9", ValueError), ("n_latent", "4", ValueError),
])
def test_bad_parameters_are_named(param, value, error):
    est = ReferenceVAE(**TINY).set_params(**{param: value})
    with pytest.raises(error, match=param if param != "device" else "device"):
        est.fit(GOOD[:, :2])


def test_devices_this_machine_lacks_are_named(monkeypatch):
    import torch

    from cellgen.train import resolve_device

    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(ValueError, match="no Apple GPU"):
        resolve_device("mps")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(ValueError, match="only 1 CUDA GPU"):
        resolve_device("cuda:1")
    assert resolve_device("cuda:0") == "cuda:0"


@pytest.mark.parametrize("n_cells, params, match", [
    # 4 cells, 10% held out: the split rounds to no validation cell.
    (4, dict(validation_fraction=0.1), r"validation_fraction=0.1 of 4 cells leaves 0 cell"),
    # 3 cells, 90% held out: nothing left to train on.
    (3, dict(validation_fraction=0.9, batch_size=1), r"leaves 3 cell\(s\) for validation and 0"),
    (4, dict(validation_fraction=0.0, batch_size=5), r"batch_size=5 is larger than the 4 training"),
    (20, dict(validation_fraction=0.5, batch_size=16),
     r"batch_size=16 is larger than the 10 training cells \(10 held out"),
])
def test_splits_that_cannot_train_are_refused(n_cells, params, match):
    X = np.random.RandomState(0).rand(n_cells, 2, 16, 16).astype(np.float32)
    est = ReferenceVAE(**dict(TINY, **params))
    with pytest.raises(ValueError, match=match):
        est.fit(X)
    assert not hasattr(est, "net_")
    # The message's advice works: the largest batch it names trains.
    if "batch_size" in match:
        n_train = int(match.split("the ")[1].split(" ")[0])
        est.set_params(batch_size=n_train).fit(X)
        assert est.n_train_ == n_train


def test_bad_latents_and_counts(reference2d, conditional2d):
    with pytest.raises(ValueError, match=r"shape \(n_cells, 4\)"):
        reference2d.inverse_transform(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="NaN"):
        reference2d.inverse_transform(np.full((2, 4), np.nan))
    with pytest.raises(ValueError, match="n_samples must be at least 1"):
        reference2d.sample(0)
    with pytest.raises(TypeError, match="n_samples must be an integer"):
        reference2d.sample(2.5)
    with pytest.raises(ValueError, match="n_samples must be at least 1"):
        conditional2d.impute(GOOD, "nucleoli", n_samples=0)


def test_bad_channel_parameters():
    with pytest.raises(ValueError, match="structure_channel=5 is out of range"):
        ConditionalStructureVAE(structure_channel=5, **TINY).fit(GOOD, LABELS)
    with pytest.raises(ValueError, match="include the structure channel"):
        ConditionalStructureVAE(reference_channels=[0, 2], **TINY).fit(GOOD, LABELS)


def test_accepted_conversions(reference2d):
    # Integer, big-endian and non-contiguous arrays are converted, not rejected.
    ints = (GOOD[:, :2] * 100).astype(np.uint16)
    # ... with a warning: raw counts are used as they are, not rescaled.
    with pytest.warns(UserWarning, match=r"integer images \(uint16\).*IntensityNormalizer"):
        assert reference2d.transform(ints).shape == (4, 4)
    with pytest.warns(UserWarning, match="integer images"):
        ReferenceVAE(**dict(TINY, validation_fraction=0, batch_size=4)).fit(
            np.round(GOOD[:, :2]).astype(np.uint8))
    big = GOOD[:, :2].astype(">f4")
    np.testing.assert_array_equal(reference2d.transform(big), reference2d.transform(GOOD[:, :2]))
    strided = np.zeros((4, 2, 32, 32), np.float32)[:, :, ::2, ::2]
    assert reference2d.transform(strided).shape == (4, 4)
    # Torch tensors, as check_images and the transformers take them.
    torch = pytest.importorskip("torch")
    np.testing.assert_array_equal(reference2d.transform(torch.from_numpy(GOOD[:, :2])),
                                  reference2d.transform(GOOD[:, :2]))
    with pytest.warns(UserWarning, match=r"integer images \(torch.int16\)"):
        reference2d.transform(torch.from_numpy(ints.astype(np.int16)))
