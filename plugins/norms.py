"""Normalizations: spectral norm and equalized learning rate (weights), pixel norm (features)."""

from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import _SpectralNorm

from ganforge import hookimpl


class _Scale(nn.Module):
    """Parametrization ``w -> gain * w`` (the run-time scaling of equalized learning rate)."""

    def __init__(self, gain: float):
        super().__init__()
        self.gain = gain

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight * self.gain


class EqualizedLRParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    gain: float = Field(math.sqrt(2), description="He gain; the scale is gain / sqrt(fan_in)")


class EqualizedLR:
    """Equalized learning rate (PGGAN): weights ~ N(0, 1), scaled by gain/sqrt(fan_in) at run time."""

    def __init__(self, *, gain: float):
        self.gain = gain

    def apply(self, module: nn.Module, fan_in: int) -> None:
        weight, bias = module.weight, module.bias
        assert isinstance(weight, torch.Tensor)
        with torch.no_grad():
            weight.normal_(0.0, 1.0)
            if isinstance(bias, torch.Tensor):
                bias.zero_()
        parametrize.register_parametrization(module, "weight", _Scale(self.gain / math.sqrt(fan_in)))


class _FullPrecisionSpectralNorm(_SpectralNorm):
    """torch's spectral norm with σ computed in fp32 under autocast (CUDA autocast would run its matrix-vector
    products in bf16/fp16). Same buffers and state-dict names as torch's.

    ``keep_scale``: the normalised weight is multiplied back by σ as estimated at initialisation (a buffer,
    ``init_sigma``), so the layer starts as it was built (with equalized lr: He's scale) and its σ stays there.

    It builds on torch's private ``_SpectralNorm`` (the class ``spectral_norm`` registers) so that its
    buffers, state-dict names and numbers stay torch's; ``tests/test_layers.py`` fails if torch changes
    what this relies on (the constructor's arguments, ``_power_method``).
    """

    init_sigma: torch.Tensor | None

    def __init__(self, weight: torch.Tensor, n_power_iterations: int, dim: int, eps: float, keep_scale: bool):
        super().__init__(weight, n_power_iterations, dim, eps)
        sigma = None
        if keep_scale:
            with torch.no_grad():
                sigma = torch.vdot(self._u, torch.mv(self._reshape_weight_to_matrix(weight), self._v))
        self.register_buffer("init_sigma", sigma)  # None: not in the state dict (the unit scale's is torch's)

    def _power_method(self, weight_mat: torch.Tensor, n_power_iterations: int) -> None:
        # On the meta device (shapes only: untrusted weights files, memory estimates) the iterations compute
        # nothing, but their Python decompositions cost seconds (15 when a layer is created).
        if not weight_mat.is_meta:
            super()._power_method(weight_mat, n_power_iterations)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        if weight.device.type == "meta":  # memory estimates (ganforge.memory): autocast knows no meta device
            normalized = super().forward(weight)
        else:
            with torch.autocast(weight.device.type, enabled=False):
                normalized = super().forward(weight)
        return normalized if self.init_sigma is None else normalized * self.init_sigma


class SpectralNormParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    power_iterations: int = Field(1, ge=1, description="power iterations per training forward pass")
    eps: float = Field(1e-12, gt=0)
    scale: Literal["unit", "init"] = Field(
        "unit",
        description="unit: every layer's σ is 1 (Miyato et al.; after equalized lr it divides eq-lr's gain out); "
        "init: σ stays at its value at initialisation (eq-lr's He scale is kept)",
    )


class SpectralNorm:
    """Spectral normalization (Miyato et al. 2018): weight divided by its largest singular value.

    With ``scale = "init"`` it is multiplied back by that value at initialisation (a fixed per-layer gain).
    """

    def __init__(self, *, power_iterations: int, eps: float, scale: str):
        self.power_iterations, self.eps, self.keep_scale = power_iterations, eps, scale == "init"

    def apply(self, module: nn.Module, fan_in: int) -> None:
        # What torch.nn.utils.parametrizations.spectral_norm does, with the fp32 subclass.
        dim = 1 if isinstance(module, nn.ConvTranspose2d) else 0  # a transposed conv's output channels are dim 1
        weight = module.weight  # with the weight norms applied before this one (equalized lr's scale)
        assert isinstance(weight, torch.Tensor)
        norm = _FullPrecisionSpectralNorm(weight, self.power_iterations, dim, self.eps, self.keep_scale)
        parametrize.register_parametrization(module, "weight", norm)


class PixelNormParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    eps: float = Field(1e-8, gt=0)


class PixelNorm(nn.Module):
    """Pixel norm (PGGAN): each pixel's feature vector scaled to unit root-mean-square."""

    def __init__(self, *, channels: int, eps: float):
        super().__init__()
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + self.eps)


@hookimpl
def ganforge_register(registry):
    registry.register("weight_norm", "equalized_lr", EqualizedLR, EqualizedLRParams)
    registry.register("weight_norm", "spectral", SpectralNorm, SpectralNormParams)
    registry.register("feature_norm", "pixel", PixelNorm, PixelNormParams)
