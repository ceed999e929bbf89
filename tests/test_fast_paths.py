"""Fast paths: mixed precision, channels-last order, compilation, loader workers, batch sizes.

On the CPU they must train and infer correctly; their speed is measured in benchmarks/.
"""

import contextlib
import shutil

import numpy as np
import pytest
import torch
from skorch.callbacks import GradientNormClipping

from cellgen import ConditionalStructureVAE, ReferenceVAE
from cellgen.train import resolve_precision

from .conftest import TINY

X = np.random.RandomState(0).rand(32, 2, 16, 16).astype(np.float32)


def _conv_input_dtypes(est):
    """Record the dtype reaching the first convolution during fit."""
    seen = set()

    def hook(module, args, output):
        seen.add(output.dtype)

    def attach(net):
        first = next(m for m in net.module_.modules() if isinstance(m, torch.nn.Conv2d))
        first.register_forward_hook(hook)

    return seen, attach


class _Hooked(GradientNormClipping):
    """Clips gradients and, on the first batch, hooks the first convolution."""

    def __init__(self, attach, **kwargs):
        super().__init__(**kwargs)
        self.attach = attach
        self.grad_norms = []

    def on_train_begin(self, net, **kwargs):
        self.attach(net)

    def on_grad_computed(self, net, named_parameters, **kwargs):
        params = [p for _, p in named_parameters if p.grad is not None]
        self.grad_norms.append(float(torch.norm(torch.stack([p.grad.norm() for p in params]))))
        super().on_grad_computed(net, params_as_named(params), **kwargs)


def params_as_named(params):
    return [(str(i), p) for i, p in enumerate(params)]


def test_auto_precision_is_float32_on_cpu():
    assert resolve_precision("auto", "cpu") is None
    assert resolve_precision("fp32", "cpu") is None
    assert resolve_precision("bf16", "cpu") is torch.bfloat16
    with pytest.raises(ValueError, match="precision must be"):
        resolve_precision("half", "cpu")
    with pytest.raises(ValueError, match="precision"):
        ReferenceVAE(**dict(TINY, precision="half")).fit(X)


@pytest.mark.parametrize("precision, dtype", [("bf16", torch.bfloat16), ("fp16", torch.float16),
                                              ("fp32", torch.float32)])
def test_mixed_precision_trains_in_that_dtype(precision, dtype):
    seen, attach = _conv_input_dtypes(None)
    clip = _Hooked(attach, gradient_clip_value=1e6)
    est = ReferenceVAE(**dict(TINY, max_epochs=10, precision=precision, lr=3e-3),
                       callbacks=[clip], random_state=0).fit(X)
    # The convolutions really ran in the requested precision...
    assert seen == {dtype}
    # ...while the loss stayed float32 and finite, and training made progress.
    history = est.history_
    assert np.isfinite(history["train_loss"]).all()
    assert history["train_loss"].iloc[-1] < history["train_loss"].iloc[0]
    finite = [g for g in clip.grad_norms if np.isfinite(g)]
    assert finite
    if precision == "fp16":
        # float16 overflows while the loss scale settles (those steps are skipped),
        # and callbacks see unscaled gradients: the scale (65536 at the start,
        # hundreds after) must not reach them.
        assert est.net_.scaler_.get_scale() < 65536
        reference = ReferenceVAE(**dict(TINY, max_epochs=10, precision="fp32", lr=3e-3),
                                 callbacks=[_Hooked(lambda net: None, gradient_clip_value=1e6)],
                                 random_state=0).fit(X)
        ratio = np.median(finite) / np.median(reference.callbacks[0].grad_norms)
        assert 0.1 < ratio < 10
    Z = est.transform(X)
    assert Z.dtype == np.float32 and np.isfinite(Z).all()
    assert np.isfinite(est.score_samples(X)).all()


def test_bf16_embeddings_match_float32_with_the_same_weights():
    est = ReferenceVAE(**dict(TINY, precision="fp32"), random_state=0).fit(X)
    Z32 = est.transform(X)
    est.autocast_dtype_ = torch.bfloat16  # same weights, inference in bfloat16
    Z16 = est.transform(X)
    assert not np.array_equal(Z16, Z32)  # bfloat16 did run
    np.testing.assert_allclose(Z16, Z32, atol=0.05 * np.abs(Z32).max())


def test_elbo_of_bf16_posteriors_is_summed_in_float32():
    # Under autocast the encoder returns bfloat16 means; score_samples (and so the
    # coupling ratios) must still sum the KL in float32, as the training loss does.
    from cellgen.module import VAE, gaussian_kl

    module = VAE(in_channels=2, spatial_shape=(16, 16), widths=(8,), n_latent=64)
    gen = torch.Generator().manual_seed(0)
    mu = (2 * torch.randn(5, 64, generator=gen)).to(torch.bfloat16)
    logvar = torch.randn(5, 64, generator=gen).to(torch.bfloat16)
    x = torch.rand(5, 2, 16, 16, generator=gen)
    decode = lambda z: torch.zeros(z.shape[0], 2, 16, 16)  # noqa: E731
    elbo = module._elbo_k(x, mu, logvar, decode, 3)
    assert elbo.dtype == torch.float32
    expected = -(x.pow(2).flatten(1).sum(1) + gaussian_kl(mu.float(), logvar.float()).sum(1))
    torch.testing.assert_close(elbo, expected, rtol=1e-6, atol=1e-4)


