"""What a GAN needs in memory, known before anything is allocated: training a config, generating from one.

Both run the work once on the meta device (:mod:`ganforge.memory`): one D step and one G step as
:meth:`ganforge.training.Trainer.train_step` runs them (with the EMA copy and Adam's state), or a
generator forward pass, at the final resolution of a growing model.
"""

from __future__ import annotations

import torch

from .assembly import build_gan, build_generator
from .config import Config
from .memory import (
    ADAM_STATES,
    Estimate,
    estimate,
    fit_batch,
    on_meta,
    parameter_bytes,
    peak_bytes,
    prepare_meta_model,
    require_fit,
)
from .registry import Registry
from .weights import shapes_only


def training_estimate(config: Config, registry: Registry, batch: int = 4) -> Estimate:
    """Memory of training ``config``: G, D, the EMA copy and Adam's state, plus a step's peak per image."""
    model = config.model
    with shapes_only():
        gan = on_meta(lambda: build_gan(model, registry), "model")
    loss = registry.build("loss", config.loss.name, config.loss.params)
    G, D = (prepare_meta_model(net) for net in (gan.generator, gan.discriminator))
    gan.set_growth(model.resolution, 1.0)  # a growing model needs the most at its final resolution
    weights, gradients = parameter_bytes(G) * 2 + parameter_bytes(D), parameter_bytes(G) + parameter_bytes(D)
    side = model.resolution

    def step() -> None:
        z = torch.zeros(batch, model.latent_dim, device="meta")
        images = torch.zeros(batch, model.image_channels, side, side, device="meta")
        real = gan.connection.pyramid(images, model.resolutions)
        fake = G(z)
        loss.discriminator(D, real, [f.detach() for f in fake]).backward()
        loss.generator(D, real, fake).backward()

    peak = peak_bytes(step)
    return estimate(weights + ADAM_STATES * gradients, peak, batch, base=gradients)


def check_training_memory(config: Config, registry: Registry, limit: int) -> None:
    """Refuse, before anything is allocated, a config whose training would not fit in ``limit`` bytes."""
    advice = "lower train.batch_size, the channel widths or model.*.attention_resolutions"
    batch = config.train.batch_size
    require_fit(training_estimate(config, registry), batch, limit, f"training with train.batch_size = {batch}", advice)


def generation_estimate(config: Config, registry: Registry, batch: int = 4) -> Estimate:
    """Memory of generating with this config's generator: its weights plus a batch's peak, per image."""
    with shapes_only():
        generator = on_meta(lambda: build_generator(config.model, registry), "sample").eval()
    prepare_meta_model(generator)
    generator.set_growth(config.model.resolution, 1.0)
    z = torch.zeros(batch, config.model.latent_dim, device="meta")
    with torch.no_grad():
        peak = peak_bytes(lambda: generator(z))
    return estimate(parameter_bytes(generator), peak, batch)


def fitting_batch(config: Config, registry: Registry, wanted: int, limit: int, source: str) -> int:
    """The batch size, up to ``wanted``, whose generation fits in ``limit`` bytes (one line when none does)."""
    advice = "a larger memory budget (max_memory) if the machine has the memory"
    return fit_batch(generation_estimate(config, registry), wanted, limit, f"{source}: generating", advice)
