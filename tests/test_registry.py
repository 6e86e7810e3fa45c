import pytest
from pydantic import BaseModel

from ganforge.errors import RegistryError
from ganforge.registry import NoParams, Registry


class Params(BaseModel):
    width: int = 3


def make(*, width: int, channels: int):
    """A made-up component."""
    return ("made", width, channels)


def test_register_build_and_describe():
    registry = Registry()
    registry.for_plugin("alpha").register("attention", "toy", make, Params)
    component = registry.get("attention", "toy")
    assert component.plugin == "alpha"
    assert component.description == "A made-up component."
    assert registry.build("attention", "toy", {"width": 5}, channels=7) == ("made", 5, 7)
    assert registry.build("attention", "toy", channels=7) == ("made", 3, 7)  # default from the model


def test_duplicate_names_both_plugins():
    registry = Registry()
    registry.for_plugin("alpha").register("loss", "same", make)
    with pytest.raises(RegistryError, match="by plugin 'alpha' and by plugin 'beta'"):
        registry.for_plugin("beta").register("loss", "same", make)


def test_same_name_in_different_kinds_is_fine():
    registry = Registry()
    registry.for_plugin("a").register("generator_block", "msg", make)
    registry.for_plugin("a").register("discriminator_block", "msg", make)
    assert registry.names("generator_block") == ["msg"]


def test_unknown_name_suggests_closest():
    registry = Registry()
    for name in ("self_attention", "cbam", "linear_attention"):
        registry.for_plugin("p").register("attention", name, make)
    with pytest.raises(RegistryError) as err:
        registry.get("attention", "self_atention")
    assert "unknown attention 'self_atention'" in str(err.value)
    assert "did you mean self_attention" in str(err.value)
    with pytest.raises(RegistryError, match="available: cbam, linear_attention, self_attention"):
        registry.get("attention", "zzz")


def test_unknown_kind_is_refused():
    with pytest.raises(RegistryError, match="unknown kind 'colour'"):
        Registry().for_plugin("p").register("colour", "red", make, NoParams)


def test_bundled_plugins_come_through_entry_points(registry):
    plugins = {c.plugin for c in registry}
    assert {
        "attention",
        "blocks",
        "connections",
        "norms",
        "losses",
        "optimizers",
        "augment",
        "phantom",
        "image_folder",
    } <= plugins
    expected = {
        ("attention", "self_attention"),
        ("connection", "multi_scale"),
        ("connection", "single_scale"),
        ("weight_norm", "spectral"),
        ("weight_norm", "equalized_lr"),
        ("feature_norm", "pixel"),
        ("loss", "relativistic_hinge"),
        ("loss", "wgan_gp"),
        ("loss", "hinge"),
        ("loss", "non_saturating"),
        ("optimizer", "adam"),
        ("optimizer", "rmsprop"),
        ("augment", "hflip"),
        ("dataset", "phantom"),
        ("dataset", "image_folder"),
    }
    assert expected <= {(c.kind, c.name) for c in registry}
    assert all(c.description for c in registry)


def test_allowlist_env_limits_loaded_plugins(monkeypatch):
    from ganforge.plugins import load_registry

    monkeypatch.setenv("GANFORGE_PLUGINS", "losses,optimizers")
    assert {c.plugin for c in load_registry()} == {"losses", "optimizers"}
