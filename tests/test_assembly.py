import pytest
import torch
from conftest import write_tiny

from ganforge.assembly import build_gan, build_generator
from ganforge.config import load_config
from ganforge.plugins import load_registry


def tiny_model(tmp_path, *overrides):
    return load_config(write_tiny(tmp_path), load_registry, overrides)


@pytest.mark.parametrize("resolution", [8, 16, 32, 64, 128])
@pytest.mark.parametrize("combine", ["simple", "lin_cat", "cat_lin"])
def test_shapes_at_every_resolution(tmp_path, resolution, combine):
    widths = {r: 8 for r in (4, 8, 16, 32, 64, 128) if r <= resolution}
    table = "{" + ", ".join(f"{r} = {w}" for r, w in widths.items()) + "}"
    config, registry = tiny_model(
        tmp_path,
        f"model.resolution={resolution}",
        f"model.generator.channels={table}",
        f"model.discriminator.channels={table}",
        f"model.connection.combine='{combine}'",
        "model.generator.attention_resolutions=[8]",
        "model.discriminator.attention_resolutions=[8]",
        "model.image_channels=3",
    )
    gan = build_gan(config.model, registry)
    images = gan.generator(torch.randn(4, 16))
    assert [tuple(x.shape) for x in images] == [(4, 3, r, r) for r in sorted(widths)]  # one output per scale
    assert gan.discriminator(images).shape == (4,)
    real = gan.connection.pyramid(torch.randn(4, 3, resolution, resolution), config.model.resolutions)
    assert [x.shape for x in real] == [x.shape for x in images]


def test_single_scale_emits_one_image(tmp_path):
    config, registry = tiny_model(tmp_path, "model.connection='single_scale'")
    gan = build_gan(config.model, registry)
    images = gan.generator(torch.randn(2, 16))
    assert len(images) == 1 and images[0].shape == (2, 1, 16, 16)
    assert gan.discriminator(images).shape == (2,)
    assert len(gan.connection.pyramid(torch.randn(2, 1, 16, 16), [4, 8, 16])) == 1


def test_pyramid_is_average_pooling(tmp_path):
    config, registry = tiny_model(tmp_path)
    gan = build_gan(config.model, registry)
    x = torch.randn(2, 1, 16, 16)
    coarse = gan.connection.pyramid(x, [4, 8, 16])
    torch.testing.assert_close(coarse[0], x.reshape(2, 1, 4, 4, 4, 4).mean((3, 5)))
    assert coarse[-1] is x


def test_parameter_counts_match_reference_msggan(registry):
    """BMSG-GAN at 64×64, latent 512, RGB, lin_cat: G 22,490,383 and D 18,364,161 parameters."""
    from pathlib import Path

    examples = Path(__file__).resolve().parents[1] / "examples"
    config, registry = load_config(examples / "msggan.toml", load_registry, ["model.image_channels=3"])
    gan = build_gan(config.model, registry)
    assert sum(p.numel() for p in gan.generator.parameters()) == 22_490_383
    assert sum(p.numel() for p in gan.discriminator.parameters()) == 18_364_161


def test_samgan_has_attention_and_msggan_has_none(registry):
    from pathlib import Path

    examples = Path(__file__).resolve().parents[1] / "examples"
    for name, expected in (("demo", True), ("msggan", False)):
        config, registry = load_config(examples / f"{name}.toml", load_registry)
        G = build_generator(config.model, registry)
        assert any("gamma" in key for key in G.state_dict()) is expected


def test_attention_positions_follow_config(tmp_path):
    config, registry = tiny_model(tmp_path)
    gan = build_gan(config.model, registry)
    g_attention = [n for n, m in gan.generator.named_modules() if type(m).__name__ == "SelfAttention"]
    d_attention = [n for n, m in gan.discriminator.named_modules() if type(m).__name__ == "SelfAttention"]
    assert g_attention == ["stages.8.1", "stages.16.1"]
    assert d_attention == ["stages.8.0"]


def test_state_dict_names_are_those_every_weights_file_was_written_with(tmp_path):
    """A stage with attention is an nn.Sequential (``.0``/``.1``), one without is the block itself."""
    config, registry = tiny_model(tmp_path)
    keys = set(build_generator(config.model, registry).state_dict())
    assert {"stages.8.0.conv1.parametrizations.weight.original", "stages.8.1.gamma"} <= keys  # attention at 8
    plain, _ = tiny_model(tmp_path, "model.generator.attention_resolutions=[]")
    keys = set(build_generator(plain.model, registry).state_dict())
    assert "stages.8.conv1.parametrizations.weight.original" in keys and not any(".gamma" in k for k in keys)
