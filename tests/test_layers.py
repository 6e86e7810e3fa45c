"""Attention, normalizations, minibatch std-dev and losses against independent computations."""

import math
from functools import partial

import numpy as np
import pytest
import torch
from ganforge_plugins.attention import SelfAttention
from ganforge_plugins.blocks import MinibatchStdDev
from ganforge_plugins.losses import WGANGP, Hinge, NonSaturating, RelativisticHinge, gradient_penalty
from ganforge_plugins.norms import EqualizedLR, PixelNorm, SpectralNorm

from ganforge.layers import Layers


def attention(channels=32, **kw):
    torch.manual_seed(0)
    return SelfAttention(
        channels=channels,
        layers=Layers(),
        reduction=kw.get("reduction", 8),
        value_reduction=kw.get("value_reduction", 8),
        pool=kw.get("pool", 1),
    )


def test_attention_is_identity_at_init():
    layer = attention()
    x = torch.randn(2, 32, 6, 5)
    assert layer.gamma.item() == 0
    assert torch.equal(layer(x), x)


def test_attention_matches_explicit_softmax_formula():
    layer = attention(channels=16, reduction=4, value_reduction=2)
    with torch.no_grad():
        layer.gamma.fill_(0.7)
    x = torch.randn(3, 16, 5, 4)
    B, C, H, W = x.shape
    f = layer.f(x).reshape(B, -1, H * W)  # [B, C/k, N]
    g = layer.g(x).reshape(B, -1, H * W)
    h = layer.h(x).reshape(B, -1, H * W)
    s = torch.einsum("bci,bcj->bij", f, g)  # s_ij = f(x_i)ᵀ g(x_j)
    beta = torch.softmax(s, dim=1)  # β_{j,i}: normalised over i, no 1/√d
    o = torch.einsum("bij,bci->bcj", beta, h)  # Σ_i β_{j,i} h(x_i)
    expected = 0.7 * layer.v(o.reshape(B, -1, H, W)) + x
    torch.testing.assert_close(layer(x), expected, rtol=1e-5, atol=1e-5)


