"""Generic assembly: the generator and discriminator built from registered components.

Nothing here names a concrete layer. The generator is a stem (4×4) followed by one upsampling
stage per resolution; the discriminator mirrors it. Which blocks, attention, normalizations and
image connection fill those slots comes from the config through the registry, so SAMGAN and
MSG-GAN (or any third-party variant) differ only in their TOML.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .config import Config, ModelConfig, NetworkConfig
from .kinds import Connection, DiscriminatorInput, GeneratorHead, ImageDataset
from .layers import Layers
from .registry import Component, Registry, tag


class Generator(nn.Module):
    """``z [B, latent_dim]`` → list of images ``[B, C, r, r]``, coarse to fine; the last is the output."""

    def __init__(self, stem: nn.Module, stages: dict[int, nn.Module], head: GeneratorHead, latent_dim: int):
        super().__init__()
        self.latent_dim = latent_dim
        self.stem = stem
        self.stages = nn.ModuleDict({str(res): stage for res, stage in stages.items()})
        self.head = head

    def forward(self, z: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(z)
        features = {4: x}
        limit = self.head.active_resolution()
        for res, stage in self.stages.items():
            if limit is not None and int(res) > limit:
                break
            x = stage(x)
            features[int(res)] = x
        return self.head(features)

    def set_growth(self, resolution: int, alpha: float) -> None:
        """The stage of the next step (a growing head keeps it in buffers, so its weights file samples at it)."""
        self.head.set_growth(resolution, alpha)


class Discriminator(nn.Module):
    """List of images (coarse to fine, as the generator emits them) → ``[B]`` raw scores."""

    def __init__(self, inputs: DiscriminatorInput, stages: dict[int, nn.Module], head: nn.Module):
        super().__init__()
        self.inputs = inputs
        self.stages = nn.ModuleDict({str(res): stage for res, stage in stages.items()})
        self.head = head

    def forward(self, images: list[torch.Tensor]) -> torch.Tensor:
        x = None
        for res, stage in self.stages.items():  # finest first
            x = self.inputs(int(res), x, images)
            if x is not None:  # None: above a growing network's current resolution
                x = stage(x)
        return self.head(self.inputs(4, x, images))

    def set_growth(self, resolution: int, alpha: float) -> None:
        self.inputs.set_growth(resolution, alpha)


@dataclass
class GAN:
    """The assembled pair and the connection that says how real images are fed to D."""

    generator: Generator
    discriminator: Discriminator
    connection: Connection

    def set_growth(self, resolution: int, alpha: float) -> None:
        """Put both networks (and so the connection's real pyramid) at a stage of the schedule."""
        self.generator.set_growth(resolution, alpha)
        self.discriminator.set_growth(resolution, alpha)


def _layers(
    net: NetworkConfig, registry: Registry, feature_norm: Component | None = None, feature_params=None
) -> Layers:
    norms = [registry.build("weight_norm", ref.name, ref.params) for ref in net.weight_norms]
    factory = None
    if feature_norm is not None:

        def factory(channels: int) -> nn.Module:
            return feature_norm.build(feature_params, channels=channels)

    return Layers(weight_norms=norms, feature_norm_factory=factory)


def _attention(net: NetworkConfig, registry: Registry, res: int, channels: int, layers: Layers) -> nn.Module | None:
    if net.attention is None or res not in net.attention_resolutions:
        return None
    return registry.build("attention", net.attention.name, net.attention.params, channels=channels, layers=layers)


def _sequence(*modules: nn.Module | None) -> nn.Module:
    """One module as itself, several as ``nn.Sequential``.

    So state-dict keys depend on the config: ``stages.8.conv1…`` without attention at 8², and
    ``stages.8.0.conv1…`` / ``stages.8.1.gamma`` with it. Every weights file ever written uses these
    names, and a file is always loaded into the model its own config builds, so they stay;
    ``tests/test_assembly.py`` pins them.
    """
    present = [m for m in modules if m is not None]
    return present[0] if len(present) == 1 else nn.Sequential(*present)


def build_connection(model: ModelConfig, registry: Registry) -> Connection:
    return registry.build("connection", model.connection.name, model.connection.params)


def build_generator(model: ModelConfig, registry: Registry, connection: Connection | None = None) -> Generator:
    net = model.generator
    connection = connection or build_connection(model, registry)
    norm_ref = net.feature_norm
    norm = registry.get("feature_norm", norm_ref.name) if norm_ref else None
    layers = _layers(net, registry, norm, norm_ref.params if norm_ref else None)
    block = registry.get("generator_block", net.block.name)
    blocks = block.build(net.block.params, layers=layers)
    ch = {res: net.channels[res] for res in model.resolutions}

    stem = _sequence(tag(blocks.stem(model.latent_dim, ch[4]), block), _attention(net, registry, 4, ch[4], layers))
    stages = {}
    for res in model.resolutions[1:]:
        up = tag(blocks.up(ch[res // 2], ch[res]), block)
        stages[res] = _sequence(up, _attention(net, registry, res, ch[res], layers))
    head = connection.generator_head(ch, model.image_channels, layers)
    return Generator(stem, stages, tag(head, getattr(connection, "ganforge_component", None)), model.latent_dim)


def build_discriminator(model: ModelConfig, registry: Registry, connection: Connection | None = None) -> Discriminator:
    net = model.discriminator
    connection = connection or build_connection(model, registry)
    layers = _layers(net, registry)
    block = registry.get("discriminator_block", net.block.name)
    blocks = block.build(net.block.params, layers=layers)
    ch = {res: net.channels[res] for res in model.resolutions}
    inputs = tag(
        connection.discriminator_input(ch, model.image_channels, layers),
        getattr(connection, "ganforge_component", None),
    )

    stages = {}
    for res in reversed(model.resolutions[1:]):
        c_in = inputs.in_channels(res)
        attention = _attention(net, registry, res, c_in, layers)
        stages[res] = _sequence(attention, tag(blocks.down(c_in, ch[res // 2]), block))
    c_in = inputs.in_channels(4)
    head = _sequence(_attention(net, registry, 4, c_in, layers), tag(blocks.head(c_in), block))
    return Discriminator(inputs, stages, head)


def build_gan(model: ModelConfig, registry: Registry) -> GAN:
    connection = build_connection(model, registry)
    return GAN(
        build_generator(model, registry, connection),
        build_discriminator(model, registry, connection),
        connection,
    )


def build_dataset(config: Config, registry: Registry) -> ImageDataset:
    """The config's whole dataset at the model's resolution and channels (``data.holdout`` not applied)."""
    ref, model = config.data, config.model
    return registry.build(
        "dataset", ref.name, ref.params, resolution=model.resolution, image_channels=model.image_channels
    )
