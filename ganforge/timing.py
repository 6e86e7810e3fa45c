"""Interleaved timing: compare ways of doing the same work on a machine whose load drifts.

Timing one mode after another measures the machine's load as much as the modes: on a shared
machine the drift between two rows can be as large as the effect. Here each round runs every mode
once, in alternating order (A B C, then C B A, …), so every mode sees the same drift; the summary
is the median and the range over rounds. Used by ``precision = "auto"`` and ``benchmarks/``.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch


def round_orders(names: list[str], rounds: int) -> list[list[str]]:
    """The order of each round: ``names``, then reversed, alternating."""
    return [list(names) if r % 2 == 0 else list(reversed(names)) for r in range(rounds)]


@dataclass(frozen=True)
class Timing:
    """Seconds of one mode, one figure per round."""

    samples: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def low(self) -> float:
        return min(self.samples)

    @property
    def high(self) -> float:
        return max(self.samples)


def interleaved(runs: Mapping[str, Callable[[], float]], rounds: int) -> dict[str, Timing]:
    """Each run's seconds over ``rounds`` alternating rounds.

    A run is a callable that does its work once and returns the seconds it took (it times itself, so
    it can leave set-up and host syncs outside the timed part).
    """
    if rounds < 1:
        raise ValueError(f"rounds must be at least 1, not {rounds}")
    samples: dict[str, list[float]] = {name: [] for name in runs}
    for order in round_orders(list(runs), rounds):
        for name in order:
            samples[name].append(runs[name]())
    return {name: Timing(tuple(times)) for name, times in samples.items()}


def synchronizer(device: torch.device) -> Callable[[], None]:
    """What waits for ``device``'s queued work before a clock is read (nothing on a CPU)."""
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


def stopwatch(work: Callable[[], object], sync: Callable[[], object] = lambda: None) -> float:
    """Seconds ``work()`` takes, ``sync()`` (e.g. a CUDA synchronize) before and after."""
    sync()
    start = time.perf_counter()
    work()
    sync()
    return time.perf_counter() - start


def load_average() -> str:
    """The 1-minute load average and the cores, for tables (``n/a`` where the OS has none)."""
    try:
        return f"{os.getloadavg()[0]:.2f} on {os.cpu_count()} cores"
    except OSError:
        return "n/a"
