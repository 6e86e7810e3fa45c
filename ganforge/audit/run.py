"""``ganforge evaluate --audit RUN``: the privacy metrics on a run's own training and held-out images.

The training set and the held-out set come from the run itself: its resolved ``config.toml``
rebuilds the dataset and ``holdout.safetensors`` says (and verifies) which images training never
saw. The generated set comes from the run's EMA generator (or another weights file, or a folder).
Every metric runs in both feature spaces by default, and the closest generated/training pairs of
each space are drawn, because a person must look at them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..assembly import build_dataset
from ..config import ComponentRef, Config
from ..evaluation import EvalContext, MetricResult, as_record, run_metrics
from ..holdout import Split, recorded_split
from ..registry import Registry
from ..rundir import HOLDOUT
from .distances import distances
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
    record: dict[str, Any]
    pairs: list[Path]


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
) -> Audit:
    """Score ``fake`` against the split, write ``out/pairs_<space>.png`` per feature space used."""
    ctx = EvalContext(
        split.train.images,
        fake,
        torch.device(device),
        inception_weights,
        holdout=split.holdout.images,
        registry=registry,
    )
    refs = list(metrics) if metrics else audit_metrics()
    results = run_metrics(refs, registry, ctx)
    record = as_record(results, ctx)
    written = []
    for space in _spaces(refs, registry):
        found = distances(ctx, space)
        held = found.held[0]
        chosen = closest_pairs(found.fake, found.fake_index, found.fake_view, found.space.views, pairs)
        title = (
            f"closest generated/training pairs, {found.space.describe()}\n"
            f"held-out real images: nearest training image at median d = {held.median():.4g}, "
            f"5th percentile {torch.quantile(held.double(), 0.05):.4g}"
        )
        written.append(save_pairs(chosen, fake, split.train.images, out / f"pairs_{space.name}.png", title))
    record["pairs"] = [str(p) for p in written]
    return Audit(results, record, written)


def _spaces(refs: Sequence[ComponentRef], registry: Registry) -> list[ComponentRef]:
    """The distinct feature spaces the metrics measure in."""
    spaces: dict[str, ComponentRef] = {}
    for ref in refs:
        params = registry.get("metric", ref.name).validate(ref.params)
        space = getattr(params, "space", None)
        if isinstance(space, ComponentRef):
            spaces.setdefault(f"{space.name}{sorted(space.params.items())}", space)
    return list(spaces.values())
