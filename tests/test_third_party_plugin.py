"""A toy attention plugin defined here, loaded by module path from a TOML, used without touching the core."""

import textwrap

import torch
from conftest import write_tiny

from ganforge.assembly import build_gan
from ganforge.config import load_config
from ganforge.plugins import load_registry
from ganforge.training import Trainer

PLUGIN = textwrap.dedent(
    '''
    import torch
    from pydantic import BaseModel
    from torch import nn

    from ganforge import hookimpl


    class GateParams(BaseModel):
        init: float = 0.5


    class ChannelGate(nn.Module):
        """Squeeze-and-excitation style channel gate (toy)."""

        def __init__(self, *, channels, layers, init):
            super().__init__()
            self.fc = layers.conv(channels, channels, 1)
            self.mix = nn.Parameter(torch.tensor(init))

        def forward(self, x):
            gate = torch.sigmoid(self.fc(x.mean((2, 3), keepdim=True)))
            return x + self.mix * (x * gate - x)


    @hookimpl
    def ganforge_register(registry):
        registry.register("attention", "channel_gate", ChannelGate, GateParams)
    '''
)


def test_module_path_plugin_is_used_in_a_model(tmp_path, monkeypatch):
    (tmp_path / "toy_gate_plugin.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    path = write_tiny(tmp_path, attention="channel_gate")
    path.write_text('plugins = ["toy_gate_plugin"]\n' + path.read_text())
    config, registry = load_config(path, load_registry)
    component = registry.get("attention", "channel_gate")
    assert component.plugin == "toy_gate_plugin"
    assert config.model.generator.attention.params == {"init": 0.5}
    gan = build_gan(config.model, registry)
    gates = [m for m in gan.generator.modules() if type(m).__name__ == "ChannelGate"]
    assert len(gates) == 2
    assert hasattr(gates[0].fc, "parametrizations")  # the configured spectral norm reached the plugin's conv
    trainer = Trainer(config, registry, tmp_path / "run", device="cpu")
    before = gates[0].mix.item()
    trainer.fit(2)
    trained = [m for m in trainer.G.modules() if type(m).__name__ == "ChannelGate"][0]
    assert trained.mix.item() != before
    assert torch.isfinite(trained.fc.weight).all()


def test_module_path_plugin_duplicate_names_both(tmp_path, monkeypatch):
    (tmp_path / "dup_plugin.py").write_text(PLUGIN.replace('"channel_gate"', '"self_attention"'))
    monkeypatch.syspath_prepend(str(tmp_path))
    import pytest

    from ganforge.errors import RegistryError

    with pytest.raises(RegistryError, match="registered twice: by plugin '.*' and by plugin '.*'"):
        load_registry(["dup_plugin"])


def test_unimportable_plugin_module_is_a_clear_error(tmp_path):
    import pytest

    from ganforge.errors import GanforgeError

    with pytest.raises(GanforgeError, match="plugin module 'no_such_plugin_xyz' cannot be imported"):
        load_registry(["no_such_plugin_xyz"])
