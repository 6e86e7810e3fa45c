"""Latent class optimisation (LCO): labelled samples from an unconditional generator.

Segal et al. (2021) obtain images with a chosen combination of findings from one unconditional
GAN by optimising latent vectors against an auxiliary classifier. The paper's settings are not
published; ganforge's version (measured in docs/pggan.md):

- a batch of latents is optimised with Adam, generator and classifiers frozen, on the sphere of
  radius √d (``z = √d · w/‖w‖``): the generator's pixel norm keeps only z's direction anyway, and a
  generator without it sees latents of the norm Gaussian latents have;
- the loss is the binary cross-entropy between the classifiers' outputs and the requested
  multi-hot vector, averaged over an *ensemble* of classifiers and over ``views`` random
  transformations of each image (shifts, small zooms, noise: expectation over transformations),
  so only image changes that survive them count, not a perturbation tuned to one network's pixels;
- each optimised latent is the best of ``pool`` drawn ones by that loss (on the image alone), so
  optimisation starts from images that already lean towards the request and has less to change;
- a latent is accepted at the first step where every classifier, on the image itself and on each
  of its views, gives every requested finding a probability ≥ ``threshold`` and every other one
  < ``threshold`` (the worst case over the transformations, not their mean); it then stops
  moving. Latents not accepted within ``steps`` are rejected, and fresh ones are drawn until ``n``
  are accepted or ``max_tries`` latents have been tried.

Which classifiers matters most (docs/pggan.md): ones that see the image at 16×16 judge the anatomy
(heart size, opacities) and are hard to satisfy without changing it; full-resolution ones also
react to texture, which a weak generator gets wrong and the optimisation can exploit.

:func:`summarise` then scores the *written* (uint8) images under the classifiers, an independent
judge and, where one exists, an analyser that measures the findings (the phantom's ground truth).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .errors import GanforgeError, NothingAccepted
from .images import to_float, to_uint8
from .kinds import Analyser

NO_FINDING = "No Finding"
NOT_ASSESSABLE = "not assessable"  # an image the ground truth cannot read (Measured Findings)


def parse_labels(text: str, names: list[str]) -> torch.Tensor:
    """``"Effusion|Nodule"`` → multi-hot vector over ``names``; ``"No Finding"`` → all zeros."""
    wanted = [part.strip() for part in text.split("|") if part.strip()]
    if wanted == [NO_FINDING]:
        return torch.zeros(len(names))
    unknown = [w for w in wanted if w not in names]
    if unknown or not wanted:
        raise GanforgeError(
            f"labels {text!r}: unknown finding(s) {unknown}; the classifier knows "
            f"{', '.join(names)} (or '{NO_FINDING}')"
        )
    return torch.tensor([float(n in wanted) for n in names])


def parse_archive(text: str) -> list[tuple[str, int]]:
    """``"Effusion=50,Nodule|Effusion=20"`` → [("Effusion", 50), ("Nodule|Effusion", 20)]."""
    plan = []
    for item in text.split(","):
        combo, _, number = item.strip().rpartition("=")
        if not combo or not number.strip().isdigit() or int(number) < 1:
            raise GanforgeError(f"archive {item.strip()!r}: expected COMBINATION=COUNT, e.g. 'Effusion|Nodule=20'")
        plan.append((combo.strip(), int(number)))
    return plan


@dataclass(frozen=True)
class Classifier:
    """A loaded classifier and the input it expects; ``name`` identifies it in reports."""

    model: nn.Module
    names: list[str]
    resolution: int
    channels: int
    name: str

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, K]`` for float images in [-1, 1] at any resolution and channel count."""
        x = images.clamp(-1, 1)
        if x.shape[-1] != self.resolution:
            x = F.interpolate(x, size=(self.resolution,) * 2, mode="bilinear", antialias=True, align_corners=False)
        if x.shape[1] != self.channels:
            x = x.mean(1, keepdim=True).expand(-1, self.channels, -1, -1)
        return self.model(x)

    @torch.no_grad()
    def probabilities(self, images: torch.Tensor, device: torch.device, batch_size: int = 256) -> torch.Tensor:
        """Sigmoid probabilities ``[N, K]`` for uint8 images."""
        self.model.to(device).eval()
        out = [
            torch.sigmoid(self.logits(to_float(images[i : i + batch_size]).to(device))).cpu()
            for i in range(0, len(images), batch_size)
        ]
        return torch.cat(out) if out else torch.empty(0, len(self.names))


