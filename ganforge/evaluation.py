"""Evaluation: real and generated image sets, cached features, and the metrics the config names.

Metrics are components (kind ``metric``); each gets an :class:`EvalContext` and returns named
figures. Feature extraction is shared between metrics (FID, KID and precision/recall use the same
Inception features) and the real set's features are cached on disk under a key made of the images'
content hash, their count and resolution, and the extractor, so a second evaluation against the
same data does not recompute them. Under torchrun every rank extracts the features of its share
of each set and all of them get the whole (:class:`~ganforge.distributed.Distributed`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from . import inception
from .cache import cache_root, store, used
from .checkpoint import load_tensors, save_tensors
from .distributed import Distributed
from .errors import CheckpointError, GanforgeError
from .progress import progress
from .registry import Registry

SIDES = ("real", "fake", "holdout")


def cache_dir() -> Path:
    return cache_root() / "features"


def fingerprint(images: torch.Tensor) -> str:
    """Content hash of a uint8 image set (shape included)."""
    digest = hashlib.sha256(str(tuple(images.shape)).encode())
    digest.update(images.contiguous().numpy().tobytes())
    return digest.hexdigest()[:20]


def _read_cache(path: Path) -> torch.Tensor | None:
    """Cached features, or None when absent or damaged (then they are computed again and rewritten)."""
    if not path.is_file():
        return None
    try:
        features = load_tensors(path)[0]["features"]
    except (CheckpointError, KeyError):
        return None
    used(path)
    return features


@dataclass
class EvalContext:
    """Uint8 image sets ``[N, C, R, R]`` and a memo of their features.

    ``real`` are the real images (the training images, for the privacy audit), ``fake`` the
    generated ones, ``holdout`` real images the generator never trained on (``data.holdout``;
    ``None`` when there are none). ``registry`` lets a metric build the components it names
    (e.g. a feature space); :func:`run_metrics` sets it.
    """

    real: torch.Tensor
    fake: torch.Tensor
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    inception_weights: Path | None = None
    batch_size: int = 50
    cache: bool = True
    cache_hits: list[str] = field(default_factory=list)
    dist: Distributed = field(default_factory=Distributed)
    holdout: torch.Tensor | None = None
    registry: Registry | None = None
    _memo: dict[tuple[Any, ...], Any] = field(default_factory=dict, repr=False)
    _extractors: dict[tuple[str, str], torch.nn.Module] = field(default_factory=dict, repr=False)

    def images(self, side: str) -> torch.Tensor:
        """The ``"real"``, ``"fake"`` or ``"holdout"`` set; a missing held-out set is a clear error."""
        if side not in SIDES:
            raise ValueError(f"side must be one of {SIDES}, not {side!r}")
        images = getattr(self, side)
        if images is None:
            raise GanforgeError(
                "this metric needs held-out real images: train with data.holdout > 0 "
                "(e.g. data.holdout = 0.1), then audit the run"
            )
        return images

    def memo(self, key: tuple[Any, ...], compute: Callable[[], Any]) -> Any:
        """``compute()`` once per key and context: what several metrics share (features, distances)."""
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]

    def features(self, side: str, extractor: str, layer: str) -> torch.Tensor:
        """``[N, D]`` float features of one set (real and held-out ones cached on disk)."""
        return self.memo((side, extractor, layer), lambda: self._features(side, extractor, layer))

    def _features(self, side: str, extractor: str, layer: str) -> torch.Tensor:
        images = self.images(side)
        weights = self.inception_weights if extractor == "inception-v3-compat" else None
        if side == "fake" or not self.cache:
            return self._extract(images, extractor, layer, weights, side)
        extractor_id = f"{extractor}-{layer}-{weights.stem if weights else 'download'}"
        path = cache_dir() / f"{fingerprint(images)}-{extractor_id}.safetensors"
        cached = _read_cache(path)
        if self.dist.all(cached is not None) and cached is not None:  # all ranks agree, or they would deadlock
            self.cache_hits.append(side)
            return cached
        features = self._extract(images, extractor, layer, weights, side)
        if self.dist.is_main:
            save_tensors(path, {"features": features}, {"extractor": extractor_id, "count": len(images)})
            store(path)
        return features

    @torch.no_grad()
    def _extract(
        self, images: torch.Tensor, extractor: str, layer: str, weights: Path | None, side: str
    ) -> torch.Tensor:
        if (extractor, layer) not in self._extractors:  # built once, shared by both sets
            self._extractors[extractor, layer] = inception.create_extractor(extractor, layer, weights, self.device)
        model = self._extractors[extractor, layer]
        images = images[self.dist.span(len(images))]
        chunks = []
        batches = range(0, len(images), self.batch_size)
        for start in progress(batches, f"{extractor} features ({side})", show=self.dist.is_main):
            batch = images[start : start + self.batch_size].to(self.device)
            if batch.shape[1] == 1:  # grayscale: replicate to RGB only here, inside the metric adapter
                batch = batch.repeat(1, 3, 1, 1)
            chunks.append(model(batch)[0].float().cpu())
        return self.dist.gather(torch.cat(chunks) if chunks else torch.empty(0, 0))  # a rank may have none


def subset(images: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """``n`` images chosen by a seeded permutation (all of them when ``n`` is 0 or too large)."""
    if n <= 0 or n >= len(images):
        return images
    return images[torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))[:n]]


@dataclass
class MetricResult:
    name: str
    values: dict[str, float]
    protocol: str


def run_metrics(refs: list[Any], registry: Registry, ctx: EvalContext) -> list[MetricResult]:
    """Build each named metric component and apply it to ``ctx``."""
    if ctx.registry is None:
        ctx.registry = registry
    results = []
    for ref, label in zip(refs, metric_labels(refs)):
        metric = registry.build("metric", ref.name, ref.params)
        results.append(MetricResult(label, metric(ctx), metric.protocol(ctx)))
    return results


class _Asked(Exception):
    """The probe's signal: the metric has asked for features, and their extractor exists."""


