import pytest
from pydantic import BaseModel
from torch import nn

from ganforge.errors import RegistryError
from ganforge.registry import NoParams, Registry


class Params(BaseModel):
    width: int = 3


class Toy(nn.Module):
    """A made-up component."""

    def __init__(self, *, width: int, channels: int, layers=None):
        super().__init__()
        self.made = ("made", width, channels)


def make(*, layers=None, **anything):
    """A made-up factory that takes whatever it is given."""
    return Toy(width=0, channels=0)


def test_register_build_and_describe():
    registry = Registry()
    registry.for_plugin("alpha").register("attention", "toy", Toy, Params)
    component = registry.get("attention", "toy")
    assert component.plugin == "alpha"
    assert component.description == "A made-up component."
    assert registry.build("attention", "toy", {"width": 5}, channels=7, layers=None).made == ("made", 5, 7)
    assert registry.build("attention", "toy", channels=7, layers=None).made == ("made", 3, 7)  # the model's default


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


BAD_PLUGINS = {
    "misspelled_hook": (
        "from ganforge import hookimpl\n\n@hookimpl\ndef ganforge_registr(registry):\n    pass\n",
        "plugin 'misspelled_hook': unknown hook 'ganforge_registr'; ganforge's one hook is ganforge_register",
    ),
    "no_layers": (
        "from ganforge import hookimpl\nfrom torch import nn\n\n"
        "def attend(*, channels):\n    return nn.Identity()\n\n"
        "@hookimpl\ndef ganforge_register(registry):\n    registry.register('attention', 'no_layers', attend)\n",
        "attention 'no_layers' (plugin 'no_layers'): its factory does not take layers; "
        "ganforge calls factory(**NoParams, channels, layers)",
    ),
    "clashing_param": (
        "from ganforge import hookimpl\nfrom pydantic import BaseModel\nfrom torch import nn\n\n"
        "class P(BaseModel):\n    channels: int = 3\n\n"
        "def attend(*, channels, layers):\n    return nn.Identity()\n\n"
        "@hookimpl\ndef ganforge_register(registry):\n    registry.register('attention', 'clash', attend, P)\n",
        "attention 'clash' (plugin 'clashing_param'): parameter(s) channels are named like what ganforge passes "
        "every attention (channels, layers); rename them",
    ),
    "raises": (
        "from ganforge import hookimpl\nfrom pydantic import BaseModel\nfrom torch import nn\n\n"
        "class P(BaseModel):\n    kernel_size: int = 4\n\n"
        "def attend(*, kernel_size, channels, layers):\n"
        "    if kernel_size % 2 == 0:\n        raise ValueError('kernel_size must be odd')\n"
        "    return nn.Identity()\n\n"
        "@hookimpl\ndef ganforge_register(registry):\n    registry.register('attention', 'odd', attend, P)\n",
        "attention 'odd' (plugin 'raises') with {'kernel_size': 4}: ValueError: kernel_size must be odd",
    ),
    "wrong_return": (
        "from ganforge import hookimpl\n\n"
        "def attend(*, channels, layers):\n    return 'not a module'\n\n"
        "@hookimpl\ndef ganforge_register(registry):\n    registry.register('attention', 'wrong', attend)\n",
        "attention 'wrong' (plugin 'wrong_return') returned str, but every attention must be a Module (ganforge.kinds)",
    ),
}


@pytest.mark.parametrize("module", BAD_PLUGINS)
def test_a_plugins_mistakes_are_one_line_naming_the_plugin(tmp_path, monkeypatch, module):
    """Checked when it registers (hook names, factory signatures) or when it builds (its errors, its result)."""
    from click.testing import CliRunner
    from conftest import write_tiny

    from ganforge.cli import main

    source, expected = BAD_PLUGINS[module]
    (tmp_path / f"{module}.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    name = {"no_layers": "no_layers", "clashing_param": "clash", "raises": "odd", "wrong_return": "wrong"}
    attention = ["--set", f"model.generator.attention.name={name[module]}"] if module in name else []
    args = ["build", str(write_tiny(tmp_path)), "--dry-run", "--set", f'plugins=["{module}"]', *attention]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output
    assert lines[0].endswith(expected), lines[0]
    debug = CliRunner().invoke(main, ["--debug", *args])
    if module == "raises":  # --debug shows the component's own exception as the cause
        assert isinstance(debug.exception.__cause__, ValueError)
