"""Progressive growing: phases, fade-in, shapes, and resume in the middle of a fade."""

import pytest
import torch
import torch.nn.functional as F
from conftest import write_tiny

from ganforge.assembly import build_gan
from ganforge.config import load_config
from ganforge.plugins import load_registry
from ganforge.training import Trainer

GROWING = [
    "model.connection={name = 'progressive', start_resolution = 4, default_phase_images = 32, fade_images = 16, "
    "batch_sizes = {4 = 8, 8 = 8, 16 = 4}}",
    "loss.name=wgan_gp",
    "model.generator.attention_resolutions=[]",
    "model.discriminator.attention_resolutions=[]",
]


def growing(tmp_path, *extra):
    return load_config(write_tiny(tmp_path), load_registry, GROWING + list(extra))


def set_growth(gan, resolution, alpha):
    gan.set_growth(resolution, alpha)


def test_schedule_phases_alpha_and_batch_sizes(tmp_path):
    config, registry = growing(tmp_path)
    trainer = Trainer(config, registry, tmp_path / "run", device="cpu")
    schedule = trainer.schedule.total_steps()
    assert schedule == 4 + 4 + 8  # 32 images per phase at batch 8, 8, 4
    assert trainer.total_steps() == 4  # train.steps in the config wins over the schedule
    g = [trainer.growth(step) for step in range(schedule)]
    assert [x.resolution for x in g] == [4] * 4 + [8] * 4 + [16] * 8
    assert [x.alpha for x in g[4:8]] == [0.0, 0.5, 1.0, 1.0]  # 16 images of fade at batch 8
    assert [x.alpha for x in g[8:12]] == [0.0, 0.25, 0.5, 0.75]
    assert [x.batch_size for x in g] == [8] * 8 + [4] * 8
    assert [x.images_seen for x in g[:9]] == [0, 8, 16, 24, 32, 40, 48, 56, 64]
    assert trainer.growth(100).resolution == 16 and trainer.growth(100).alpha == 1.0  # stays grown


def test_shapes_at_each_phase(tmp_path):
    config, registry = growing(tmp_path)
    gan = build_gan(config.model, registry)
    for resolution in (4, 8, 16):
        for alpha in (0.0, 0.5, 1.0):
            set_growth(gan, resolution, alpha)
            images = gan.generator(torch.randn(4, 16))
            assert [tuple(x.shape) for x in images] == [(4, 1, resolution, resolution)]
            assert gan.discriminator(images).shape == (4,)
            real = gan.connection.pyramid(torch.randn(4, 1, 16, 16), config.model.resolutions)
            assert real[0].shape == (4, 1, resolution, resolution)


def test_fade_in_at_alpha_zero_is_the_upsampled_lower_resolution(tmp_path):
    config, registry = growing(tmp_path)
    gan = build_gan(config.model, registry)
    z = torch.randn(3, 16)
    with torch.no_grad():
        set_growth(gan, 8, 1.0)
        low = gan.generator(z)[0]
        set_growth(gan, 16, 0.0)
        faded = gan.generator(z)[0]
        set_growth(gan, 16, 1.0)
        full = gan.generator(z)[0]
        set_growth(gan, 16, 0.25)
        quarter = gan.generator(z)[0]
    upsampled = F.interpolate(low, scale_factor=2.0, mode="nearest")
    torch.testing.assert_close(faded, upsampled)
    torch.testing.assert_close(quarter, 0.75 * upsampled + 0.25 * full)
    real = torch.randn(2, 1, 16, 16)
    gan.set_growth(16, 0.0)
    torch.testing.assert_close(
        gan.connection.pyramid(real, [4, 8, 16])[0],
        F.interpolate(F.avg_pool2d(real, 2), scale_factor=2.0, mode="nearest"),
    )


def test_resume_mid_fade_equals_uninterrupted(tmp_path):
    config, registry = growing(tmp_path)
    straight = Trainer(config, registry, tmp_path / "a", device="cpu")
    straight.fit(11)  # into the 16×16 fade (steps 8-15)
    first = Trainer(config, registry, tmp_path / "b", device="cpu")
    first.fit(10)
    assert first.growth(9).resolution == 16 and 0 < first.growth(9).alpha < 1
    second = Trainer(config, registry, tmp_path / "b", device="cpu")
    second.resume(tmp_path / "b")
    second.fit(11)
    for a, b in ((straight.G, second.G), (straight.D, second.D), (straight.G_ema, second.G_ema)):
        for key, value in a.state_dict().items():
            torch.testing.assert_close(value, b.state_dict()[key], rtol=0, atol=0)
    assert int(second.G.head.growth.resolution) == 16
    assert float(second.G.head.growth.alpha) == second.growth(10).alpha


def test_weights_saved_mid_growth_sample_at_their_resolution(tmp_path):
    from ganforge.sampling import generate, latents, load_generator

    config, registry = growing(tmp_path)
    Trainer(config, registry, tmp_path / "run", device="cpu").fit(6)  # in the 8×8 phase
    G, _ = load_generator(tmp_path / "run" / "generator_ema.safetensors", load_registry())
    images = next(generate(G, latents(2, 16, 0)))
    assert images.shape == (2, 1, 8, 8)


@pytest.mark.slow
def test_pggan_examples_validate_and_the_paper_recipe_dry_runs():
    from pathlib import Path

    from click.testing import CliRunner

    from ganforge.cli import main

    examples = Path(__file__).resolve().parents[1] / "examples"
    small, _ = load_config(examples / "pggan.toml", load_registry)
    assert small.model.connection.name == "progressive" and small.loss.name == "wgan_gp"
    paper, registry = load_config(examples / "pggan_cxr14_1024.toml", load_registry)
    assert paper.model.resolution == 1024 and paper.model.latent_dim == 512
    assert list(paper.model.generator.channels.values()) == [512, 512, 512, 512, 256, 128, 64, 32, 16]
    assert paper.model.connection.params["batch_sizes"][1024] == 12
    assert (paper.optim.params["lr"], paper.optim.params["betas"], paper.optim.params["eps"]) == (
        0.001,
        (0.0, 0.99),
        1e-7,
    )
    result = CliRunner().invoke(main, ["build", str(examples / "pggan_cxr14_1024.toml"), "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "3×1024×1024" in result.output
