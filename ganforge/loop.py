"""The training loop around :meth:`Trainer.train_step`: when to log, sample, evaluate and checkpoint.

Every ``log_every`` steps the losses are read (the one host sync of a step), every
``sample_every`` a grid is written, every ``collapse.every`` the collapse alarm looks at a fixed
batch of latents (:mod:`ganforge.collapse`), every ``eval.every`` the metrics run, every
``checkpoint_every`` a checkpoint is written; each of these first asks the divergence check, so a
diverged state is never logged as sound, drawn, scored or saved. The final checkpoint comes before
the final evaluation, so a killed evaluation loses no training.
"""

from __future__ import annotations

import signal
import time
from typing import TYPE_CHECKING

from . import holdout, inception
from .checkpoint import atomic_write
from .config import dump_toml
from .errors import Interrupted
from .evaluation import check_extractors, subset
from .interrupts import GracefulStop
from .rundir import CONFIG_FILE, HOLDOUT, SAMPLES

if TYPE_CHECKING:
    from .training import Trainer


class Loop:
    """Runs ``trainer`` to a total number of steps; ``evaluate=False`` skips the ``[eval]`` metrics."""

    def __init__(self, trainer: Trainer, evaluate: bool = True):
        self.trainer, self.config = trainer, trainer.config
        self.evaluate = evaluate and bool(self.config.eval.metrics)

    def run(self, total_steps: int) -> None:
        t = self.trainer
        self._start()
        t.log.say(self._plan(total_steps))
        if total_steps < t.step:
            t.warn(f"the run is already at step {t.step}, past the {total_steps} asked for; nothing to train")
        t.G.train()
        t.D.train()
        tensorboard = self.config.train.tensorboard
        with GracefulStop() as stop, t.log.training(t.step, total_steps, tensorboard, dump_toml(self.config)):
            try:
                self._steps(total_steps, stop)
            except Interrupted as exc:  # a second signal, or one during the final evaluation
                raise Interrupted(exc.signum, t.step, t.checkpoint_step) from exc
            finally:
                t.source.close()

    def _start(self) -> None:
        """Load the data, then (rank 0) write the run's config, held-out record and grid of real images."""
        t, name = self.trainer, self.config.name
        if not t.data_loaded:  # decoding a folder or rendering phantoms can take minutes: say so first
            t.log.say(f"[bold]{name}[/]: loading the data ({self.config.data.name}) ...")
        t.log.say(f"[bold]{name}[/]: data = {t.data.description}")
        if self.evaluate:  # missing Inception weights fail now, not at the first evaluation
            ev = self.config.eval
            check_extractors(
                ev.metrics, t.registry, t.data.images, inception.resolve_weights(ev.inception_weights or None)
            )
        if not t.dist.is_main:
            return
        atomic_write(t.out / CONFIG_FILE, dump_toml(self.config))  # after the data loaded: a bad start leaves no run
        if t.split is not None:
            holdout.keep_record(t.out / HOLDOUT, t.split, self.config.data.holdout, self.config.seed)
        real_grid = t.out / SAMPLES / "real.png"
        if not real_grid.is_file():  # what the samples are compared with
            real = subset(t.data.images, self.config.train.grid_size, self.config.seed)
            t.log.grid(real, real_grid, f"{name}: real images. Data: {t.data.description}")

    def _plan(self, total_steps: int) -> str:
        """One line: where it trains, in which precision, what the schedule does, from which step to which."""
        t = self.trainer
        start, end = t.growth(t.step), t.growth(max(t.step, total_steps - 1))
        if (start.resolution, start.alpha) != (end.resolution, end.alpha):
            plan = f"growing {start.resolution}px → {end.resolution}px"
        else:
            plan = f"{t.steps_per_epoch} steps per epoch"
        layout = ", channels_last" if t.precision.channels_last else ""
        compiled = ", compiled" if self.config.train.compile else ""
        ranks = f" × {t.dist.world} processes" if t.dist.active else ""
        return f"device {t.device}{ranks}, {t.precision.mode}{layout}{compiled}, {plan}, step {t.step} → {total_steps}"

    def _steps(self, total_steps: int, stop: GracefulStop) -> None:
        t, train, ev = self.trainer, self.config.train, self.config.eval
        evaluated_at = None
        window_start, window_images = time.perf_counter(), 0
        while t.step < total_steps:
            window_images += t.growth(t.step).batch_size
            loss_d, loss_g = t.train_step()
            last = t.step == total_steps
            if t.step % train.log_every == 0 or last:
                t.finite.check(t.checkpoint_step)
                now = time.perf_counter()
                mean_d, mean_g = t.dist.mean(loss_d, loss_g)
                self._log_losses(float(mean_d), float(mean_g), window_images / max(now - window_start, 1e-9))
                window_start, window_images = now, 0
            if t.step % train.sample_every == 0:
                t.finite.check(t.checkpoint_step)
                t.sample_grid()
            if train.collapse.every and t.step % train.collapse.every == 0:
                t.finite.check(t.checkpoint_step)
                t.check_collapse()
            if self.evaluate and ev.every and t.step % ev.every == 0 and not last:
                t.finite.check(t.checkpoint_step)
                self._evaluate()
                evaluated_at = t.step
            stopping = t.dist.any(stop.signum is not None)  # every rank stops at the same step
            if t.step % train.checkpoint_every == 0 or last or stopping:
                t.save()
            t.log.advance(t.step)
            if stopping:
                raise Interrupted(stop.signum or signal.SIGTERM, t.step, t.checkpoint_step)
        if t.checkpoint_step != t.step:  # resumed at the end, or asked for no more steps
            t.save()
        if t.step % train.sample_every != 0:
            t.sample_grid()
        if self.evaluate and evaluated_at != t.step:
            with stop.immediately():
                self._evaluate(final=True)

    def _log_losses(self, loss_d: float, loss_g: float, speed: float) -> None:
        t = self.trainer
        figures = {"loss_d": loss_d, "loss_g": loss_g, "images_per_second": round(speed, 2)}
        if t.finite.skipped:
            figures["skipped_steps"] = t.finite.skipped
        figures.update(t.d_augment.figures())
        now_at = t.growth(t.step - 1)
        growing = (now_at.resolution, now_at.alpha) != (self.config.model.resolution, 1.0)
        t.log.losses(t.step, figures, f"{now_at.resolution}px α={now_at.alpha:.2f}  " if growing else "")

    def _evaluate(self, final: bool = False) -> None:
        """Evaluate; first say so, since evaluation can take as long as many steps."""
        names = ", ".join(ref.name for ref in self.config.eval.metrics)
        self.trainer.log.say(f"step {self.trainer.step}: {'final ' if final else ''}evaluation ({names}) ...")
        self.trainer.evaluate()
