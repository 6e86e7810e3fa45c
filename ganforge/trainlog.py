"""What a training run reports as it goes: log lines, the progress bar, ``metrics.jsonl``, grids, TensorBoard.

Only the process that writes files (rank 0) writes; the others' :class:`TrainLog` stays silent,
so the loop calls it the same way on every rank. On a terminal there is a live bar; elsewhere
(SLURM, nohup, CI) a plain, time-stamped line every ``log_every`` steps, with an ETA.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from .images import save_grid
from .rundir import RunDir
from .tracking import TensorBoard


class TrainLog:
    """The run directory's log for one process; ``main``: this process writes (rank 0)."""

    def __init__(self, run: RunDir, console: Console, main: bool = True):
        self.run, self.main = run, main
        self.console = console if main else Console(stderr=True, quiet=True)
        self.tensorboard: TensorBoard | None = None
        self._progress: Progress | None = None
        self._pace = (time.perf_counter(), 0)  # (when, step) this process started training, for the ETA

    def say(self, message: str) -> None:
        """A line of the log; in a file (nohup, SLURM) each line starts with the time, to read it later."""
        stamp = "" if self.console.is_terminal else time.strftime("%Y-%m-%d %H:%M:%S  ")
        self.console.print(f"{stamp}{message}", highlight=False, soft_wrap=bool(stamp))

    def warn(self, message: str) -> None:
        self.say(f"[yellow]warning[/]: {message}")

    @contextmanager
    def training(self, start: int, total: int, tensorboard: bool, config_text: str) -> Iterator[None]:
        """The bar (on a terminal) and TensorBoard (when asked for) for the steps ``start`` → ``total``."""
        if tensorboard and self.main:
            self.tensorboard = TensorBoard.open(self.run.path, self.warn)
            if self.tensorboard:
                self.tensorboard.text("config", config_text)
        columns = (
            TextColumn("[bold blue]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[stats]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
        )
        self._pace = (time.perf_counter(), start)
        try:
            with Progress(*columns, console=self.console, disable=not self.console.is_terminal) as progress:
                progress.add_task("training", total=total, completed=start, stats="")
                self._progress = progress
                yield
        finally:
            self._progress = None
            if self.tensorboard is not None:
                self.tensorboard.close()
                self.tensorboard = None

    def advance(self, step: int) -> None:
        if self._progress is not None:
            self._progress.update(self._progress.task_ids[0], completed=step)

    def losses(self, step: int, figures: Mapping[str, float], stage: str = "") -> None:
        """One ``metrics.jsonl`` record of the training figures, and the bar's text or a plain line."""
        if not self.main:
            return
        self.run.log({"step": step, **figures, "time": time.time()})
        if self.tensorboard:
            self.tensorboard.scalars(step, {f"train/{k}": v for k, v in figures.items()})
        stats = f"{stage}D {figures['loss_d']:.3f}  G {figures['loss_g']:.3f}  {figures['images_per_second']:.1f} img/s"
        if self._progress is None:
            return
        self._progress.update(self._progress.task_ids[0], stats=stats)
        if self._progress.disable:
            total = self._progress.tasks[0].total or step
            self.say(f"step {step}/{total:.0f}  {stats}  {self._eta(step, total)}")

    def evaluation(self, step: int, record: Mapping[str, Any]) -> None:
        """An evaluation's figures: into ``metrics.jsonl``, TensorBoard and one line."""
        if not self.main:
            return
        self.run.log({"step": step, "eval": record})
        figures = {f"{m}/{k}": v for m, values in record["metrics"].items() for k, v in values.items()}
        if self.tensorboard:
            self.tensorboard.scalars(step, {f"eval/{k}": v for k, v in figures.items()})
        self.say(f"step {step}: " + "  ".join(f"{k.split('/')[-1]} {v:.4g}" for k, v in figures.items()))

    def collapse(self, step: int, figures: Mapping[str, float]) -> None:
        """The collapse alarm's figures: into ``metrics.jsonl`` (``{"step", "collapse"}``) and TensorBoard."""
        if not self.main:
            return
        self.run.log({"step": step, "collapse": dict(figures)})
        if self.tensorboard:
            self.tensorboard.scalars(step, {f"collapse/{k}": v for k, v in figures.items()})

    def grid(self, images: torch.Tensor, path: Path, caption: str, step: int | None = None) -> None:
        """A PNG grid of uint8 ``images`` (and TensorBoard's ``samples`` image when ``step`` is given)."""
        if not self.main:
            return
        save_grid(images, path, caption)
        if self.tensorboard and step is not None:
            self.tensorboard.image("samples", images, step)

    def _eta(self, step: int, total: float) -> str:
        """Time left, from this process's pace so far (a resumed run's earlier steps do not count)."""
        started, first = self._pace
        done = step - first
        if done <= 0:
            return ""
        left = (time.perf_counter() - started) / done * (total - step)
        return f"ETA {int(left // 3600)}:{int(left % 3600 // 60):02d}:{int(left % 60):02d}"