def test_channels_last_gives_the_same_model(monkeypatch):
    last = ReferenceVAE(**TINY, random_state=0).fit(X)  # channels-last by default
    monkeypatch.setattr(ReferenceVAE, "_channels_last", lambda self: False)
    plain = ReferenceVAE(**TINY, random_state=0).fit(X)
    conv = next(m for m in plain.module_.modules() if isinstance(m, torch.nn.Conv2d))
    assert not conv.weight.is_contiguous(memory_format=torch.channels_last)
    conv = next(m for m in last.module_.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    np.testing.assert_allclose(last.transform(X), plain.transform(X), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(last.history_["train_loss"], plain.history_["train_loss"],
                               rtol=1e-5)


def test_channels_last_in_3d(monkeypatch):
    X3 = np.random.RandomState(2).rand(24, 2, 8, 16, 16).astype(np.float32)
    last = ReferenceVAE(**dict(TINY, batch_size=8), random_state=0).fit(X3)
    monkeypatch.setattr(ReferenceVAE, "_channels_last", lambda self: False)
    plain = ReferenceVAE(**dict(TINY, batch_size=8), random_state=0).fit(X3)
    conv = next(m for m in last.module_.modules() if isinstance(m, torch.nn.Conv3d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last_3d)
    np.testing.assert_allclose(last.transform(X3), plain.transform(X3), rtol=1e-4, atol=1e-5)


def test_loader_workers_give_the_same_model(tmp_path):
    # Workers read rows of a memory map in the background; the shuffling is
    # drawn in the main process, so the result is the same.
    path = tmp_path / "cells.npy"
    np.save(path, X)
    mm = np.load(path, mmap_mode="r")
    a = ReferenceVAE(**TINY, random_state=0).fit(mm)
    b = ReferenceVAE(**dict(TINY, num_workers=2), random_state=0).fit(mm)
    np.testing.assert_array_equal(a.transform(X), b.transform(X))


def test_read_only_cells_train_without_torch_warnings(tmp_path, recwarn):
    # A memory map opened read-only (what cache_manifest returns) is the
    # recommended input; torch warns about every non-writable array it wraps.
    path = tmp_path / "cells.npy"
    np.save(path, X)
    mm = np.load(path, mmap_mode="r")
    est = ReferenceVAE(**TINY, random_state=0).fit(mm)
    Z = est.transform(mm)
    assert not [w for w in recwarn if "not writable" in str(w.message)]
    np.testing.assert_array_equal(Z, ReferenceVAE(**TINY, random_state=0).fit(X).transform(X))


def test_inference_batch_size_does_not_change_results():
    est = ReferenceVAE(**TINY, random_state=0).fit(X)
    Z = est.transform(X)
    for size in (1, 5, 1000):
        est.set_params(inference_batch_size=size)
        np.testing.assert_allclose(est.transform(X), Z, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="inference_batch_size"):
        ReferenceVAE(**dict(TINY, inference_batch_size=0)).fit(X)


def test_conditional_model_in_bf16():
    X3 = np.random.RandomState(1).rand(32, 3, 16, 16).astype(np.float32)
    y = np.array(["a", "b"] * 16, dtype=object)
    est = ConditionalStructureVAE(**dict(TINY, precision="bf16"), random_state=0).fit(X3, y)
    assert np.isfinite(est.history_["train_loss"]).all()
    assert np.isfinite(est.score_samples(X3, structures=y)).all()
    assert est.impute(X3[:4], "a").shape == (4, 1, 16, 16)


@pytest.mark.slow
@pytest.mark.skipif(not (shutil.which("g++") or shutil.which("c++")),
                    reason="torch.compile on the CPU needs a C++ compiler")
def test_compiled_model_trains_saves_and_loads(tmp_path):
    plain = ReferenceVAE(**TINY, random_state=0).fit(X)
    compiled = ReferenceVAE(**dict(TINY, compile=True), random_state=0).fit(X)
    np.testing.assert_allclose(compiled.history_["train_loss"], plain.history_["train_loss"],
                               rtol=1e-2)
    # Weights are saved without the compile wrapper's prefix and load anywhere.
    assert not any(k.startswith("_orig_mod") for k in compiled.module_.state_dict())
    compiled.save(tmp_path / "m")
    back = ReferenceVAE.load(tmp_path / "m")
    np.testing.assert_allclose(back.transform(X), compiled.transform(X), rtol=1e-5, atol=1e-6)


def test_mixed_precision_in_3d_on_the_cpu_warns():
    X3 = np.random.RandomState(2).rand(24, 2, 8, 16, 16).astype(np.float32)
    # The warning comes before training; training itself may then hit the very CPU
    # bug it warns about (NaN losses on some CPUs), which is not what this checks.
    with pytest.warns(UserWarning, match="3D convolutions"):
        with contextlib.suppress(FloatingPointError):
            ReferenceVAE(**dict(TINY, batch_size=8, max_epochs=1, precision="bf16"),
                         random_state=0).fit(X3)

