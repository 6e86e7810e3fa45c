"""Mixed precision and memory layout: each mode trains, stays close to fp32, and resumes exactly."""

from __future__ import annotations

import pytest
import torch

import ganforge.precision as precision
from ganforge.errors import GanforgeError
from ganforge.training import Trainer


def first_step(config, registry, tmp_path, **train):
    for key, value in train.items():
        setattr(config.train, key, value)
    trainer = Trainer(config, registry, tmp_path / "_".join(map(str, train.values())), device="cpu")
    z = torch.randn(4, config.model.latent_dim, generator=torch.Generator().manual_seed(0))
    with trainer.precision.autocast(), torch.no_grad():
        image = trainer.G(z)[-1].float()
    loss_d, loss_g = trainer.train_step()
    return image, float(loss_d), float(loss_g), trainer


def test_explicit_modes_are_checked_and_the_hardware_is_summarised(monkeypatch):
    cpu = torch.device("cpu")
    assert precision.resolve("fp16", cpu) == "fp16" and precision.resolve("fp32", cpu) == "fp32"
    for wrong in ("fp8", "auto"):  # auto is decided by measurement (test_autotune.py), not here
        with pytest.raises(GanforgeError, match=f"'{wrong}' is not one of fp32, bf16, fp16"):
            precision.resolve(wrong, cpu)
    monkeypatch.setattr(precision, "cpu_has_amx", lambda: False)
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    assert "native bf16: AVX-512-BF16, no AMX" in precision.hardware_summary()
    monkeypatch.setattr(precision, "cpu_has_amx", lambda: True)
    assert "native bf16: AMX" in precision.hardware_summary() and "CPU " in precision.hardware_summary()


@pytest.mark.parametrize(
    "train, tolerance",
    [
        ({"precision": "bf16"}, 0.05),  # each against fp32 in the standard (NCHW) layout
        ({"precision": "fp16"}, 0.05),  # the loss after one Adam step of D: sign-like updates amplify rounding
        ({"channels_last": True}, 1e-5),
        ({"precision": "bf16", "channels_last": True}, 0.05),
    ],
)
def test_each_mode_is_finite_and_close_to_fp32(tiny, tmp_path, train, tolerance):
    config, registry = tiny
    baseline = {"precision": "fp32", "channels_last": False}
    image32, d32, g32, _ = first_step(config.model_copy(deep=True), registry, tmp_path, **baseline)
    image, d, g, trainer = first_step(config.model_copy(deep=True), registry, tmp_path, **{**baseline, **train})
    assert torch.isfinite(image).all() and torch.isfinite(torch.tensor([d, g])).all(), (d, g)
    assert (image - image32).abs().max() < 4 * tolerance  # same weights, same latents
    assert d == pytest.approx(d32, rel=tolerance, abs=tolerance) and g == pytest.approx(
        g32, rel=tolerance, abs=tolerance
    )
    assert all(p.dtype == torch.float32 for p in trainer.G.parameters())  # weights and Adam moments stay fp32
    assert all(state["exp_avg"].dtype == torch.float32 for state in trainer.opt_g.state.values())


def test_spectral_norm_computes_sigma_outside_autocast(tiny, tmp_path, monkeypatch):
    from torch.nn.utils.parametrizations import _SpectralNorm

    seen = []
    forward = _SpectralNorm.forward

    def recording(self, weight):
        seen.append(torch.is_autocast_enabled(weight.device.type))
        return forward(self, weight)

    monkeypatch.setattr(_SpectralNorm, "forward", recording)
    config, registry = tiny
    config.train.precision = "bf16"
    trainer = Trainer(config, registry, tmp_path, device="cpu")
    with trainer.precision.autocast():
        trainer.G(torch.zeros(2, config.model.latent_dim))
    assert seen and not any(seen)  # σ and W/σ in fp32; the convolution itself then runs in bf16


def test_fp16_resumes_exactly_with_its_gradient_scalers(tiny, tmp_path):
    config, registry = tiny
    config.train.precision = "fp16"
    straight = Trainer(config, registry, tmp_path / "straight", device="cpu")
    straight.fit(4)
    first = Trainer(config, registry, tmp_path / "split", device="cpu")
    first.fit(2)
    scale = first.precision.scalers["generator"].get_scale()
    second = Trainer(config, registry, tmp_path / "split", device="cpu")
    second.resume(tmp_path / "split")
    assert second.precision.scalers["generator"].get_scale() == scale
    second.fit(4)
    for a, b in ((straight.G, second.G), (straight.D, second.D)):
        for key, value in a.state_dict().items():
            assert torch.equal(value, b.state_dict()[key]), key


@pytest.mark.slow
def test_compile_gives_the_eager_losses(tiny, tmp_path):
    config, registry = tiny
    _, d_eager, g_eager, _ = first_step(config.model_copy(deep=True), registry, tmp_path, compile=False)
    _, d, g, trainer = first_step(config.model_copy(deep=True), registry, tmp_path, compile=True)
    assert trainer.G_run is not trainer.G  # the compiled wrapper ran
    assert d == pytest.approx(d_eager, rel=1e-4) and g == pytest.approx(g_eager, rel=1e-4)


def test_fp16_with_skip_mode_goes_on_after_a_skipped_step(tiny, tmp_path):
    """A skipped fp16 step still updates the gradient scaler, or the next unscale_ would raise."""
    config, registry = tiny
    config.train.precision, config.train.on_nonfinite = "fp16", "skip"
    trainer = Trainer(config, registry, tmp_path, device="cpu")
    loss_d = trainer.loss.discriminator
    trainer.loss.discriminator = lambda *a: loss_d(*a) * (float("nan") if trainer.step == 1 else 1.0)
    trainer.fit(4)
    assert trainer.step == 4 and trainer.finite.skipped == 1
    assert all(torch.isfinite(p).all() for p in trainer.D.parameters())
