"""The kinds of component and the interface each must satisfy.

Every component is a factory registered under ``(kind, name)``. The core calls it as
``factory(**params, **context)``: ``params`` are the validated values of the component's own
pydantic model, ``context`` is listed below per kind. Images are float tensors in ``[-1, 1]``,
shape ``[B, C, H, W]`` with ``C`` = 1 (grayscale) or 3.

| kind                  | context passed by the core            | returns                                  |
|-----------------------|---------------------------------------|------------------------------------------|
| ``attention``         | ``channels``, ``layers``              | ``nn.Module``: ``[B,C,H,W] -> [B,C,H,W]`` |
| ``weight_norm``       | (none)                                | :class:`WeightNorm`                      |
| ``feature_norm``      | ``channels``                          | ``nn.Module``: ``[B,C,H,W] -> [B,C,H,W]`` |
| ``generator_block``   | ``layers``                            | :class:`GeneratorBlocks`                 |
| ``discriminator_block`` | ``layers``                          | :class:`DiscriminatorBlocks`             |
| ``connection``        | (none)                                | :class:`Connection`                      |
| ``loss``              | (none)                                | :class:`Loss`                            |
| ``optimizer``         | ``parameters``                        | ``torch.optim.Optimizer``                |
| ``augment``           | (none)                                | :class:`Augment`                         |
| ``d_augment``         | (none)                                | :class:`DiscriminatorAugment`            |
| ``regularizer``       | (none)                                | :class:`Regularizer`                     |
| ``dataset``           | ``resolution``, ``image_channels``    | :class:`ImageDataset`                    |
| ``metric``            | (none)                                | :class:`Metric`                          |
| ``classifier``        | ``image_channels``, ``num_classes``   | ``nn.Module``: ``[B,C,R,R] -> [B,K]`` logits |
| ``analyser``          | (none)                                | :class:`Analyser`                        |
| ``feature_space``     | (none)                                | :class:`FeatureSpace`                    |

``layers`` is a :class:`ganforge.layers.Layers`: the one way components create convolutions, so
the weight normalizations the config names (spectral norm, equalized learning rate, ...) reach
every layer, attention included, without the component knowing which they are.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import torch
from torch import nn

if TYPE_CHECKING:
    from .evaluation import EvalContext
    from .layers import Layers


@runtime_checkable
class WeightNorm(Protocol):
    """Reparametrizes the weight of a freshly created conv layer (spectral norm, equalized lr)."""

    def apply(self, module: nn.Module, fan_in: int) -> None:
        """Modify ``module`` in place. ``fan_in`` = input channels × kernel area of its weight."""


@runtime_checkable
class GeneratorBlocks(Protocol):
    """The generator's building blocks: a 4×4 stem and a ×2 upsampling block."""

    def stem(self, latent_dim: int, out_channels: int) -> nn.Module:
        """``[B, latent_dim] -> [B, out_channels, 4, 4]``."""

    def up(self, in_channels: int, out_channels: int) -> nn.Module:
        """``[B, in_channels, H, W] -> [B, out_channels, 2H, 2W]``."""


@runtime_checkable
class DiscriminatorBlocks(Protocol):
    """The discriminator's building blocks: a ×2 downsampling block and the 4×4 head."""

    def down(self, in_channels: int, out_channels: int) -> nn.Module:
        """``[B, in_channels, H, W] -> [B, out_channels, H/2, W/2]``."""

    def head(self, in_channels: int) -> nn.Module:
        """``[B, in_channels, 4, 4] -> [B]`` raw scores (no sigmoid)."""


class GeneratorHead(nn.Module):
    """Turns the generator's features into the image(s) it emits.

    ``forward(features)`` gets ``{resolution: [B, C_r, r, r]}`` for every resolution computed so
    far and returns a list of images ordered coarse to fine; the last one is the output image.
    A growing head (progressive GAN) returns its current resolution from ``active_resolution``;
    the generator then skips the stages above it.
    """

    def active_resolution(self) -> int | None:
        """The finest resolution the generator must compute, or ``None`` for all of them."""
        return None

    def set_growth(self, resolution: int, alpha: float) -> None:
        """Told the stage of the next step (:class:`Growth`); a head that does not grow ignores it."""


class DiscriminatorInput(nn.Module):
    """Feeds images into the discriminator.

    ``forward(resolution, features, images)``: ``features`` is the running feature map at
    ``resolution`` (``None`` at the finest scale) and ``images`` the list the generator emitted
    (or :meth:`Connection.pyramid` of real images). Returns the tensor the block at ``resolution``
    consumes, with ``in_channels(resolution)`` channels. A growing input returns ``None`` for the
    resolutions above its current one; the discriminator skips those stages.
    """

    def in_channels(self, resolution: int) -> int:  # pragma: no cover - interface
        raise NotImplementedError

    def set_growth(self, resolution: int, alpha: float) -> None:
        """Told the stage of the next step (:class:`Growth`); an input that does not grow ignores it."""


