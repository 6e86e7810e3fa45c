"""Multi-label classifiers: training with a held-out split, per-class AUROC, safetensors weights.

Used three ways: ``ganforge classify train`` (an auxiliary classifier for latent class
optimisation), the LCO sampler (which loads one), and train-on-synthetic/test-on-real evaluation.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .checkpoint import read_metadata, save_module
from .config import ClassifierConfig, ClassifierTrainConfig
from .errors import CheckpointError, DataError
from .holdout import holdout_split
from .images import to_float
from .plugins import plugin_versions
from .progress import progress
from .registry import Registry
from .weights import load_model


def auroc(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """Area under the ROC curve (Mann–Whitney U with average ranks for ties); NaN without both classes."""
    positives = labels.bool()
    n_pos, n_neg = int(positives.sum()), int((~positives).sum())
    if n_pos == 0 or n_neg == 0:
        return math.nan
    unique, inverse, counts = torch.unique(scores.double(), return_inverse=True, return_counts=True)
    last = counts.cumsum(0).double()  # 1-based rank of the last copy of each distinct score
    ranks = ((last - counts + 1 + last) / 2)[inverse]  # tied scores share their average rank
    u = ranks[positives].sum() - n_pos * (n_pos + 1) / 2
    return float(u / (n_pos * n_neg))


def build_classifier(config: ClassifierConfig, registry: Registry, num_classes: int) -> nn.Module:
    ref = config.classifier
    return registry.build(
        "classifier", ref.name, ref.params, image_channels=config.image_channels, num_classes=num_classes
    )


def fit(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    train: ClassifierTrainConfig,
    seed: int,
    device: torch.device,
    description: str = "classifier",
) -> nn.Module:
    """Adam on binary cross-entropy over uint8 ``images`` and multi-hot ``labels``."""
    model = model.to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=train.lr)
    g = torch.Generator().manual_seed(seed)
    steps_per_epoch = max(1, len(images) // train.batch_size)
    total = max(1, math.ceil(train.epochs * steps_per_epoch))
    order = torch.empty(0, dtype=torch.long)
    for _ in progress(range(total), f"training {description}"):
        if len(order) < train.batch_size:
            order = torch.cat([order, torch.randperm(len(images), generator=g)])
        index, order = order[: train.batch_size], order[train.batch_size :]
        x = to_float(images[index]).to(device)
        if train.flip:
            flip = torch.rand(len(x), generator=g).to(device) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
        loss = F.binary_cross_entropy_with_logits(model(x), labels[index].to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return model.eval()


@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor, device: torch.device, batch_size: int = 256) -> torch.Tensor:
    """Sigmoid probabilities ``[N, K]`` for uint8 images."""
    model = model.to(device).eval()
    out = [
        torch.sigmoid(model(to_float(images[i : i + batch_size]).to(device))).cpu()
        for i in range(0, len(images), batch_size)
    ]
    return torch.cat(out)


def per_class_auroc(probs: torch.Tensor, labels: torch.Tensor, names: list[str]) -> dict[str, float]:
    return {name: auroc(probs[:, k], labels[:, k]) for k, name in enumerate(names)}


def mean_auroc(values: dict[str, float]) -> float:
    finite = [v for v in values.values() if not math.isnan(v)]
    return sum(finite) / len(finite) if finite else math.nan


@dataclass
class ClassifierRun:
    model: nn.Module
    label_names: list[str]
    test_auroc: dict[str, float]
    n_train: int
    n_test: int


def train_on_dataset(config: ClassifierConfig, registry: Registry, device: torch.device) -> ClassifierRun:
    """Build the config's dataset, split it, train, and score the held-out part."""
    ref = config.data
    data = registry.build(
        "dataset", ref.name, ref.params, resolution=config.resolution, image_channels=config.image_channels
    )
    if data.labels is None or not data.label_names:
        raise DataError(f"data: {data.description} has no labels to train a classifier on")
    train_idx, test_idx = holdout_split(len(data.images), config.train.holdout, config.seed)
    torch.manual_seed(config.seed)
    model = build_classifier(config, registry, len(data.label_names))
    fit(model, data.images[train_idx], data.labels[train_idx], config.train, config.seed, device, config.name)
    probs = predict(model, data.images[test_idx], device)
    scores = per_class_auroc(probs, data.labels[test_idx], data.label_names)
    return ClassifierRun(model, list(data.label_names), scores, len(train_idx), len(test_idx))


def train_on_synthetic(
    config: ClassifierConfig, registry: Registry, synthetic: Any, device: torch.device
) -> dict[str, dict[str, float]]:
    """Train-on-synthetic/test-on-real: one classifier each on (a) the real training split,
    (b) the synthetic set, (c) both; all tested on the same held-out real images."""
    ref = config.data
    real = registry.build(
        "dataset", ref.name, ref.params, resolution=config.resolution, image_channels=config.image_channels
    )
    if real.labels is None or not real.label_names:
        raise DataError(f"data: {real.description} has no labels")
    missing = [n for n in real.label_names if n not in synthetic.label_names]
    if missing:
        raise DataError(f"{synthetic.description}: no synthetic label(s) {missing}")
    order = [synthetic.label_names.index(n) for n in real.label_names]
    syn_images, syn_labels = synthetic.images, synthetic.labels[:, order]
    train_idx, test_idx = holdout_split(len(real.images), config.train.holdout, config.seed)
    sets = {
        "real": (real.images[train_idx], real.labels[train_idx]),
        "synthetic": (syn_images, syn_labels),
        "real + synthetic": (
            torch.cat([real.images[train_idx], syn_images]),
            torch.cat([real.labels[train_idx], syn_labels]),
        ),
    }
    results = {}
    for name, (images, labels) in sets.items():
        torch.manual_seed(config.seed)
        model = build_classifier(config, registry, len(real.label_names))
        fit(model, images, labels, config.train, config.seed, device, f"on {name}")
        probs = predict(model, real.images[test_idx], device)
        results[name] = per_class_auroc(probs, real.labels[test_idx], real.label_names)
    return results


def save_classifier(path: str | Path, run: ClassifierRun, config: ClassifierConfig, registry: Registry) -> None:
    save_module(
        path,
        run.model,
        {
            "ganforge.role": "classifier",
            "ganforge.classifier_config": config.model_dump(mode="json"),
            "ganforge.plugins": plugin_versions(registry),
            "ganforge.label_names": run.label_names,
            "ganforge.test_auroc": run.test_auroc,
        },
    )


def load_classifier(path: str | Path, registry: Registry) -> tuple[nn.Module, list[str], ClassifierConfig]:
    """A classifier written by :func:`save_classifier`, in eval mode, with its label names.

    Loaded as an untrusted file (:mod:`ganforge.weights`): ``registry`` decides which plugins exist.
    """
    names = read_metadata(path, "ganforge.label_names")
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise CheckpointError(f"{path}: metadata 'ganforge.label_names' is not a non-empty list of names")
    model, config, _ = load_model(
        path,
        registry,
        "ganforge.classifier_config",
        lambda cfg: build_classifier(cfg, registry, len(names)),
        ClassifierConfig,
    )
    return model, names, config


def auroc_record(values: dict[str, float]) -> dict[str, Any]:
    """JSON-safe (NaN → None) per-class AUROC plus the mean."""
    clean = {k: (None if math.isnan(v) else v) for k, v in values.items()}
    return {"per_class": clean, "mean": None if math.isnan(mean_auroc(values)) else mean_auroc(values)}


def dumps(record: dict[str, Any]) -> str:
    return json.dumps(record, indent=2) + "\n"
