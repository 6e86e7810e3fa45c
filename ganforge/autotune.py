"""``precision = "auto"``: the fastest precision and memory layout for this model on this machine, by measurement.

No rule about instruction sets picks the right precision everywhere: on a CPU with only AVX2, bf16
autocast sends convolutions to a slow fallback (77× slower than fp32); with AVX-512-BF16 and no AMX
bf16 was faster for some models and slower for others; on GPUs it depends on the kernels. So at
start-up ``auto`` times a few training steps of the configured model (forward and backward of the
D and G updates, on copies of the networks) in each candidate mode, in interleaved rounds
(:mod:`ganforge.timing`), and takes the fastest, if it beats fp32 in the standard layout (always a
candidate) by at least 5 %; a smaller gain is within the noise and fp32 is kept. A quick convolution
probe first drops bf16 where its kernels are emulated, so that such a CPU never spends minutes on
one bf16 step. The decision is cached per (device model, torch version, threads, model shape and
batch) in ``$GANFORGE_CACHE/precision.json``, so only the first run of a model pays for it.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils import parametrize

from .assembly import GAN
from .cache import cache_root
from .checkpoint import atomic_write
from .config import ModelConfig
from .errors import GanforgeError
from .kinds import Loss
from .precision import Precision
from .timing import Timing, interleaved, stopwatch, synchronizer

CACHE_FILE = "precision.json"
CHOICE_ENV = "GANFORGE_PRECISION_AUTO"  # a mode label: auto takes it without measuring (fixed numbers, e.g. tests)
MARGIN = 0.95  # another mode must take under this share of fp32's time: a smaller gain is within the noise
SLOW_KERNELS = 4.0  # a bf16 convolution this many times slower than fp32: emulated, not worth timing steps


@dataclass(frozen=True)
class Mode:
    """A precision and a memory layout."""

    precision: str  # fp32 or bf16
    channels_last: bool

    @property
    def label(self) -> str:
        return self.precision + ("+channels_last" if self.channels_last else "")

    @classmethod
    def parse(cls, label: str) -> Mode:
        precision, _, layout = label.partition("+")
        if precision not in ("fp32", "bf16") or layout not in ("", "channels_last"):
            raise GanforgeError(f"{label!r} is not a precision mode (fp32 or bf16, optionally +channels_last)")
        return cls(precision, layout == "channels_last")


FP32 = Mode("fp32", False)


@dataclass(frozen=True)
class Decision:
    """What ``auto`` chose, the seconds per step it measured for each candidate, and whether from the cache."""

    mode: Mode
    seconds: dict[str, float]  # label -> median seconds per step; {} where nothing needed timing
    note: str = ""  # why candidates were dropped
    cached: bool = False
    fixed: bool = False  # by $GANFORGE_PRECISION_AUTO: nothing to report

    def describe(self) -> str:
        """The log line: the choice and the measured seconds per step of each candidate."""
        if self.cached:
            return f"precision auto: {self.mode.label} (measured on an earlier run, {cache_file()})"
        if len(self.seconds) < 2:
            return f"precision auto: {self.mode.label}{self.note}"
        figures = ", ".join(f"{label} {s:.3g} s" for label, s in self.seconds.items())
        ratio = self.seconds[self.mode.label] / self.seconds[FP32.label]
        return f"precision auto: {self.mode.label}, {ratio:.2f}x the fp32 step (per step: {figures}){self.note}"


def cache_file() -> Path:
    return cache_root() / CACHE_FILE


def device_name(device: torch.device) -> str:
    """The device model: GPU name, or the CPU's model name and torch's kernel capability."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model} ({torch.backends.cpu.get_cpu_capability()})"


def cache_key(device: torch.device, model: dict, batch: int) -> str:
    shape = hashlib.sha256(json.dumps(model, sort_keys=True).encode()).hexdigest()[:16]
    return f"{device_name(device)} | torch {torch.__version__} | {torch.get_num_threads()} threads | {shape} | {batch}"


def cached(key: str) -> Mode | None:
    """The cached decision for ``key``; None when there is none or the cache entry is not one (measured again)."""
    try:
        record = json.loads(cache_file().read_text()).get(key)
        return Mode.parse(record["mode"])
    except (OSError, ValueError, AttributeError, TypeError, KeyError, GanforgeError):
        return None


def remember(key: str, decision: Decision) -> None:
    """Add the decision to the cache file (atomically; a cache that cannot be written is skipped)."""
    path = cache_file()
    try:
        known = json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError):
        known = {}
    known[key] = {"mode": decision.mode.label, "seconds": decision.seconds, "when": time.strftime("%Y-%m-%d")}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, json.dumps(known, indent=1, sort_keys=True))
    except OSError:
        pass


def candidates(device: torch.device, channels_last: bool | None) -> list[Mode]:
    """fp32 and (where the device has bf16 at all) bf16, in both layouts unless ``channels_last`` is fixed."""
    precisions = ["fp32"]
    if device.type != "cuda" or torch.cuda.is_bf16_supported():
        precisions.append("bf16")
    layouts = [False, True] if channels_last is None else [channels_last]
    modes = [Mode(p, layout) for p in precisions for layout in layouts]
    return sorted(modes, key=lambda m: m != FP32)  # fp32 first: the yardstick