@runtime_checkable
class Connection(Protocol):
    """How images leave the generator and enter the discriminator (single-scale, multi-scale, ...)."""

    def generator_head(self, channels: dict[int, int], image_channels: int, layers: Layers) -> GeneratorHead:
        """Build the generator's image outputs; ``channels`` maps resolution to feature width."""

    def discriminator_input(self, channels: dict[int, int], image_channels: int, layers: Layers) -> DiscriminatorInput:
        """Build the discriminator's image inputs; ``channels`` maps resolution to feature width."""

    def pyramid(self, images: torch.Tensor, resolutions: Sequence[int]) -> list[torch.Tensor]:
        """Turn a batch of real images into the list the discriminator expects (coarse to fine)."""

    def schedule(self, resolution: int, batch_size: int) -> Schedule:
        """The stages of training a model of ``resolution`` at ``train.batch_size`` (:class:`FixedSchedule`
        unless the connection grows the networks)."""


@dataclass(frozen=True)
class Growth:
    """What one step trains at: the trainer asks its :class:`Schedule` before every step."""

    resolution: int  # the finest resolution trained now
    alpha: float  # fade-in of that resolution, 0 → 1
    batch_size: int  # images in this step
    images_seen: int  # images shown before this step (positions the data stream)


@runtime_checkable
class Schedule(Protocol):
    """A run's stages, from :meth:`Connection.schedule`: a pure function of the step, so a resumed
    run continues at the same stage. The trainer tells G's head and D's input each step's stage
    (``set_growth``)."""

    def growth(self, step: int) -> Growth:
        """The stage of ``step``."""

    def total_steps(self) -> int | None:
        """The schedule's own length, or ``None`` when ``train.steps``/``train.epochs`` decide."""


@dataclass(frozen=True)
class FixedSchedule:
    """Every step at the model's resolution and ``train.batch_size``: what a connection that does not grow returns."""

    resolution: int
    batch_size: int

    def growth(self, step: int) -> Growth:
        return Growth(self.resolution, 1.0, self.batch_size, step * self.batch_size)

    def total_steps(self) -> int | None:
        return None


@runtime_checkable
class Loss(Protocol):
    """An adversarial loss. ``real`` and ``fake`` are image lists as the discriminator takes them."""

    def discriminator(self, D: nn.Module, real: list[torch.Tensor], fake: list[torch.Tensor]) -> torch.Tensor:
        """Scalar loss for the discriminator step (``fake`` is detached by the caller)."""

    def generator(self, D: nn.Module, real: list[torch.Tensor], fake: list[torch.Tensor]) -> torch.Tensor:
        """Scalar loss for the generator step."""


@runtime_checkable
class Augment(Protocol):
    """A batch augmentation of real images ``[B, C, H, W] -> [B, C, H, W]``.

    Randomness comes from torch's global RNG, which the trainer seeds from (seed, step) before
    every step, so an interrupted and resumed run draws the same numbers.
    """

    def __call__(self, images: torch.Tensor) -> torch.Tensor: ...


class DiscriminatorAugment(nn.Module):
    """A differentiable augmentation of every image the discriminator sees, real and generated, in
    the D and the G step (DiffAugment, ADA): G learns through it, so D's view of the data grows
    without G learning to generate augmented images.

    ``forward(images)`` takes and returns D's input list (one batch per scale, coarse to fine) and
    applies one transform per sample, the same at every scale. Randomness comes from torch's global
    RNG (seeded per step). Buffers are its state (ADA's probability) and go into checkpoints.
    """

    def feedback(self, real_scores: torch.Tensor, fake_scores: torch.Tensor) -> None:
        """D's raw scores of a D step's augmented real and generated images (ADA adapts to them); ignored by default."""

    def figures(self) -> dict[str, float]:
        """What goes into ``metrics.jsonl`` with the losses (ADA: its probability); none by default."""
        return {}


@runtime_checkable
class Regularizer(Protocol):
    """A penalty added to the discriminator's loss every ``every`` steps, multiplied by ``every``
    (lazy regularization, StyleGAN2): R1.

    ``score(x)`` is D's raw score of finest-scale images ``x`` (the pyramid and any ``d_augment``
    inside), ``real`` and ``fake`` the step's finest-scale batches.
    """

    every: int

    def __call__(
        self, score: Callable[[torch.Tensor], torch.Tensor], real: torch.Tensor, fake: torch.Tensor
    ) -> torch.Tensor: ...


