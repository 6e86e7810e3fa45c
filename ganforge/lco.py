"""Latent class optimisation (LCO): labelled samples from an unconditional generator.

Segal et al. (2021) obtain images with a chosen combination of findings from one unconditional
GAN by optimising latent vectors against an auxiliary classifier. The paper's settings are not
published; ganforge's version (a proposal, see docs/pggan.md):

- a batch of latents z ~ N(0, I) is optimised with Adam, the generator and classifier frozen;
- loss per latent = binary cross-entropy between the classifier's sigmoid outputs on G(z) and the
  requested multi-hot label vector + ``prior`` · (‖z‖/√d − 1)², which keeps z on the shell where
  Gaussian latents live (the typical set) instead of drifting to atypical norms;
- a latent is accepted at the first step where every requested finding has probability ≥
  ``threshold`` and every other finding < ``threshold``; it then stops moving. Latents not
  accepted within ``steps`` are rejected, and fresh ones are drawn until ``n`` are accepted or
  ``max_tries`` latents have been tried.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from rich.progress import Progress
from torch import nn

from .errors import GanforgeError
from .images import to_uint8

NO_FINDING = "No Finding"


def parse_labels(text: str, names: list[str]) -> torch.Tensor:
    """``"Effusion|Nodule"`` → multi-hot vector over ``names``; ``"No Finding"`` → all zeros."""
    wanted = [part.strip() for part in text.split("|") if part.strip()]
    if wanted == [NO_FINDING]:
        return torch.zeros(len(names))
    unknown = [w for w in wanted if w not in names]
    if unknown or not wanted:
        raise GanforgeError(
            f"--labels {text!r}: unknown finding(s) {unknown}; the classifier knows "
            f"{', '.join(names)} (or '{NO_FINDING}')"
        )
    return torch.tensor([float(n in wanted) for n in names])


def parse_archive(text: str) -> list[tuple[str, int]]:
    """``"Effusion=50,Nodule|Effusion=20"`` → [("Effusion", 50), ("Nodule|Effusion", 20)]."""
    plan = []
    for item in text.split(","):
        combo, _, number = item.strip().rpartition("=")
        if not combo or not number.strip().isdigit() or int(number) < 1:
            raise GanforgeError(f"--archive {item.strip()!r}: expected COMBINATION=COUNT, e.g. 'Effusion|Nodule=20'")
        plan.append((combo.strip(), int(number)))
    return plan


@dataclass
class LCOSettings:
    steps: int = 200
    lr: float = 0.05
    prior: float = 0.1
    threshold: float = 0.5
    batch_size: int = 64
    max_tries: int = 0  # 0 = 20 × n


@dataclass
class LCOResult:
    images: torch.Tensor  # uint8 [n_accepted, C, R, R]
    tried: int
    steps_used: list[int] = field(default_factory=list)  # per accepted latent
    probability_trace: list[float] = field(default_factory=list)  # mean P(requested) per step, first batch

    @property
    def acceptance(self) -> float:
        return len(self.images) / self.tried if self.tried else 0.0


def _classifier_input(images: torch.Tensor, resolution: int, channels: int) -> torch.Tensor:
    x = images.clamp(-1, 1)
    if x.shape[-1] != resolution:
        x = F.interpolate(x, size=(resolution, resolution), mode="bilinear", antialias=True, align_corners=False)
    if x.shape[1] != channels:
        x = x.mean(1, keepdim=True).expand(-1, channels, -1, -1)
    return x


def optimise_latents(
    generator: nn.Module,
    classifier: nn.Module,
    target: torch.Tensor,
    n: int,
    latent_dim: int,
    classifier_resolution: int,
    classifier_channels: int,
    settings: LCOSettings,
    seed: int,
    device: torch.device,
    progress: Progress | None = None,
) -> LCOResult:
    """Accept up to ``n`` latents whose images the classifier labels exactly as ``target``."""
    generator = generator.to(device).eval().requires_grad_(False)
    classifier = classifier.to(device).eval().requires_grad_(False)
    target = target.to(device)
    requested = target.bool()
    max_tries = settings.max_tries or 20 * n
    g = torch.Generator().manual_seed(seed)
    accepted: list[torch.Tensor] = []
    result = LCOResult(torch.empty(0), 0)
    task = progress.add_task("latent class optimisation", total=n) if progress else None
    while len(accepted) < n and result.tried < max_tries:
        size = min(settings.batch_size, max_tries - result.tried)
        z = torch.randn(size, latent_dim, generator=g).to(device).requires_grad_(True)
        result.tried += size
        optimizer = torch.optim.Adam([z], lr=settings.lr)
        done = torch.zeros(size, dtype=torch.bool, device=device)
        kept = z.detach().clone()  # accepted latents are held here: Adam's momentum would move them on
        first_batch = result.tried == size
        for step in range(settings.steps + 1):
            images = generator(z)[-1]
            logits = classifier(_classifier_input(images, classifier_resolution, classifier_channels))
            probs = torch.sigmoid(logits)
            if first_batch:  # how the requested findings' probability evolves, for reports and tests
                picked = probs[:, requested] if requested.any() else 1 - probs
                result.probability_trace.append(picked.mean().item())
            ok = torch.where(requested, probs >= settings.threshold, probs < settings.threshold).all(dim=1)
            fresh = ok & ~done
            for i in fresh.nonzero().flatten().tolist():
                if len(accepted) < n:
                    accepted.append(to_uint8(images[i : i + 1].detach()))
                    result.steps_used.append(step)
                    if progress:
                        progress.advance(task)
            kept[fresh] = z.detach()[fresh]
            done |= ok
            if done.all() or len(accepted) >= n or step == settings.steps:
                break
            bce = F.binary_cross_entropy_with_logits(logits, target.expand_as(logits), reduction="none").mean(1)
            prior = (z.norm(dim=1) / math.sqrt(latent_dim) - 1).pow(2)
            loss = ((bce + settings.prior * prior) * (~done)).sum()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                z[done] = kept[done]
    result.images = torch.cat(accepted) if accepted else torch.empty(0, dtype=torch.uint8)
    return result
