"""Adversarial losses: relativistic average hinge (SAMGAN Eq. 1-2), hinge, non-saturating, WGAN-GP; the R1 penalty."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from ganforge import hookimpl


def _scores(D: nn.Module, real: list[torch.Tensor], fake: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    return D(real), D(fake)


class RelativisticHinge:
    """Relativistic average hinge (Jolicoeur-Martineau 2018), as in SAMGAN Eq. 1-2 and BMSG-GAN.

    With rf = D(r) - mean D(f) and fr = D(f) - mean D(r):
    L_D = mean relu(1 - rf) + mean relu(1 + fr);  L_G = mean relu(1 + rf) + mean relu(1 - fr).
    """

    @staticmethod
    def _relative(r: torch.Tensor, f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return r - f.mean(), f - r.mean()

    def discriminator(self, D, real, fake):
        rf, fr = self._relative(*_scores(D, real, fake))
        return F.relu(1 - rf).mean() + F.relu(1 + fr).mean()

    def generator(self, D, real, fake):
        with torch.no_grad():  # D(real) carries no gradient to G
            r = D(real)
        rf, fr = self._relative(r, D(fake))
        return F.relu(1 + rf).mean() + F.relu(1 - fr).mean()


class Hinge:
    """Hinge loss (Lim & Ye 2017; SAGAN): L_D = relu(1 - D(r)) + relu(1 + D(f)), L_G = -D(f)."""

    def discriminator(self, D, real, fake):
        r, f = _scores(D, real, fake)
        return F.relu(1 - r).mean() + F.relu(1 + f).mean()

    def generator(self, D, real, fake):
        return -D(fake).mean()


class NonSaturating:
    """Non-saturating logistic loss (Goodfellow et al. 2014): softplus form."""

    def discriminator(self, D, real, fake):
        r, f = _scores(D, real, fake)
        return F.softplus(-r).mean() + F.softplus(f).mean()

    def generator(self, D, real, fake):
        return F.softplus(-D(fake)).mean()


class WGANGPParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    gp_weight: float = Field(10.0, ge=0, description="λ of the gradient penalty")
    drift: float = Field(0.001, ge=0, description="ε of the drift term ε·D(real)² (PGGAN)")


def gradient_penalty(D: nn.Module, real: list[torch.Tensor], fake: list[torch.Tensor]) -> torch.Tensor:
    """mean (‖∇D(x̂)‖₂ - 1)², x̂ = ε·real + (1-ε)·fake with one ε per sample shared by all scales.

    For multi-scale inputs the gradient norm is taken over all scales of a sample together.
    Attention inside D runs on the math backend here, since the penalty needs a double backward.
    """
    eps = torch.rand(real[0].shape[0], 1, 1, 1, device=real[0].device, dtype=real[0].dtype)
    mixed = [(eps * r + (1 - eps) * f.detach()).requires_grad_(True) for r, f in zip(real, fake)]
    with sdpa_kernel(SDPBackend.MATH):  # the fused attention kernels have no double backward
        scores = D(mixed)
    grads = torch.autograd.grad(scores.sum(), mixed, create_graph=True)
    norms = torch.cat([g.flatten(1) for g in grads], dim=1).norm(dim=1)
    return (norms - 1).pow(2).mean()


class WGANGP:
    """WGAN-GP (Gulrajani et al. 2017) with PGGAN's drift term."""

    def __init__(self, *, gp_weight: float, drift: float):
        self.gp_weight, self.drift = gp_weight, drift

    def discriminator(self, D, real, fake):
        r, f = _scores(D, real, fake)
        loss = f.mean() - r.mean() + self.drift * r.pow(2).mean()
        if self.gp_weight:
            loss = loss + self.gp_weight * gradient_penalty(D, real, fake)
        return loss

    def generator(self, D, real, fake):
        return -D(fake).mean()


class R1Params(BaseModel):
    model_config = ConfigDict(extra="forbid")
    gamma: float = Field(1.0, ge=0, description="γ: the penalty is γ/2 · E‖∇ D(x_real)‖²")
    every: int = Field(16, ge=1, description="lazy: computed every this many D steps, multiplied by it (StyleGAN2)")


class R1:
    """R1 (Mescheder et al. 2018): γ/2 · E‖∇ₓ D(x)‖² over real images x, the gradient taken with respect
    to the finest-scale image (through the pyramid a multi-scale D is given, and any ``d_augment``)."""

    def __init__(self, *, gamma: float, every: int):
        self.gamma, self.every = gamma, every

    def __call__(self, score, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        x = real.detach().requires_grad_(True)
        with sdpa_kernel(SDPBackend.MATH):  # the fused attention kernels have no double backward
            scores = score(x)
        (grad,) = torch.autograd.grad(scores.sum(), x, create_graph=True)
        return 0.5 * self.gamma * grad.float().pow(2).flatten(1).sum(1).mean()


@hookimpl
def ganforge_register(registry):
    registry.register("loss", "relativistic_hinge", RelativisticHinge)
    registry.register("loss", "hinge", Hinge)
    registry.register("loss", "non_saturating", NonSaturating)
    registry.register("loss", "wgan_gp", WGANGP, WGANGPParams)
    registry.register("regularizer", "r1", R1, R1Params)