class _Unavailable(Exception):
    """The probe's wrapper of the error that an extractor cannot be created, to report as it is."""

    def __init__(self, error: GanforgeError):
        super().__init__(str(error))
        self.error = error


@dataclass
class _ExtractorProbe(EvalContext):
    """A context that creates the extractor a metric asks for, then stops the metric."""

    def features(self, side: str, extractor: str, layer: str) -> torch.Tensor:
        if (extractor, layer) not in self._extractors:
            weights = self.inception_weights if extractor == "inception-v3-compat" else None
            try:
                self._extractors[extractor, layer] = inception.create_extractor(extractor, layer, weights, self.device)
            except GanforgeError as exc:
                raise _Unavailable(exc) from exc
        raise _Asked


def check_extractors(refs: list[Any], registry: Registry, images: torch.Tensor, weights: Path | None) -> None:
    """Create every feature extractor the metrics ask for, now: Inception weights that an offline machine
    lacks fail before training, not at the first evaluation a thousand steps later.

    Each metric runs on a probe context of two of ``images`` until it asks ``ctx.features`` for features.
    What else it does with two images is not checked here (it may fail on so few: the real evaluation
    says so), nor are networks a metric loads itself (``saad2022_fid``'s torchvision Inception).
    """
    probe = _ExtractorProbe(images[:2], images[:2], inception_weights=weights, holdout=images[:2], registry=registry)
    for ref in refs:
        metric = registry.build("metric", ref.name, ref.params)
        try:
            metric(probe)
        except _Unavailable as exc:
            raise exc.error from None
        except Exception:  # _Asked, or what two images cannot give
            continue


def _short(value: Any) -> str:
    """A parameter value for a label: a component by its name."""
    if isinstance(value, Mapping):
        return str(value.get("name", value))
    return str(getattr(value, "name", value))


def metric_labels(refs: Sequence[Any]) -> list[str]:
    """Each metric's name; a name used twice gets the parameters that tell its uses apart,
    e.g. ``data_copying[space=pixels]`` and ``data_copying[space=inception]``."""
    labels = []
    for n, ref in enumerate(refs):
        twins = [other for other in refs if other.name == ref.name and other is not ref]
        if not twins:
            labels.append(ref.name)
            continue
        keys = sorted({*ref.params, *(k for t in twins for k in t.params)})
        differing = [k for k in keys if any(_short(t.params.get(k)) != _short(ref.params.get(k)) for t in twins)]
        text = ", ".join(f"{k}={_short(ref.params.get(k))}" for k in differing) or f"#{n + 1}"
        labels.append(f"{ref.name}[{text}]")
    return labels


def as_record(results: list[MetricResult], ctx: EvalContext) -> dict[str, Any]:
    """Every figure plus what produced it: for ``metrics.jsonl`` and ``--json``."""
    return {
        "n_real": len(ctx.real),
        "n_fake": len(ctx.fake),
        "resolution": int(ctx.real.shape[-1]),
        "metrics": {r.name: r.values for r in results},
        "protocols": {r.name: r.protocol for r in results},
        "real_features_cached": "real" in ctx.cache_hits,
    }


def generated_set(
    generator: Any,
    folder: Path | None,
    count: int,
    seed: int,
    device: torch.device,
    registry: Registry,
    like: Any,
    batch_size: int = 64,
) -> torch.Tensor:
    """``count`` images of ``generator`` (its seeded latents, ``batch_size`` at a time), or up to ``count``
    images of ``folder`` read at the size and channels of ``like`` (the real set's shape)."""
    from .sampling import sample_stream

    if generator is not None:
        return torch.cat(list(sample_stream(generator, count, seed, batch_size, device)))
    images = registry.build(
        "dataset", "image_folder", {"root": str(folder)}, resolution=like[-1], image_channels=like[1]
    ).images
    return subset(images, count, seed)
