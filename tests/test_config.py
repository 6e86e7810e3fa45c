from pathlib import Path

import pytest
from conftest import write_tiny

from ganforge.config import load_config, parse_override
from ganforge.errors import ConfigError
from ganforge.plugins import load_registry

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def load(path, *overrides):
    return load_config(path, load_registry, overrides)[0]


def test_defaults_of_components_are_filled_in(tiny):
    config, _ = tiny
    assert config.model.generator.attention.params == {"reduction": 8, "value_reduction": 8, "pool": 1}
    assert config.optim.params == {"lr": 0.002, "betas": (0.0, 0.99), "eps": 1e-8, "fused": False}
    assert config.to_dict()["model"]["generator"]["channels"] == {"4": 16, "8": 16, "16": 8}


def test_set_overrides_any_key(tiny_path):
    config = load(
        tiny_path,
        "optim.lr=0.0002",
        "model.generator.attention.reduction=4",
        "name=other",
        "model.discriminator.attention_resolutions=[]",
    )
    assert config.optim.params["lr"] == 0.0002
    assert config.model.generator.attention.params["reduction"] == 4
    assert config.name == "other"
    assert config.model.discriminator.attention_resolutions == []


@pytest.mark.parametrize(
    "overrides, key, reason",
    [
        (["optim.lr=-1"], "optim.lr", "greater than 0"),
        (["optim.lrr=0.1"], "optim.lrr", "unknown key"),
        (["model.generator.attention.reduction='x'"], "model.generator.attention.reduction", "valid integer"),
        (["model.resolution=48"], "model.resolution", "not a power of two"),
        (
            ["model.generator.attention.name=self_atention"],
            "model.generator.attention.name",
            "did you mean self_attention",
        ),
        (["loss.name=hinj"], "loss.name", "did you mean hinge"),
        (["train.batch_sise=3"], "train.batch_sise", "unknown key"),
        (["model.image_channels=2"], "model.image_channels", "Input should be 1 or 3"),
        (["model.generator.attention_resolutions=[128]"], "model", "not in 4..16"),
    ],
)
def test_errors_name_file_key_and_reason(tiny_path, overrides, key, reason):
    with pytest.raises(ConfigError) as err:
        load(tiny_path, *overrides)
    message = str(err.value)
    assert message.startswith(f"{tiny_path}: {key}")
    assert reason in message
    assert "\n" not in message


def test_missing_channel_width_is_reported(tmp_path):
    path = write_tiny(tmp_path, extra="")
    path.write_text(
        path.read_text().replace("channels = { 4 = 16, 8 = 16, 16 = 8 }", "channels = { 4 = 16, 8 = 16 }", 1)
    )
    with pytest.raises(ConfigError, match="generator.channels has no width for resolution.s. \\[16\\]"):
        load(path)


def test_invalid_toml_and_missing_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("name = \n")
    with pytest.raises(ConfigError, match=f"{bad}: invalid TOML"):
        load(bad)
    with pytest.raises(ConfigError, match="config file not found"):
        load(tmp_path / "nope.toml")


def test_base_inheritance_merges_tables(tmp_path, tiny_path):
    child = tmp_path / "child.toml"
    child.write_text('base = "tiny.toml"\nname = "child"\n[model.generator]\nattention_resolutions = []\n')
    config = load(child)
    assert config.name == "child"
    assert config.model.generator.attention_resolutions == []
    assert config.model.generator.channels == {4: 16, 8: 16, 16: 8}  # inherited


def test_base_loop_is_an_error(tmp_path):
    (tmp_path / "a.toml").write_text('base = "b.toml"\n')
    (tmp_path / "b.toml").write_text('base = "a.toml"\n')
    with pytest.raises(ConfigError, match="loops back"):
        load(tmp_path / "a.toml")


def test_parse_override_values():
    assert parse_override("a.b=3") == (["a", "b"], 3)
    assert parse_override("a=[1, 2]") == (["a"], [1, 2])
    assert parse_override("a=adam") == (["a"], "adam")
    assert parse_override("a=true") == (["a"], True)
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        parse_override("novalue")


def test_examples_validate_and_differ_as_the_paper_says():
    samgan, msggan, demo = (load(EXAMPLES / f"{n}.toml") for n in ("samgan", "msggan", "demo"))
    # Table 2: SAMGAN8 = PN, SN, MBD, AM, FA, Adam, 0.0001, RLHinge; MSG-GAN6 drops SN and AM, lr 0.003.
    assert samgan.model.generator.feature_norm.name == "pixel"
    assert [r.name for r in samgan.model.generator.weight_norms] == ["equalized_lr", "spectral"]
    assert samgan.model.discriminator.block.params["minibatch_std"] is True
    assert samgan.model.generator.attention_resolutions == [4, 8, 16, 32, 64]
    assert [a.name for a in samgan.augment] == ["hflip"]
    assert (samgan.optim.name, samgan.optim.params["lr"], samgan.loss.name) == ("adam", 0.0001, "relativistic_hinge")
    assert (samgan.train.batch_size, samgan.train.epochs, samgan.model.resolution) == (16, 500, 64)
    assert msggan.model.generator.attention_resolutions == [] == msggan.model.discriminator.attention_resolutions
    assert [r.name for r in msggan.model.generator.weight_norms] == ["equalized_lr"]
    assert msggan.optim.params["lr"] == 0.003
    assert demo.loss == samgan.loss
    assert samgan.model.connection.params["fakes"] == "heads"  # MSG-GAN's connection, as published
    assert demo.model.connection.params == {**samgan.model.connection.params, "fakes": "pooled"}  # no tell