def test_pooled_attention_is_biggans_max_pooled_keys_and_values():
    layer = attention(channels=16, reduction=4, value_reduction=2, pool=2)
    with torch.no_grad():
        layer.gamma.fill_(0.5)
    x = torch.randn(2, 16, 6, 4)
    B, C, H, W = x.shape
    pooled = [torch.nn.functional.max_pool2d(conv(x), 2).reshape(B, -1, H * W // 4) for conv in (layer.f, layer.h)]
    g = layer.g(x).reshape(B, -1, H * W)  # queries stay at every position
    beta = torch.softmax(torch.einsum("bci,bcj->bij", pooled[0], g), dim=1)  # over the N/4 pooled keys i
    o = torch.einsum("bij,bci->bcj", beta, pooled[1])
    torch.testing.assert_close(layer(x), 0.5 * layer.v(o.reshape(B, -1, H, W)) + x, rtol=1e-5, atol=1e-5)
    assert layer.attention(x).shape == (2, 24, 6)


def test_attention_rows_sum_to_one_and_shapes():
    layer = attention(channels=24)
    x = torch.randn(2, 24, 4, 4)
    beta = layer.attention(x)
    assert beta.shape == (2, 16, 16)
    torch.testing.assert_close(beta.sum(-1), torch.ones(2, 16))
    assert layer.f.out_channels == 3 and layer.g.out_channels == 3 and layer.h.out_channels == 3
    assert layer.v.out_channels == 24


def test_attention_gradients_reach_gamma():
    layer = attention()
    layer(torch.randn(2, 32, 4, 4)).pow(2).sum().backward()
    assert layer.gamma.grad is not None and layer.gamma.grad.abs().item() > 0


def test_spectral_norm_makes_top_singular_value_one():
    torch.manual_seed(0)
    layers = Layers(weight_norms=[SpectralNorm(power_iterations=1, eps=1e-12, scale="unit")])
    conv = layers.conv(8, 12, 3, padding=1)
    for _ in range(30):  # power iteration runs on each training-mode forward
        conv(torch.randn(1, 8, 4, 4))
    sigma = torch.linalg.matrix_norm(conv.weight.detach().reshape(12, -1), ord=2)
    assert sigma.item() == pytest.approx(1.0, abs=1e-3)


def test_spectral_norm_at_init_scale_starts_as_equalized_lr_and_holds_sigma_there():
    torch.manual_seed(0)
    plain = Layers(weight_norms=[EqualizedLR(gain=2**0.5)]).conv(8, 12, 3, padding=1)
    torch.manual_seed(0)
    both = Layers(weight_norms=[EqualizedLR(gain=2**0.5), SpectralNorm(power_iterations=1, eps=1e-12, scale="init")])
    conv = both.conv(8, 12, 3, padding=1)
    torch.testing.assert_close(conv.weight, plain.weight, rtol=2e-3, atol=0)  # σ estimated by 15 power iterations
    target = float(conv.parametrizations.weight[1].init_sigma)
    exact = float(torch.linalg.matrix_norm(plain.weight.detach().reshape(12, -1), ord=2))
    assert target == pytest.approx(exact, rel=5e-3)  # power iteration approaches σ from below
    with torch.no_grad():
        conv.parametrizations.weight.original.mul_(3.0).add_(torch.randn_like(conv.parametrizations.weight.original))
    for _ in range(30):
        conv(torch.randn(1, 8, 4, 4))
    sigma = torch.linalg.matrix_norm(conv.weight.detach().reshape(12, -1), ord=2)
    assert sigma.item() == pytest.approx(target, rel=5e-3)  # wherever training takes the raw weight (σ estimated)
    assert "parametrizations.weight.1.init_sigma" in conv.state_dict()


@pytest.mark.parametrize("make", [lambda: torch.nn.Conv2d(6, 5, 3), lambda: torch.nn.ConvTranspose2d(6, 5, 4)])
def test_the_bundled_spectral_norm_is_torchs_bit_for_bit(make):
    """It subclasses torch's private _SpectralNorm: this fails when torch changes what that relies on."""
    from torch.nn.utils.parametrizations import _SpectralNorm, spectral_norm

    torch.manual_seed(0)
    theirs = spectral_norm(make(), n_power_iterations=1, eps=1e-12)
    torch.manual_seed(0)
    ours = make()
    SpectralNorm(power_iterations=1, eps=1e-12, scale="unit").apply(ours, fan_in=1)
    assert isinstance(ours.parametrizations.weight[0], _SpectralNorm)
    x = torch.randn(2, 6, 5, 5)
    for _ in range(3):  # training-mode forwards run the power iteration
        assert torch.equal(ours(x), theirs(x))
    assert ours.state_dict().keys() == theirs.state_dict().keys()
    assert all(torch.equal(ours.state_dict()[k], theirs.state_dict()[k]) for k in theirs.state_dict())


def test_spectral_norm_skips_its_power_iterations_on_the_meta_device_only(monkeypatch):
    from torch.nn.utils.parametrizations import _SpectralNorm

    calls = []
    real = _SpectralNorm._power_method
    monkeypatch.setattr(_SpectralNorm, "_power_method", lambda self, m, n: calls.append(n) or real(self, m, n))
    layers = Layers(weight_norms=[SpectralNorm(power_iterations=2, eps=1e-12, scale="unit")])
    conv = layers.conv(4, 4, 3)
    conv(torch.randn(1, 4, 5, 5))
    # torch's 15 when attached, then power_iterations per training-mode call: registration checks one, the forward
    assert calls == [15, 2, 2]
    with torch.device("meta"):
        meta = layers.conv(4, 4, 3)
        meta(torch.randn(1, 4, 5, 5))
    assert calls == [15, 2, 2]  # nothing to compute on meta tensors


def test_equalized_lr_scales_unit_weights_at_run_time():
    torch.manual_seed(0)
    conv = Layers(weight_norms=[EqualizedLR(gain=math.sqrt(2))]).conv(16, 4, 3)
    raw = conv.parametrizations.weight.original
    assert raw.std().item() == pytest.approx(1.0, abs=0.1)
    assert torch.count_nonzero(conv.bias) == 0
    torch.testing.assert_close(conv.weight, raw * math.sqrt(2) / math.sqrt(16 * 9))


def test_equalized_lr_fan_in_of_transposed_stem_is_input_channels():
    conv = Layers(weight_norms=[EqualizedLR(gain=2.0)]).conv_transpose(32, 8, 4)
    torch.testing.assert_close(conv.weight, conv.parametrizations.weight.original * 2.0 / math.sqrt(32))


@pytest.mark.parametrize("transposed", [False, True])
def test_a_normalized_weight_is_cast_once_per_cached_update_and_computes_what_autocast_would(transposed):
    from torch.nn import functional as F
    from torch.nn.utils import parametrize

    torch.manual_seed(0)
    layers = Layers(weight_norms=[EqualizedLR(gain=2**0.5), SpectralNorm(power_iterations=1, eps=1e-12, scale="init")])
    conv = layers.conv_transpose(6, 4, 3) if transposed else layers.conv(6, 4, 3, padding=1)
    conv.eval()  # no power iteration: the effective weight is fixed
    run = F.conv_transpose2d if transposed else partial(F.conv2d, padding=1)
    x = torch.randn(2, 6, 5, 5)
    chain = conv.parametrizations.weight
    effective = chain[1](chain[0](chain.original)).detach()  # eq-lr's scale, then spectral norm, in fp32
    assert conv.weight.dtype == torch.float32 and torch.equal(conv.weight, effective)  # fp32: unchanged
    with torch.autocast("cpu", dtype=torch.bfloat16):
        expected = run(x, effective, conv.bias)  # autocast casts the fp32 weight itself
        assert torch.equal(conv(x), expected)
        with parametrize.cached():
            weight = conv.weight
            assert weight.dtype == torch.bfloat16 and torch.equal(weight, effective.to(torch.bfloat16))
            assert conv.weight is weight  # one cast for every call of the update
            assert torch.equal(conv(x), expected)


def test_pixel_norm_gives_unit_rms_per_pixel():
    y = PixelNorm(channels=6, eps=1e-8)(torch.randn(2, 6, 3, 3) * 5)
    torch.testing.assert_close(y.pow(2).mean(1), torch.ones(2, 3, 3))


def test_minibatch_stddev_against_numpy():
    x = torch.randn(8, 3, 4, 4)
    whole = MinibatchStdDev(0)(x)
    expected = np.sqrt(x.numpy().var(axis=0) + 1e-8).mean()
    assert whole.shape == (8, 4, 4, 4)
    np.testing.assert_allclose(whole[:, 3].numpy(), expected, rtol=1e-5)
    grouped = MinibatchStdDev(4)(x)  # groups are samples {n, n+2, n+4, n+6}
    arr = x.numpy().reshape(4, 2, 3, 4, 4)
    per_group = np.sqrt(arr.var(axis=0) + 1e-8).mean(axis=(1, 2, 3))
    np.testing.assert_allclose(grouped[:, 3, 0, 0].numpy(), np.tile(per_group, 4), rtol=1e-5)


def test_minibatch_stddev_group_shrinks_to_a_divisor_and_warns_when_that_is_one():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # groups of 2 for a batch of 6: the documented rule, no warning
        assert MinibatchStdDev(4)(torch.randn(6, 2, 4, 4)).shape == (6, 3, 4, 4)
    layer = MinibatchStdDev(4)
    with pytest.warns(UserWarning, match="a batch of 7 does not divide into groups of 4; groups of 1"):
        layer(torch.randn(7, 2, 4, 4))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        layer(torch.randn(7, 2, 4, 4))  # once per layer


class Table(torch.nn.Module):
    """A 'discriminator' that returns fixed scores per input list (identified by its first value)."""

    def __init__(self, scores):
        super().__init__()
        self.scores = scores

    def forward(self, images):
        return self.scores[float(images[0].flatten()[0])]


def hand_scores():
    real, fake = [torch.zeros(3, 1, 2, 2)], [torch.ones(3, 1, 2, 2)]
    r, f = torch.tensor([0.5, 2.0, -1.0]), torch.tensor([-0.5, 0.3, 1.5])
    return Table({0.0: r, 1.0: f}), real, fake


def test_relativistic_hinge_by_hand():
    D, real, fake = hand_scores()
    # mean r = 0.5, mean f = 0.4333…; rf = r - 0.4333 = [0.0667, 1.5667, -1.4333]; fr = f - 0.5 = [-1, -0.2, 1]
    rf = [0.5 - 1.3 / 3, 2.0 - 1.3 / 3, -1.0 - 1.3 / 3]
    fr = [-1.0, -0.2, 1.0]
    loss_d = np.mean([max(0, 1 - v) for v in rf]) + np.mean([max(0, 1 + v) for v in fr])
    loss_g = np.mean([max(0, 1 + v) for v in rf]) + np.mean([max(0, 1 - v) for v in fr])
    loss = RelativisticHinge()
    assert loss.discriminator(D, real, fake).item() == pytest.approx(loss_d, abs=1e-6)
    assert loss.generator(D, real, fake).item() == pytest.approx(loss_g, abs=1e-6)


def test_hinge_and_non_saturating_by_hand():
    D, real, fake = hand_scores()
    assert Hinge().discriminator(D, real, fake).item() == pytest.approx((0.5 + 0 + 2) / 3 + (0.5 + 1.3 + 2.5) / 3)
    assert Hinge().generator(D, real, fake).item() == pytest.approx(-1.3 / 3)
    sp = lambda v: math.log1p(math.exp(v))  # noqa: E731
    expected = np.mean([sp(-v) for v in (0.5, 2.0, -1.0)]) + np.mean([sp(v) for v in (-0.5, 0.3, 1.5)])
    assert NonSaturating().discriminator(D, real, fake).item() == pytest.approx(expected, rel=1e-6)


def test_gradient_penalty_against_closed_form():
    # D(x) = Σ w·x over two scales: its gradient is w everywhere, so the penalty is (‖w‖ − 1)².
    w1, w2 = torch.randn(1, 1, 2, 2), torch.randn(1, 1, 4, 4)

    def D(images):
        return (images[0] * w1).sum((1, 2, 3)) + (images[1] * w2).sum((1, 2, 3))

    real = [torch.randn(5, 1, 2, 2), torch.randn(5, 1, 4, 4)]
    fake = [torch.randn(5, 1, 2, 2), torch.randn(5, 1, 4, 4)]
    norm = torch.cat([w1.flatten(), w2.flatten()]).norm()
    assert gradient_penalty(D, real, fake).item() == pytest.approx((norm.item() - 1) ** 2, rel=1e-5)
    loss = WGANGP(gp_weight=10.0, drift=0.001).discriminator(D, real, fake)
    r, f = D(real), D(fake)
    expected = f.mean() - r.mean() + 0.001 * r.pow(2).mean() + 10 * (norm - 1) ** 2
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_hflip_flips_about_half():
    from ganforge_plugins.augment import HorizontalFlip

    torch.manual_seed(0)
    x = torch.arange(4.0).repeat(1000, 1, 4, 1)
    y = HorizontalFlip(p=0.5)(x)
    flipped = (y[:, 0, 0, 0] == 3).float().mean().item()
    assert 0.45 < flipped < 0.55
    assert torch.equal(HorizontalFlip(p=0.0)(x), x)
