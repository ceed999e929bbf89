import pytest
import torch
from torch.distributions import Normal, kl_divergence

from cellgen.module import VAE, ConditionalVAE, gaussian_kl
from cellgen.nn import (
    Conditioning,
    Decoder,
    Encoder,
    ReferencePyramid,
    ResidualDown,
    ResidualUp,
    downsample_pyramid,
)


@pytest.mark.parametrize("shape", [(16, 12), (8, 16, 12)])
def test_blocks_halve_and_double_every_axis(shape):
    ndim = len(shape)
    x = torch.rand(2, 3, *shape)
    down = ResidualDown(3, 5, ndim)(x)
    assert down.shape == (2, 5, *[s // 2 for s in shape])
    up = ResidualUp(5, 4, ndim)(down)
    assert up.shape == (2, 4, *shape)


@pytest.mark.parametrize("shape", [(16, 16), (8, 16, 16)])
def test_encoder_decoder_shapes_with_conditioning(shape):
    ndim = len(shape)
    ref = torch.rand(3, 2, *shape)
    levels = downsample_pyramid(ref, 2)
    label = torch.eye(4)[[0, 1, 3]]
    mu, logvar = Encoder(1, shape, (4, 8), 5, reference_channels=2, n_labels=4)(
        torch.rand(3, 1, *shape), levels, label)
    assert mu.shape == logvar.shape == (3, 5)
    out = Decoder(1, shape, (4, 8), 5, reference_channels=2, n_labels=4)(mu, levels, label)
    assert out.shape == (3, 1, *shape)
    assert Conditioning(2, 4, 8, ndim)(levels[1], label).shape == (3, 8, *[s // 2 for s in shape])


@pytest.mark.parametrize("shape", [(16, 16), (8, 16, 16)])
def test_reference_pyramid_feeds_encoder_and_decoder_per_level(shape):
    pyramid = ReferencePyramid(2, (4, 8), ndim=len(shape))
    levels = pyramid(torch.rand(3, 2, *shape))
    assert [t.shape[1] for t in levels] == pyramid.channels == [4, 4, 8]
    assert [tuple(t.shape[2:]) for t in levels] == [
        tuple(s // 2**k for s in shape) for k in range(3)]
    label = torch.eye(4)[[0, 1, 3]]
    kw = dict(reference_channels=pyramid.channels, n_labels=4, modulate=True)
    mu, _ = Encoder(1, shape, (4, 8), 5, **kw)(torch.rand(3, 1, *shape), levels, label)
    assert Decoder(1, shape, (4, 8), 5, **kw)(mu, levels, label).shape == (3, 1, *shape)
    with pytest.raises(ValueError, match="needs 3 entries"):
        Encoder(1, shape, (4, 8), 5, reference_channels=[4, 8], n_labels=4)


def test_reference_pyramid_sees_beyond_the_pixel_at_full_resolution():
    # The paper's 1x1 projection of the resized image makes a full-resolution
    # pixel depend on the reference at that pixel only; the pyramid's 3-wide
    # stem makes it depend on the neighbours too.
    ref = torch.zeros(1, 1, 8, 8, requires_grad=True)
    ReferencePyramid(1, (2,), ndim=2)(ref)[0][0, :, 4, 4].sum().backward()
    assert (ref.grad[0, 0] != 0).sum() == 9
    ref.grad = None
    Conditioning(1, 0, 2, ndim=2)(ref, None)[0, :, 4, 4].sum().backward()
    assert (ref.grad[0, 0] != 0).sum() == 1


def test_label_modulation_starts_additive_and_scales_the_reference_per_label():
    torch.manual_seed(0)
    plain = Conditioning(2, 3, 5, ndim=2)
    film = Conditioning(2, 3, 5, ndim=2, modulate=True)
    film.load_state_dict(plain.state_dict(), strict=False)
    ref, label = torch.rand(4, 2, 6, 6), torch.eye(3)[[0, 1, 2, 0]]
    torch.testing.assert_close(film(ref, label), plain(ref, label))
    with torch.no_grad():
        film.gamma.weight.copy_(torch.tensor([[1.0, 0, 0], [1.0, -1.0, 0]]))
    # Label 0 doubles the reference term, label 2 leaves it as it was.
    ref_term = plain(ref, label) - plain(torch.zeros_like(ref), label)
    got = film(ref, label) - film(torch.zeros_like(ref), label)
    torch.testing.assert_close(got[2], ref_term[2])
    torch.testing.assert_close(got[[0, 3]], 2 * ref_term[[0, 3]])
    # Label 1 ignores reference channel 1 altogether.
    other = ref.clone()
    other[:, 1] = torch.rand(4, 6, 6)
    torch.testing.assert_close(film(other, label)[1], film(ref, label)[1])
    assert not torch.allclose(film(other, label)[0], film(ref, label)[0])


def test_reference_pyramid_keeps_the_reference_channels_apart():
    pyramid = ReferencePyramid(2, (4, 8), ndim=2)
    ref = torch.rand(1, 2, 16, 16, requires_grad=True)
    for level in pyramid(ref):
        half = level.shape[1] // 2
        (grad,) = torch.autograd.grad(level[:, :half].sum(), ref, retain_graph=True)
        assert grad[0, 0].abs().sum() > 0
        assert grad[0, 1].abs().sum() == 0


def test_pyramid_is_linear_interpolation_at_half_scale():
    x = torch.rand(1, 1, 8, 8)
    levels = downsample_pyramid(x, 1)
    ref = torch.nn.functional.interpolate(x, scale_factor=0.5, mode="bilinear",
                                          align_corners=False)
    torch.testing.assert_close(levels[1], ref)


@pytest.mark.parametrize("conditioning", ["linear", "convolutional"])
def test_every_conv_and_linear_is_spectrally_normalized(conditioning):
    vae = ConditionalVAE(1, 2, 3, (16, 16), widths=(4, 8), n_latent=2, conditioning=conditioning)
    # The label's scale of the reference starts at zero, which has no
    # direction to normalize.
    gammas = {id(m.gamma) for m in vae.modules() if isinstance(m, Conditioning) and m.gamma}
    layers = [m for m in vae.modules()
              if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d, torch.nn.Linear))
              and id(m) not in gammas]
    assert len(layers) > 10
    assert all(hasattr(m, "parametrizations") for m in layers)
    assert len(gammas) == (0 if conditioning == "linear" else 4)


def test_unknown_conditioning_is_refused():
    with pytest.raises(ValueError, match="conditioning must be one of"):
        ConditionalVAE(1, 2, 3, (16, 16), widths=(4, 8), n_latent=2, conditioning="film")


def test_spectral_norm_frozen_in_eval():
    vae = VAE(2, (16, 16), widths=(4, 8), n_latent=3)
    x = torch.rand(4, 2, 16, 16)
    vae.train()
    vae.encode(x)  # one power iteration in training mode
    vae.eval()
    before = {k: v.clone() for k, v in vae.state_dict().items()}
    a = vae.encode(x)[0]
    b = vae.encode(x)[0]
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    for k, v in vae.state_dict().items():
        assert torch.equal(v, before[k]), k


@pytest.mark.parametrize("shape", [(13, 21), (5, 9, 11)])
def test_any_input_size_is_padded_and_cropped(shape):
    vae = VAE(2, shape, widths=(4, 8), n_latent=3)
    x_hat, mu, _ = vae(torch.rand(2, 2, *shape))
    assert x_hat.shape == (2, 2, *shape)


def test_kl_matches_torch_closed_form():
    mu = torch.randn(6, 5)
    logvar = torch.randn(6, 5)
    ref = kl_divergence(Normal(mu, torch.exp(0.5 * logvar)), Normal(0.0, 1.0))
    torch.testing.assert_close(gaussian_kl(mu, logvar), ref)


def test_loss_is_eq3_weighting_of_the_terms():
    vae = VAE(1, (8, 8), widths=(4,), n_latent=2)
    x = torch.rand(3, 1, 8, 8)
    x_hat, mu, logvar = vae(x)
    for beta in (0.0, 0.3, 1.0):
        out = vae.loss(x, x_hat, mu, logvar, beta=beta)
        expected = ((1 - beta) * ((x - x_hat) ** 2).sum((1, 2, 3))
                    + beta * gaussian_kl(mu, logvar).sum(1)).mean()
        torch.testing.assert_close(out.loss, expected)
        torch.testing.assert_close(out.elbo, -(out.reconstruction + out.kl))


@pytest.mark.parametrize("conditional", [False, True])
def test_k_sample_elbo_matches_monte_carlo_reference(conditional):
    torch.manual_seed(0)
    if conditional:
        model = ConditionalVAE(1, 2, 3, (8, 8), widths=(4,), n_latent=3).eval()
        x, ref, lab = torch.rand(4, 1, 8, 8), torch.rand(4, 2, 8, 8), torch.tensor([0, 1, 2, 0])
        args = (ref, lab)
    else:
        model = VAE(2, (8, 8), widths=(4,), n_latent=3).eval()
        x, args = torch.rand(4, 2, 8, 8), ()
    with torch.no_grad():
        estimate = model.elbo(x, *args, n_samples=4000)
        # Independent reference: a Gaussian likelihood of variance 1/2 per pixel
        # (its constant removed) and the KL of torch.distributions.
        mu, logvar = model.encode(x, *args)
        q = Normal(mu, torch.exp(0.5 * logvar))
        z = q.sample((400,))
        ll = torch.stack([
            Normal(model.decode(zk, *args), 0.5 ** 0.5).log_prob(x).flatten(1).sum(1)
            for zk in z
        ]).mean(0)
        const = 0.5 * x[0].numel() * torch.log(torch.tensor(torch.pi))
        reference = ll + const - kl_divergence(q, Normal(0.0, 1.0)).sum(1)
    torch.testing.assert_close(estimate, reference, rtol=0.02, atol=0.5)
