"""Memory needed before it is allocated: parameters and a batch's peak activations, measured on the meta device.

A 59 KB weights file can describe a generator whose self-attention at 256² needs N² = 4·10⁹ scores
per image, and ``latent_dim = 1e12`` a layer of terabytes; allocating first ends in a machine
that swaps for a minute and a traceback. So before anything real is allocated, the work is run
once on PyTorch's meta device (shapes, no storage) while :class:`LiveBytes` follows every tensor
the operators create and free; that gives the peak for two batch sizes, and the peak grows
linearly with the batch. :func:`fit_batch` then picks the largest batch within a budget
(``--max-memory``; by default :data:`DEFAULT_SHARE` of the memory available now) or refuses in
one line saying how much is needed.

The estimate is an upper bound: on the meta device attention takes PyTorch's plain path, which
materialises the N×N scores; fused kernels on the CPU or GPU may need far less.
"""

from __future__ import annotations

import math
import os
import re
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from .errors import GanforgeError

DEFAULT_SHARE = 0.8  # of the memory available at start-up, when --max-memory is not given
ADAM_STATES = 2  # tensors per parameter an Adam-like optimizer keeps
_UNITS = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}


def parse_size(text: str, what: str = "max_memory") -> int:
    """Bytes of ``"8G"``, ``"512MB"``, ``"1.5GiB"`` or ``"1000000"``; ``what`` names the option in errors."""
    found = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([kmgt]?)(i?b)?\s*", text.lower())
    if not found:
        raise GanforgeError(f"{what} {text!r}: give a size such as 8G, 512M or 2.5GB")
    return int(float(found.group(1)) * _UNITS[found.group(2)])


def size_text(n: float) -> str:
    for unit, scale in (("TB", 2**40), ("GB", 2**30), ("MB", 2**20), ("KB", 2**10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n:.0f} B"


def available_memory(device: torch.device) -> int:
    """Free memory of ``device`` now: the GPU's, or the machine's (``MemAvailable``) for the CPU."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 2**63  # unknown: no budget rather than a wrong one


def budget(max_memory: str | None, device: torch.device) -> int:
    """The bytes one command may plan to use: ``--max-memory``, or a share of what is available."""
    if max_memory:
        return parse_size(max_memory)
    return int(DEFAULT_SHARE * available_memory(device))


def parameter_bytes(module: nn.Module) -> int:
    """Bytes of ``module``'s parameters and buffers (works on the meta device; exact Python integers)."""
    tensors = [*module.parameters(), *module.buffers()]
    return sum(math.prod(t.shape) * t.element_size() for t in tensors)


class LiveBytes(TorchDispatchMode):
    """Follows the storage every operator returns until its last tensor is freed; keeps the peak.

    Views share their base's storage, so bytes are counted once per storage.
    """

    def __init__(self) -> None:
        super().__init__()
        self.live = self.peak = 0
        self._refs: dict[int, list[int]] = {}  # storage id -> [tensors alive, bytes]

    def _freed(self, key: int) -> None:
        entry = self._refs[key]
        entry[0] -= 1
        if entry[0] == 0:
            self.live -= entry[1]
            del self._refs[key]

    def _follow(self, tensor: torch.Tensor) -> None:
        storage = tensor.untyped_storage()
        key = storage._cdata
        if key not in self._refs:
            self._refs[key] = [0, storage.nbytes()]
            self.live += storage.nbytes()
            self.peak = max(self.peak, self.live)
        self._refs[key][0] += 1
        weakref.finalize(tensor, self._freed, key)

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        for tensor in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(tensor, torch.Tensor):
                self._follow(tensor)
        return out


def peak_bytes(work: Callable[[], Any]) -> int | None:
    """Peak bytes of the tensors ``work`` creates on the meta device; None when it cannot run there
    (an operator without a meta kernel, a value read back with ``.item()``): then nothing is known."""
    tracker = LiveBytes()
    try:
        with tracker:
            work()
    except Exception:  # noqa: BLE001 (whatever a plugin's layer raises there, the real run will say)
        return None
    return tracker.peak


def prepare_meta_model(module: nn.Module) -> nn.Module:
    """Ready a meta-built network for :func:`peak_bytes`: its 0-dim buffers real (state such as a
    growth stage, which code reads back with ``int()``)."""
    for child in module.modules():
        for name, buffer in list(child.named_buffers(recurse=False)):
            if buffer.is_meta and buffer.dim() == 0:
                setattr(child, name, torch.zeros((), dtype=buffer.dtype, device="cpu"))
    return module


@dataclass(frozen=True)
class Estimate:
    """Memory of a job: ``fixed`` bytes (weights, optimizer state) plus ``per_item`` bytes per batch item."""

    fixed: int
    per_item: int

    def total(self, batch: int) -> int:
        return self.fixed + batch * self.per_item


def estimate(fixed: int, peak: int | None, batch: int, base: int = 0) -> Estimate:
    """``fixed`` bytes plus a ``peak`` measured at ``batch`` items, ``base`` of which does not grow with it.

    An unknown peak (the work could not run on the meta device) counts only what is fixed.
    """
    if peak is None:
        return Estimate(fixed, 0)
    return Estimate(fixed + base, max(0, math.ceil((peak - base) / batch)))


def fit_batch(estimate: Estimate, wanted: int, limit: int, what: str, advice: str) -> int:
    """The largest batch up to ``wanted`` within ``limit`` bytes; refuses in one line when not even one fits."""
    if estimate.total(1) > limit:
        raise GanforgeError(
            f"{what}: needs about {size_text(estimate.total(1))} even for a batch of 1 "
            f"({size_text(estimate.fixed)} of weights, {size_text(estimate.per_item)} per image), more than the "
            f"{size_text(limit)} budget; {advice}"
        )
    if estimate.per_item == 0:
        return wanted
    return max(1, min(wanted, (limit - estimate.fixed) // estimate.per_item))


def require_fit(estimate: Estimate, batch: int, limit: int, what: str, advice: str) -> None:
    """Refuse in one line when a batch of ``batch`` does not fit in ``limit`` bytes, naming the largest that does."""
    if estimate.total(batch) <= limit:
        return
    fits = (limit - estimate.fixed) // estimate.per_item if estimate.per_item else 0
    largest = f"the largest batch that fits is {fits}" if fits >= 1 else "not even a batch of 1 fits"
    raise GanforgeError(
        f"{what}: needs about {size_text(estimate.total(batch))} ({size_text(estimate.fixed)} of weights and "
        f"optimizer state, {size_text(estimate.per_item)} per image), more than the {size_text(limit)} budget; "
        f"{largest}; {advice}"
    )


def on_meta(work: Callable[[], Any], what: str) -> Any:
    """``work()`` (already on the meta device); a size PyTorch cannot even describe is one line, not a traceback."""
    try:
        return work()
    except (RuntimeError, ValueError, OverflowError) as exc:
        text = str(exc).strip().splitlines()
        raise GanforgeError(f"{what}: cannot be built at this size ({text[0] if text else exc})") from exc
