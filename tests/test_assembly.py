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


@pytest.mark.parametrize("fakes", ["skip", "pooled"])
def test_generated_pyramid_is_as_consistent_as_a_real_one(tmp_path, fakes):
    """skip and pooled: each coarser image is the finest one average-pooled, exactly as for real images."""
    config, registry = tiny_model(tmp_path, f"model.connection.fakes='{fakes}'")
    gan = build_gan(config.model, registry)
    images = gan.generator(torch.randn(3, 16))
    top = images[-1]
    assert [x.shape[-1] for x in images] == [4, 8, 16]
    for x in images[:-1]:
        k = 16 // x.shape[-1]
        torch.testing.assert_close(x, top.reshape(3, 1, x.shape[-1], k, x.shape[-1], k).mean((3, 5)))
    heads = gan.generator.head.to_image
    assert sorted(heads) == (["16"] if fakes == "pooled" else ["16", "4", "8"])  # pooled: one head, no dead ones
    gan.discriminator(images).sum().backward()
    grads = [p.grad for conv in heads.values() for p in conv.parameters()]
    assert all(g is not None and g.abs().sum() > 0 for g in grads)  # D's gradient reaches every head


def test_skip_sums_every_scale_into_the_output(tmp_path):
    """StyleGAN2's skip sum: the finest image is each head's image, bilinearly upsampled to it, summed."""
    config, registry = tiny_model(tmp_path, "model.connection.fakes='skip'")
    head = build_generator(config.model, registry).head
    features = {r: torch.randn(2, c, r, r) for r, c in ((4, 16), (8, 16), (16, 8))}
    with torch.no_grad():
        out = head(features)[-1]
        images = {r: head.to_image[str(r)](x) for r, x in features.items()}

    def up(x):
        return torch.nn.functional.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)

    torch.testing.assert_close(out, up(up(images[4])) + up(images[8]) + images[16])


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


def test_a_run_recorded_before_fakes_existed_reads_as_heads_and_resumes(tmp_path):
    from ganforge.checkpointing import same_experiment
    from ganforge.config import as_recorded
    from ganforge.errors import CheckpointError

    config, _ = tiny_model(tmp_path)
    recorded = config.to_dict()
    del recorded["model"]["connection"]["fakes"]  # what a run written before the setting recorded
    assert as_recorded(recorded)["model"]["connection"]["fakes"] == "heads"
    same_experiment("run", as_recorded(recorded), config)  # resumes as it ran
    pooled, _ = tiny_model(tmp_path, "model.connection.fakes='pooled'")
    with pytest.raises(CheckpointError, match=r"config differs from the run's in model.connection.fakes$"):
        same_experiment("run", as_recorded(recorded), pooled)
