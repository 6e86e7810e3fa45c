"""``ganforge audit RUN``: the privacy metrics on a run's own training and held-out images.

The training set and the held-out set come from the run itself: its resolved ``config.toml``
rebuilds the dataset and ``holdout.safetensors`` says (and verifies) which images training never
saw. The generated set comes from the run's EMA generator (or another weights file, or a folder).
Every metric runs in both feature spaces by default, and the closest generated/training pairs of
each space are drawn, because a person must look at them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..assembly import build_dataset
from ..checkpoint import atomic_write
from ..config import ComponentRef, Config, load_config
from ..errors import CheckpointError
from ..evaluation import EvalContext, MetricResult, as_record, generated_set, run_metrics
from ..holdout import Split, recorded_split
from ..inception import resolve_weights
from ..registry import Registry
from ..rundir import AUDIT, CONFIG_FILE, GENERATOR_EMA, HOLDOUT
from ..sampling import load_generator
from .distances import distances, space_key
from .pairs import closest_pairs, save_pairs

AUDIT_METRICS = ("data_copying", "near_copies", "memorization")
SPACES = ("pixels", "inception")


def audit_metrics(names: Sequence[str] = (), spaces: Sequence[str] = ()) -> list[ComponentRef]:
    """Each metric (default: all three) in each feature space (default: pixels and inception)."""
    return [ComponentRef(name=metric, space=space) for space in spaces or SPACES for metric in names or AUDIT_METRICS]


def run_split(run: Path, config: Config, registry: Registry) -> Split:
    """The run's training and held-out images, verified against what the run recorded."""
    return recorded_split(run / HOLDOUT, build_dataset(config, registry))


@dataclass
class Audit:
    results: list[MetricResult]
    record: dict[str, Any]  # every figure and its protocol, as written to audit.json
    pairs: list[Path]  # the pairs grid of each feature space
    out: Path

    @property
    def flagged(self) -> list[str]:
        """The metrics whose test flagged copying."""
        return [r.name for r in self.results if any(k.endswith("_flag") and v for k, v in r.values.items())]

    def save(self, path: Path) -> None:
        """Every figure and its protocol as JSON (``audit.json``), written atomically."""
        atomic_write(path, json.dumps(self.record, indent=2) + "\n")


def audit(
    split: Split,
    fake: torch.Tensor,
    registry: Registry,
    out: Path,
    *,
    metrics: Sequence[ComponentRef] | None = None,
    pairs: int = 16,
    device: torch.device | str = "cpu",
    inception_weights: Path | None = None,
    cache: bool = True,
) -> Audit:
    """Score ``fake`` against the split, write ``out/pairs_<space>.png`` per feature space used."""
    ctx = EvalContext(
        split.train.images,
        fake,
        torch.device(device),
        inception_weights,
        cache=cache,
        holdout=split.holdout.images,
        registry=registry,
    )
    refs = list(metrics) if metrics else audit_metrics()
    results = run_metrics(refs, registry, ctx)
    record = as_record(results, ctx)
    written = []
    for space in _spaces(refs, registry):
        found = distances(ctx, space)
        held = found.held
        chosen = closest_pairs(found.fake, found.fake_index, found.fake_view, found.space.views, pairs)
        title = (
            f"closest generated/training pairs, {found.space.describe()}\n"
            f"held-out real images: nearest training image at median d = {held.median():.4g}, "
            f"5th percentile {torch.quantile(held.double(), 0.05):.4g}"
        )
        written.append(save_pairs(chosen, fake, split.train.images, out / f"pairs_{space.name}.png", title))
    record.update(
        pairs=[str(p) for p in written], n_holdout=len(split.holdout.images), holdout=split.holdout.description
    )
    return Audit(results, record, written, out)


def audit_run(
    run: Path,
    registry_for: Callable[..., Registry],
    *,
    weights: Path | None = None,
    fake: Path | None = None,
    count: int = 0,
    seed: int = 0,
    metrics: Sequence[ComponentRef] | None = None,
    pairs: int = 16,
    out: Path | None = None,
    device: torch.device | str = "cpu",
    inception_weights: Path | None = None,
    cache: bool = True,
) -> Audit:
    """Audit a run: its recorded split, ``count`` images of its EMA generator (or ``weights``, or the
    folder ``fake``; ``count`` 0 = as many as the training images), results in ``out`` [RUN/audit]."""
    if not (run / CONFIG_FILE).is_file():
        raise CheckpointError(f"{run}: not a ganforge run (no {CONFIG_FILE})")
    config, registry = load_config(run / CONFIG_FILE, registry_for, recorded=True)
    refs = list(metrics) if metrics else audit_metrics()
    spaces = _spaces(refs, registry)  # unknown metric or space names fail before any work
    for space in spaces:
        registry.get("feature_space", space.name)
    uses_inception = any(space.name == "inception" for space in spaces)
    split = run_split(run, config, registry)
    generator = None
    if fake is None:
        weights = weights or run / GENERATOR_EMA
        generator, trained = load_generator(weights, registry)
        if trained.model.resolution != config.model.resolution:
            raise CheckpointError(
                f"{weights}: a {trained.model.resolution}px generator; run {run} trains at {config.model.resolution}px"
            )
    train = split.train.images
    fake_images = generated_set(generator, fake, count or len(train), seed, torch.device(device), registry, train.shape)
    weights_file = (
        resolve_weights(inception_weights or config.eval.inception_weights or None) if uses_inception else None
    )
    result = audit(
        split,
        fake_images,
        registry,
        out or run / AUDIT,
        metrics=refs,
        pairs=pairs,
        device=device,
        inception_weights=weights_file,
        cache=cache,
    )
    result.record.update(run=str(run), fake=str(fake or weights), real=split.train.description)
    return result


def _spaces(refs: Sequence[ComponentRef], registry: Registry) -> list[ComponentRef]:
    """The distinct feature spaces the metrics measure in."""
    spaces: dict[str, ComponentRef] = {}
    for ref in refs:
        params = registry.get("metric", ref.name).validate(ref.params)
        space = getattr(params, "space", None)
        if isinstance(space, ComponentRef):
            spaces.setdefault(space_key(space), space)
    return list(spaces.values())