@runtime_checkable
class ImageDataset(Protocol):
    """Images at the model's resolution, decoded once and kept in memory.

    ``images`` is ``uint8 [N, C, R, R]``; ``labels`` is ``float [N, K]`` multi-hot or ``None``;
    ``label_names`` has ``K`` entries; ``description`` says where the data came from (a phantom
    dataset says so).
    """

    images: torch.Tensor
    labels: torch.Tensor | None
    label_names: list[str]
    description: str


@dataclass
class ImageSet:
    """A ready-made :class:`ImageDataset`: what dataset components usually return.

    ``names`` are the images' file names (relative to the dataset folder) when they were read from
    files, so that a result can be traced back to its source (a reader study's key names them).
    """

    images: torch.Tensor
    labels: torch.Tensor | None
    label_names: list[str]
    description: str
    names: list[str] = field(default_factory=list)


@runtime_checkable
class Metric(Protocol):
    """An image-set metric over ``ctx.real`` and ``ctx.fake`` (uint8 ``[N, C, R, R]``).

    ``ctx`` is a :class:`ganforge.evaluation.EvalContext`; ``ctx.features(side, extractor,
    layer)`` gives shared, cached features. ``protocol`` says in words how the figures were made
    (extractor, resize, image counts, variant), printed next to every result.
    """

    def __call__(self, ctx: EvalContext) -> dict[str, float]: ...

    def protocol(self, ctx: EvalContext) -> str: ...


@runtime_checkable
class Analyser(Protocol):
    """Findings measured from images by a fixed procedure, not learned: a ground truth that the
    images optimised against a classifier cannot have been tuned to fool.

    Takes uint8 ``[N, C, R, R]``; returns float multi-hot ``[N, K]`` over ``label_names``.
    ``assessable(images)`` returns ``[N]`` bool: which images the procedure can read at all (an
    image of noise has no findings to measure, and must not be counted as having none).
    """

    label_names: list[str]

    def __call__(self, images: torch.Tensor) -> torch.Tensor: ...

    def assessable(self, images: torch.Tensor) -> torch.Tensor: ...


@runtime_checkable
class FeatureSpace(Protocol):
    """Where the privacy metrics measure how close two images are (Euclidean distance of features).

    ``space(ctx, side)`` gives ``[N, D]`` float features of ``ctx.images(side)``. ``views`` names
    the transforms of a query image that are matched too, ``views[0]`` being the image as it is:
    a generated image's distance to the training set is the smallest over its views, so a flipped
    or shifted copy is still found. ``space(ctx, side, view=v)`` gives the features of view ``v``.
    ``describe()`` goes into the metric's protocol line.
    """

    views: Sequence[str]

    def __call__(self, ctx: EvalContext, side: str, view: int = 0) -> torch.Tensor: ...

    def describe(self) -> str: ...


@dataclass(frozen=True)
class Kind:
    """What the core passes a kind's factory (``context``) and what every built object must be (``returns``).

    The registry checks a factory's signature against ``context`` when a plugin registers it, and
    each object a factory returns against ``returns`` (an ``isinstance`` check: for the Protocols
    above, that the methods and attributes exist).
    """

    description: str
    context: tuple[str, ...] = ()
    returns: type | None = None


KINDS: dict[str, Kind] = {
    "attention": Kind(
        "attention layer inserted after a block at chosen resolutions", ("channels", "layers"), nn.Module
    ),
    "weight_norm": Kind("reparametrization of every conv weight (spectral norm, equalized lr)", (), WeightNorm),
    "feature_norm": Kind("normalization of generator features (pixel norm)", ("channels",), nn.Module),
    "generator_block": Kind("generator stem and upsampling block", ("layers",), GeneratorBlocks),
    "discriminator_block": Kind("discriminator downsampling block and head", ("layers",), DiscriminatorBlocks),
    "connection": Kind("how images leave G and enter D (single-scale, multi-scale)", (), Connection),
    "loss": Kind("adversarial loss", (), Loss),
    "optimizer": Kind("optimizer for G and D", ("parameters",), torch.optim.Optimizer),
    "augment": Kind("augmentation of real batches", (), Augment),
    "d_augment": Kind(
        "differentiable augmentation of every image D sees, real and generated (DiffAugment, ADA)",
        (),
        DiscriminatorAugment,
    ),
    "regularizer": Kind("penalty on the discriminator, added every so many steps (R1)", (), Regularizer),
    "dataset": Kind("training images", ("resolution", "image_channels"), ImageDataset),
    "metric": Kind("image-set metric", (), Metric),
    "classifier": Kind(
        "multi-label image classifier (latent class optimisation, train-on-synthetic evaluation)",
        ("image_channels", "num_classes"),
        nn.Module,
    ),
    "analyser": Kind(
        "findings measured from images without learning (a ground truth for latent class optimisation)", (), Analyser
    ),
    "feature_space": Kind(
        "image features in which the privacy audit measures distances (Inception, pixels)", (), FeatureSpace
    ),
}