@dataclass
class LCOSettings:
    steps: int = 200
    lr: float = 0.05
    threshold: float = 0.5
    batch_size: int = 64
    max_tries: int = 0  # 0 = 20 × n
    views: int = 4  # random transformations per image; 1 = the image itself only
    shift: float = 0.06  # largest translation, as a fraction of the image side
    zoom: float = 0.06  # largest relative change of scale
    noise: float = 0.03  # standard deviation of added Gaussian noise ([-1, 1] images)
    pool: int = 8  # latents drawn per optimised one; those the classifiers already rate best start

    def tries(self, n: int) -> int:
        return self.max_tries or 20 * n


def random_views(images: torch.Tensor, settings: LCOSettings, g: torch.Generator) -> torch.Tensor:
    """``[V·B, C, R, R]``: the images themselves, then ``V − 1`` random shifts/zooms (border-padded)
    with added noise of each. With ``views == 1`` the images pass alone: the plain objective.
    """
    if settings.views <= 1:
        return images
    b, v = len(images), settings.views - 1
    x = images.repeat(v, 1, 1, 1)
    scale = 1 + settings.zoom * (2 * torch.rand(v * b, generator=g) - 1)
    offset = settings.shift * 2 * (2 * torch.rand(v * b, 2, generator=g) - 1)  # grid units span 2
    theta = torch.zeros(v * b, 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = 1 / scale
    theta[:, :, 2] = offset
    grid = F.affine_grid(theta.to(x), list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, padding_mode="border", align_corners=False)
    return torch.cat([images, x + settings.noise * torch.randn(x.shape, generator=g).to(x)])


def _loss(
    classifiers: Sequence[Classifier], views: torch.Tensor, target: torch.Tensor, size: int
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Per-classifier logits ``[V, B, K]`` and the per-latent BCE ``[B]`` averaged over classifiers and views."""
    logits = [c.logits(views).view(-1, size, len(target)) for c in classifiers]
    bce = torch.stack(
        [F.binary_cross_entropy_with_logits(x, target.expand_as(x), reduction="none").mean((0, 2)) for x in logits]
    ).mean(0)
    return logits, bce


@torch.no_grad()
def _starting_latents(
    generator: nn.Module,
    classifiers: Sequence[Classifier],
    target: torch.Tensor,
    size: int,
    latent_dim: int,
    settings: LCOSettings,
    g: torch.Generator,
    device: torch.device,
) -> torch.Tensor:
    """``size`` latents: the best by the classifiers' loss of ``size · pool`` drawn (all of them when pool is 1)."""
    drawn = torch.randn(size * settings.pool, latent_dim, generator=g).to(device)
    if settings.pool == 1:
        return drawn
    radius = math.sqrt(latent_dim)
    losses = torch.cat(
        [
            _loss(classifiers, generator(radius * F.normalize(chunk, dim=1))[-1], target, len(chunk))[1]
            for chunk in drawn.split(settings.batch_size)
        ]
    )
    return drawn[losses.argsort()[:size]]


def _meets(probs: torch.Tensor, requested: torch.Tensor, threshold: float) -> torch.Tensor:
    """``[B]`` from ``[B, ..., K]``: every requested finding ≥ threshold and every other < threshold, everywhere."""
    return torch.where(requested, probs >= threshold, probs < threshold).flatten(1).all(dim=1)


@dataclass
class LCOResult:
    images: torch.Tensor  # uint8 [n_accepted, C, R, R]
    tried: int = 0  # latents optimised
    drawn: int = 0  # latents generated, the pool's unpicked ones included
    steps_used: list[int] = field(default_factory=list)  # per accepted latent
    optimisation_steps: int = 0  # Adam steps taken over all batches
    seconds: float = 0.0
    batch_size: int = 0  # latents optimised together (what fitted the memory budget)
    probability_trace: list[float] = field(default_factory=list)  # mean P(requested) per step, first batch

    @property
    def acceptance(self) -> float:
        return len(self.images) / self.tried if self.tried else 0.0


def _requested_probability(probs: torch.Tensor, requested: torch.Tensor) -> float:
    """Mean probability of the requested findings (of none, for No Finding) in the first view."""
    mean = probs[:, 0].mean(0)
    return (mean[:, requested] if requested.any() else 1 - mean).mean().item()


def optimise_latents(
    generator: nn.Module,
    classifiers: Sequence[Classifier],
    target: torch.Tensor,
    n: int,
    latent_dim: int,
    settings: LCOSettings,
    seed: int,
    device: torch.device,
    on_step: Callable[[LCOResult], None] | None = None,
) -> LCOResult:
    """Accept up to ``n`` latents whose images every classifier labels exactly as ``target``.

    ``on_step`` is called after every optimisation step (for a progress bar) with the result so far.
    """
    if not classifiers:
        raise ValueError("latent class optimisation needs at least one classifier")
    start = time.perf_counter()
    generator = generator.to(device).eval().requires_grad_(False)
    for c in classifiers:
        c.model.to(device).eval().requires_grad_(False)
    target = target.to(device)
    requested = target.bool()
    max_tries = settings.tries(n)
    g = torch.Generator().manual_seed(seed)
    accepted: list[torch.Tensor] = []
    result = LCOResult(torch.empty(0, dtype=torch.uint8))
    radius = math.sqrt(latent_dim)
    result.batch_size = settings.batch_size
    while len(accepted) < n and result.tried < max_tries:
        size = min(settings.batch_size, max_tries - result.tried)
        w = _starting_latents(generator, classifiers, target, size, latent_dim, settings, g, device)
        w.requires_grad_(True)
        result.tried += size
        result.drawn += size * settings.pool
        optimizer = torch.optim.Adam([w], lr=settings.lr)
        done = torch.zeros(size, dtype=torch.bool, device=device)
        kept = w.detach().clone()  # accepted latents are held here: Adam's momentum would move them on
        first_batch = result.tried == size
        for step in range(settings.steps + 1):
            images = generator(radius * F.normalize(w, dim=1))[-1]
            views = random_views(images, settings, g)
            logits, bce = _loss(classifiers, views, target, size)  # [V, B, K] per classifier, [B]
            probs = torch.sigmoid(torch.stack(logits))  # [classifiers, V, B, K]
            if first_batch:  # how the requested findings' probability evolves, for reports and tests
                result.probability_trace.append(_requested_probability(probs, requested))
            ok = _meets(probs.flatten(0, 1).transpose(0, 1), requested, settings.threshold)
            fresh = ok & ~done
            for i in fresh.nonzero().flatten().tolist()[: n - len(accepted)]:
                accepted.append(to_uint8(images[i : i + 1].detach()))
                result.steps_used.append(step)
            kept[fresh] = w.detach()[fresh]
            done |= ok
            if done.all() or len(accepted) >= n or step == settings.steps:
                break
            optimizer.zero_grad(set_to_none=True)
            (bce * ~done).sum().backward()
            optimizer.step()
            with torch.no_grad():
                w[done] = kept[done]
            result.optimisation_steps += 1
            if on_step:
                result.seconds = time.perf_counter() - start
                on_step(result)
    result.images = torch.cat(accepted) if accepted else torch.empty(0, dtype=torch.uint8)
    result.seconds = time.perf_counter() - start
    return result


def _mean(values: torch.Tensor) -> float | None:
    return float(values.mean()) if len(values) else None


def _requested_probabilities(probs: torch.Tensor, names: list[str], target: torch.Tensor) -> dict[str, float | None]:
    """Mean probability of each requested finding (or of 'no finding at all' for No Finding)."""
    if not target.any():
        return {NO_FINDING: _mean(1 - probs.max(1).values) if len(probs) else None}
    return {name: _mean(probs[:, k]) for k, name in enumerate(names) if target[k]}


def _label_agreement(labels: torch.Tensor, names: list[str], target: torch.Tensor) -> dict[str, Any]:
    """How often measured multi-hot ``labels`` carry each requested finding, all of them (for No
    Finding: none at all), and exactly the requested combination (no other finding either)."""
    found, wanted = labels.bool(), target.bool()
    carried = found[:, wanted].all(1) if wanted.any() else ~found.any(1)
    present = {name: _mean(labels[:, k]) for k, name in enumerate(names) if target[k]}
    exact = (found == wanted).all(1)
    return {"requested_present": present, "carried": _mean(carried.float()), "exact": _mean(exact.float())}


def summarise(
    combo: str,
    target: torch.Tensor,
    result: LCOResult,
    classifiers: Sequence[Classifier],
    device: torch.device,
    judge: Classifier | None = None,
    analyser: Analyser | None = None,
) -> dict[str, Any]:
    """The figures of one requested combination, recomputed from the accepted uint8 images."""
    names = classifiers[0].names
    record: dict[str, Any] = {
        "labels": combo,
        "accepted": len(result.images),
        "tried": result.tried,
        "drawn": result.drawn,
        "acceptance": result.acceptance,
        "mean_steps": _mean(torch.tensor(result.steps_used, dtype=torch.float)),
        "optimisation_steps": result.optimisation_steps,
        "seconds": result.seconds,
        "seconds_per_accepted": result.seconds / len(result.images) if len(result.images) else None,
        "classifiers": {
            c.name: _requested_probabilities(c.probabilities(result.images, device), names, target) for c in classifiers
        },
    }
    if judge is not None:
        order = [judge.names.index(n) for n in names]
        probs = judge.probabilities(result.images, device)[:, order]
        record["judge"] = {
            "name": judge.name,
            "probability": _requested_probabilities(probs, names, target),
            **_label_agreement((probs >= 0.5).float(), names, target),
        }
    warnings = []
    if analyser is not None:
        order = [analyser.label_names.index(n) for n in names]
        readable = analyser.assessable(result.images)
        record["ground_truth"] = {
            **_label_agreement(analyser(result.images[readable])[:, order], names, target),
            "not_assessable": _mean((~readable).float()),
        }
        if not readable.all():
            warnings.append(
                f"{int((~readable).sum())} of {len(readable)} accepted images are not assessable by the ground "
                "truth (not a phantom radiograph to it); its figures count only the others"
            )
    independent = [record[key]["carried"] for key in ("judge", "ground_truth") if key in record]
    if len(result.images) and any(value is not None and value < 0.5 for value in independent):
        warnings.insert(
            0,
            "most accepted images do not carry the requested findings by the independent check: "
            "the classifier(s) were fooled, or disagree with it",
        )
    if warnings:
        record["warning"] = "; ".join(warnings)
    return record


def check_label_names(classifiers: Sequence[Classifier], others: Sequence[tuple[str, list[str]]]) -> list[str]:
    """The ensemble's label names; every classifier, judge and analyser must know them all."""
    names = classifiers[0].names
    for c in classifiers[1:]:
        if c.names != names:
            raise GanforgeError(f"classifier {c.name}: labels {c.names} differ from {classifiers[0].name}'s {names}")
    for what, theirs in others:
        missing = [n for n in names if n not in theirs]
        if missing:
            raise GanforgeError(f"{what}: does not know the finding(s) {missing} of {classifiers[0].name}")
    return names


@dataclass
class Archive:
    """Accepted images of every requested combination, their labels, figures and per-image columns."""

    images: torch.Tensor  # uint8 [N, C, R, R]
    labels: torch.Tensor  # float multi-hot [N, K] over ``names``
    names: list[str]
    records: list[dict[str, Any]]  # one :func:`summarise` record per combination
    columns: dict[str, list[Any]]  # extra labels.csv columns, one value per image


def build_archive(
    generator: nn.Module,
    latent_dim: int,
    plan: Sequence[tuple[str, int]],
    classifiers: Sequence[Classifier],
    settings: LCOSettings,
    seed: int,
    device: torch.device,
    judge: Classifier | None = None,
    analyser: Analyser | None = None,
    on_step: Callable[[str, int, LCOResult], None] | None = None,
) -> Archive:
    """Run LCO for each ``(combination, count)`` of ``plan`` (combination ``i`` draws from ``seed + i``)."""
    names = classifiers[0].names
    targets = [(combo, parse_labels(combo, names), n) for combo, n in plan]  # unknown names fail before any work
    images, labels, records, steps = [], [], [], []
    for index, (combo, target, n) in enumerate(targets):
        step = (lambda r, combo=combo, n=n: on_step(combo, n, r)) if on_step else None
        result = optimise_latents(generator, classifiers, target, n, latent_dim, settings, seed + index, device, step)
        records.append(summarise(combo, target, result, classifiers, device, judge, analyser))
        images.append(result.images)
        labels += [target] * len(result.images)
        steps += result.steps_used
    accepted = torch.cat(images)
    columns: dict[str, list[Any]] = {"LCO Steps": steps}
    if len(accepted):
        mean = torch.stack([c.probabilities(accepted, device) for c in classifiers]).mean(0)
        columns.update({f"P({name})": mean[:, k].tolist() for k, name in enumerate(names)})
        if judge is not None:
            probs = judge.probabilities(accepted, device)
            columns.update({f"Judge P({name})": probs[:, judge.names.index(name)].tolist() for name in names})
        if analyser is not None:
            measured, readable = analyser(accepted), analyser.assessable(accepted).tolist()
            found = lambda row: "|".join(n for n, on in zip(analyser.label_names, row) if on) or NO_FINDING  # noqa: E731
            columns["Measured Findings"] = [
                found(row) if ok else NOT_ASSESSABLE for row, ok in zip(measured.tolist(), readable)
            ]
    stacked = torch.stack(labels) if labels else torch.empty(0, len(names))
    return Archive(accepted, stacked, names, records, columns)


def _fmt(value: float | None, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def _average(values: Mapping[str, float | None] | Iterable[float | None]) -> float | None:
    """The mean of the known values (of a mapping: of its values)."""
    known = [v for v in (values.values() if isinstance(values, Mapping) else values) if v is not None]
    return sum(known) / len(known) if known else None


def summary_rows(records: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """Table headers and rows of :func:`summarise` records (the judge and ground-truth columns when present)."""
    headers = ["labels", "accepted", "tried", "acceptance", "mean steps", "s / image", "P (optimised)"]
    judged, measured = any("judge" in r for r in records), any("ground_truth" in r for r in records)
    headers += ["P (judge)"] * judged + ["measured: requested", "measured: exact", "not assessable"] * measured
    rows = []
    for r in records:
        optimised = [_average(p) for p in r["classifiers"].values()]
        row = [r["labels"], str(r["accepted"]), str(r["tried"]), f"{r['acceptance']:.1%}", _fmt(r["mean_steps"], ".1f")]
        row += [
            _fmt(r["seconds_per_accepted"], ".1f"),
            _fmt(_average(optimised), ".2f"),
        ]
        row += [_fmt(_average(r["judge"]["probability"]), ".2f")] if judged else []
        keys = ("carried", "exact", "not_assessable")
        row += [_fmt(r["ground_truth"][key], ".0%") for key in keys] if measured else []
        rows.append(row)
    return headers, rows


def nothing_accepted(settings: LCOSettings, records: list[dict[str, Any]]) -> NothingAccepted:
    """The error when no latent was accepted, saying what was tried."""
    tried = sum(r["tried"] for r in records)
    return NothingAccepted(f"{tried} tried, {settings.steps} steps each, threshold {settings.threshold}")


def classifier_name(path: Path) -> str:
    return path.name if path.name != "classifier.safetensors" else f"{path.parent.name}/{path.name}"
