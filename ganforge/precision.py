"""Numeric precision and memory layout of training: one small object the trainer asks, not a set of flags.

``precision = "auto"`` (the default) is chosen by measurement, see :mod:`ganforge.autotune`; here
are the modes themselves. Parameters, optimizer state, losses, the EMA and spectral norm's power
iteration stay fp32 in every mode; fp16 adds a gradient scaler per network.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import torch
from torch import nn

from .errors import GanforgeError

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
M = TypeVar("M", bound=nn.Module)


def _cpu_flag(probe: str, flag: str) -> bool:
    check = getattr(torch.cpu, probe, None)
    if check is not None and check():
        return True
    try:
        return f" {flag}" in Path("/proc/cpuinfo").read_text()
    except OSError:
        return False


def cpu_has_native_bf16() -> bool:
    """AVX-512-BF16 or AMX: the CPU has bf16 instructions (bf16 autocast is not emulated)."""
    return cpu_has_amx() or _cpu_flag("_is_avx512_bf16_supported", "avx512_bf16")


def cpu_has_amx() -> bool:
    """AMX tile units: bf16 matrix products several times faster than fp32 (Sapphire Rapids and later)."""
    return _cpu_flag("_is_amx_tile_supported", "amx_bf16")


def resolve(precision: str, device: torch.device) -> str:
    """An explicit precision, checked against the device (``auto`` is :mod:`ganforge.autotune`'s to decide)."""
    if precision not in PRECISIONS or precision == "auto":
        explicit = ", ".join(p for p in PRECISIONS if p != "auto")
        raise GanforgeError(f"train.precision: {precision!r} is not one of {explicit} (auto is measured first)")
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise GanforgeError("train.precision = 'bf16': this GPU has no bf16 support (use 'fp16' or 'fp32')")
    return precision


def hardware_summary(device: torch.device | None = None) -> str:
    """One line for benchmark tables: the CPU's instruction set and bf16 support, the GPU's name."""
    bf16 = "AMX" if cpu_has_amx() else "AVX-512-BF16, no AMX" if cpu_has_native_bf16() else "no"
    cpu = f"CPU {torch.backends.cpu.get_cpu_capability()}, native bf16: {bf16}"
    cpu += f", {torch.get_num_threads()} threads"
    if torch.cuda.is_available():
        return f"{cpu}; GPU {torch.cuda.get_device_name(device)}"
    return cpu


@dataclass
class Precision:
    """Autocast, gradient scaling and memory layout for one training run."""

    mode: str  # resolved: fp32, bf16 or fp16
    device: torch.device
    channels_last: bool = False
    scalers: dict[str, torch.amp.GradScaler] = field(default_factory=dict)

    @classmethod
    def create(cls, precision: str, device: torch.device, channels_last: bool = False) -> Precision:
        mode = resolve(precision, device)
        scalers = {}
        if mode == "fp16":
            scalers = {name: torch.amp.GradScaler(device.type) for name in ("generator", "discriminator")}
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed shapes per step: pick the fastest kernels once
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = mode != "fp32"
        return cls(mode, device, channels_last, scalers)

    @property
    def dtype(self) -> torch.dtype | None:
        return _DTYPES.get(self.mode)

    def autocast(self) -> contextlib.AbstractContextManager:
        """The forward passes run in this context (losses come out fp32)."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def layout(self, module: M) -> M:
        """``module`` itself, its weights moved to channels-last when that layout was chosen."""
        return module.to(memory_format=torch.channels_last) if self.channels_last else module

    def images(self, images: torch.Tensor) -> torch.Tensor:
        return images.contiguous(memory_format=torch.channels_last) if self.channels_last else images

    def backward(self, loss: torch.Tensor, network: str) -> None:
        scaler = self.scalers.get(network)
        (scaler.scale(loss) if scaler is not None else loss).backward()

    def unscale(self, optimizer: torch.optim.Optimizer, network: str) -> None:
        """Gradients at their true scale (for the gradient norm) before :meth:`step`."""
        if network in self.scalers:
            self.scalers[network].unscale_(optimizer)

    def step(self, optimizer: torch.optim.Optimizer, network: str, apply: bool = True) -> None:
        """``optimizer.step()`` unless ``apply`` is false; with fp16 the scaler also skips a step whose
        gradients overflowed, and is updated either way (its next ``unscale_`` needs that)."""
        scaler = self.scalers.get(network)
        if scaler is None:
            if apply:
                optimizer.step()
            return
        if apply:
            scaler.step(optimizer)
        scaler.update()

    @property
    def checks_gradients(self) -> bool:
        """fp16 gradients overflow now and then by design (the scaler skips those steps)."""
        return self.mode != "fp16"

    def state(self) -> dict[str, dict]:
        """Scaler states for the checkpoint (empty unless fp16)."""
        return {name: scaler.state_dict() for name, scaler in self.scalers.items()}

    def load_state(self, state: dict[str, dict]) -> None:
        for name, scaler in self.scalers.items():
            if name in state:
                scaler.load_state_dict(state[name])
