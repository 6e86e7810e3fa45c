"""Optimizers: Adam and RMSprop with the parameters the SAMGAN/MSG-GAN papers vary."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated

import torch
from pydantic import BaseModel, ConfigDict, Field

from ganforge import hookimpl

Beta = Annotated[float, Field(ge=0, lt=1)]


class AdamParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    lr: float = Field(0.001, gt=0)
    betas: tuple[Beta, Beta] = Field((0.0, 0.99), description="(β1, β2), each in [0, 1); PGGAN/BMSG-GAN use (0, 0.99)")
    eps: float = Field(1e-8, gt=0)
    fused: bool = Field(
        False,
        description="one fused kernel for all parameters: the optimizer step ~5x faster on CPU, its rounding "
        "differs from the per-tensor path by about 1 ulp per step; false: the multi-tensor (foreach) path, "
        "bitwise the per-tensor result",
    )


def adam(*, parameters: Iterable[torch.nn.Parameter], lr: float, betas: tuple[float, float], eps: float, fused: bool):
    """Adam (Kingma & Ba 2015)."""
    return torch.optim.Adam(parameters, lr=lr, betas=betas, eps=eps, foreach=not fused, fused=fused or None)


class RMSpropParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    lr: float = Field(0.003, gt=0)
    alpha: float = Field(0.99, gt=0, lt=1, description="smoothing constant of the squared-gradient average")
    eps: float = Field(1e-8, gt=0)


def rmsprop(*, parameters: Iterable[torch.nn.Parameter], lr: float, alpha: float, eps: float):
    """RMSprop (Tieleman & Hinton 2012), the original MSG-GAN optimizer."""
    return torch.optim.RMSprop(parameters, lr=lr, alpha=alpha, eps=eps, foreach=True)


@hookimpl
def ganforge_register(registry):
    registry.register("optimizer", "adam", adam, AdamParams)
    registry.register("optimizer", "rmsprop", rmsprop, RMSpropParams)