def bf16_convolution_ratio(device: torch.device, repeats: int = 3) -> float:
    """Time of a 3×3 convolution (8×64×32×32) under bf16 autocast over its fp32 time (medians)."""
    conv = nn.Conv2d(64, 64, 3, padding=1).to(device)
    x = torch.randn(8, 64, 32, 32, device=device)
    sync = synchronizer(device)

    def run(dtype: torch.dtype | None) -> Callable[[], float]:
        def once() -> float:
            with torch.no_grad(), torch.autocast(device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None):
                return stopwatch(lambda: conv(x), sync)

        once()  # warm-up: kernel selection
        return once

    timings = interleaved({"fp32": run(None), "bf16": run(torch.bfloat16)}, repeats)
    return timings["bf16"].median / timings["fp32"].median


def step_timer(
    gan: GAN, loss: Loss, resolutions: Sequence[int], real: torch.Tensor, z: torch.Tensor, mode: Mode
) -> Callable[[], float]:
    """Seconds of one training step's passes (D forward and backward, G forward and backward) in ``mode``,
    at the final resolution of ``real``.

    It runs on copies of the networks, so their weights and spectral-norm vectors stay as they are;
    the optimizer steps are left out (their cost does not depend on the precision).
    """
    precision = Precision.create(mode.precision, real.device, mode.channels_last)
    G = precision.layout(copy.deepcopy(gan.generator).to(real.device)).train()  # the trainer moves its own later
    D = precision.layout(copy.deepcopy(gan.discriminator).to(real.device)).train()
    resolution = real.shape[-1]
    G.set_growth(resolution, 1.0)
    D.set_growth(resolution, 1.0)
    real_pyramid = gan.connection.pyramid(precision.images(real), resolutions)
    sync = synchronizer(real.device)

    def step() -> None:
        with precision.autocast(), parametrize.cached():
            fake = G(z)
            loss_d = loss.discriminator(D, real_pyramid, [f.detach() for f in fake])
        loss_d.backward()
        with precision.autocast(), parametrize.cached():
            loss_g = loss.generator(D, real_pyramid, fake)
        loss_g.backward()
        G.zero_grad(set_to_none=True)
        D.zero_grad(set_to_none=True)

    step()  # warm-up: kernel selection, allocator
    return lambda: stopwatch(step, sync)


def measure(timers: dict[Mode, Callable[[], float]], rounds: int) -> dict[Mode, Timing]:
    timings = interleaved({mode.label: timer for mode, timer in timers.items()}, rounds)
    return {mode: timings[mode.label] for mode in timers}


def choose(
    modes: Sequence[Mode],
    timer_of: Callable[[Mode], Callable[[], float]],
    device: torch.device,
    rounds: int = 3,
) -> Decision:
    """The fastest of ``modes`` (fp32 first) by median seconds per step over interleaved rounds."""
    note = ""
    if any(m.precision == "bf16" for m in modes):
        ratio = bf16_convolution_ratio(device)
        if ratio > SLOW_KERNELS:
            modes = [m for m in modes if m.precision != "bf16"]
            note = f"; bf16 not timed: its convolutions run {ratio:.0f}x slower than fp32 here (emulated)"
    if len(modes) == 1:
        return Decision(modes[0], {}, note)
    timings = measure({mode: timer_of(mode) for mode in modes}, rounds)
    seconds = {mode.label: t.median for mode, t in timings.items()}
    best = min(timings, key=lambda m: timings[m].median)
    if best != FP32 and FP32 in timings and seconds[best.label] > MARGIN * seconds[FP32.label]:
        note += f"; {best.label} is within {1 - MARGIN:.0%} of fp32: fp32 kept"
        best = FP32
    return Decision(best, seconds, note)


def decide(gan: GAN, loss: Loss, model: ModelConfig, batch: int, device: torch.device, layout: bool | None) -> Decision:
    """The cached decision for this model, batch and machine, or one measured now (and cached).

    ``layout``: the configured ``train.channels_last`` (``None``: auto chooses it too).
    """
    if forced := os.environ.get(CHOICE_ENV):
        try:
            return Decision(Mode.parse(forced), {}, f" (from ${CHOICE_ENV})", fixed=True)
        except GanforgeError as exc:
            raise GanforgeError(f"${CHOICE_ENV}: {exc}") from None
    key = cache_key(device, {"model": model.model_dump(mode="json"), "channels_last": layout}, batch)
    if (known := cached(key)) is not None:
        return Decision(known, {}, cached=True)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):  # the run's RNG untouched
        size = model.resolution
        real = torch.rand(batch, model.image_channels, size, size, device=device) * 2 - 1
        z = torch.randn(batch, model.latent_dim, device=device)
        modes = candidates(device, layout)
        decision = choose(modes, lambda mode: step_timer(gan, loss, model.resolutions, real, z, mode), device)
    remember(key, decision)
    return decision
