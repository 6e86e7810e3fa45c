"""The training loop: one D step then one G step per iteration (BMSG-GAN), EMA of G, exact resume.

Randomness is a pure function of (seed, step): the data order of epoch ``e`` comes from a
generator seeded with (seed, e), and torch's global RNG is re-seeded from (seed, step) before
every step (latents, augmentation, the gradient-penalty mix). So resuming from a checkpoint at
step k and training to N gives the same weights as training to N without interruption.
"""

from __future__ import annotations

import copy
import math
import signal
import time
from pathlib import Path
from typing import Any, cast

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from torch import nn

from . import __version__, holdout, inception
from .assembly import GAN, build_gan
from .checkpoint import atomic_write, save_module
from .checkpointing import Checkpointer
from .config import Config, dump_toml
from .datasource import TrainingData
from .distributed import Distributed
from .divergence import DivergenceCheck, gradient_norm
from .errors import CheckpointError, GanforgeError, Interrupted
from .evaluation import EvalContext, as_record, run_metrics, subset
from .holdout import Split
from .images import save_grid, to_uint8
from .interrupts import GracefulStop
from .kinds import Growing, Growth, GrowthAware, ImageDataset
from .plugins import plugin_versions
from .precision import Precision
from .registry import Registry
from .rundir import (
    CONFIG_FILE,
    GENERATOR_BEST,
    HOLDOUT,
    SAMPLES,
    RunDir,
)
from .sampling import generate, latents
from .seeds import mix_seed
from .tracking import TensorBoard


def compiled(module: nn.Module) -> nn.Module:
    """``torch.compile(module)``, or a one-line error where this PyTorch/Python cannot compile.

    Only the generator is compiled. The discriminator runs on real and on fake images before one
    backward pass, and spectral norm updates its power-iteration vectors in place on every call:
    eager PyTorch clones them for the backward pass, compiled graphs do not (a "modified by an
    inplace operation" error in backward, seen with torch 2.14).
    """
    if not hasattr(torch, "compile"):
        raise GanforgeError("train.compile = true: this PyTorch has no torch.compile; set it to false")
    try:
        return cast(nn.Module, torch.compile(module))
    except RuntimeError as exc:  # e.g. a Python version dynamo does not support yet
        raise GanforgeError(f"train.compile = true: torch.compile is unavailable here ({exc})") from exc


def select_device(name: str, configured: str = "auto") -> torch.device:
    """``--device NAME`` (``auto``: the config's ``train.device``, then CUDA when there is one)."""
    name = configured if name == "auto" else name
    if name == "cuda" and not torch.cuda.is_available():
        raise GanforgeError("--device cuda: no CUDA device is available (use --device cpu or auto)")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def model_metadata(config: Config, registry: Registry, role: str, step: int, data: str) -> dict[str, Any]:
    """What a weights file carries so that it can be used with nothing else."""
    return {
        "ganforge.role": role,
        "ganforge.version": __version__,
        "ganforge.config": config.to_dict(),
        "ganforge.plugins": plugin_versions(registry),
        "ganforge.step": step,
        "ganforge.data": data,
    }


@torch.no_grad()
def update_ema(ema: nn.Module, model: nn.Module, decay: float) -> None:
    """ema ← decay·ema + (1 − decay)·model for parameters; buffers (e.g. spectral-norm vectors) are copied.

    One fused (foreach) kernel per group instead of one small kernel per tensor.
    """
    torch._foreach_lerp_(list(ema.parameters()), list(model.parameters()), 1.0 - decay)
    buffers = list(ema.buffers())
    if buffers:  # none without spectral norm (MSG-GAN); the foreach kernels refuse empty lists
        torch._foreach_copy_(buffers, list(model.buffers()))


class Trainer:
    """Builds everything a run needs from a validated config and trains it into ``out``.

    Files go through :class:`~ganforge.rundir.RunDir`, signals through
    :class:`~ganforge.interrupts.GracefulStop`, non-finite values through
    :class:`~ganforge.divergence.DivergenceCheck`; this class holds the networks and the loop.
    """

    def __init__(
        self, config: Config, registry: Registry, out: str | Path, device: str = "auto", console: Console | None = None
    ):
        self.config, self.registry, self.out = config, registry, Path(out)
        self.run = RunDir(self.out)
        self.dist = Distributed.from_environment(select_device(device, config.train.device))
        self.device = self.dist.device
        self.console = (console or Console(stderr=True)) if self.dist.is_main else Console(stderr=True, quiet=True)
        model = config.model
        if config.train.threads:
            torch.set_num_threads(config.train.threads)
        torch.manual_seed(config.seed)  # initial weights and spectral-norm vectors
        self.gan: GAN = build_gan(model, registry)
        self.precision = Precision.create(config.train.precision, self.device, config.train.channels_last)
        # The EMA generator keeps the standard layout: its samples equal those of its weights file, bit for bit.
        self.G_ema = copy.deepcopy(self.gan.generator).to(self.device).eval().requires_grad_(False)
        self.G = self.precision.layout(self.gan.generator.to(self.device))
        self.D = self.precision.layout(self.gan.discriminator.to(self.device))
        self.G_run = self.dist.wrap(self.G)
        self.G_run = compiled(self.G_run) if config.train.compile else self.G_run
        self.D_run = self.dist.wrap(self.D)  # eager: see compiled()
        self.loss = registry.build("loss", config.loss.name, config.loss.params)
        self.opt_g = registry.build("optimizer", config.optim.name, config.optim.params, parameters=self.G.parameters())
        d_optim = config.optim_d or config.optim
        self.opt_d = registry.build("optimizer", d_optim.name, d_optim.params, parameters=self.D.parameters())
        self.augment = [registry.build("augment", a.name, a.params) for a in config.augment]
        self.checkpoints = Checkpointer(
            self.run,
            self.networks,
            {"opt_g": self.opt_g, "opt_d": self.opt_d},
            self.precision,
            lambda role, step: model_metadata(config, registry, role, step, self.data.description),
            config.train.keep_checkpoints,
            lambda message: self.warn(message),  # late-bound: callers may replace self.warn
        )
        self.finite = DivergenceCheck(self.device, config.train.on_nonfinite)
        self.growing = [
            m for m in (self.gan.connection, *self.G.modules(), *self.D.modules()) if isinstance(m, GrowthAware)
        ]
        self.step = 0
        self.checkpoint_step: int | None = None  # step of the newest complete checkpoint on disk
        self.best_fid: float | None = None
        self._source: TrainingData | None = None  # see the source property
        self.tensorboard: TensorBoard | None = None  # opened by fit() when train.tensorboard
        self._last: tuple[list[torch.Tensor], torch.Tensor] | None = None  # last step's real pyramid and z
        self._pace = (time.perf_counter(), 0)  # (when, step) this process started training, for the ETA

    def warn(self, message: str) -> None:
        self.say(f"[yellow]warning[/]: {message}")

    def say(self, message: str) -> None:
        """A line of the log; in a file (nohup, SLURM) each line starts with the time, to read it later."""
        stamp = "" if self.console.is_terminal else time.strftime("%Y-%m-%d %H:%M:%S  ")
        self.console.print(f"{stamp}{message}", highlight=False, soft_wrap=bool(stamp))

    # ------------------------------------------------------------------ data

    @property
    def source(self) -> TrainingData:
        """The training images and their batches (loaded on first use: building a dataset can take minutes)."""
        if self._source is None:
            self._source = TrainingData.load(self.config, self.registry, self.device, self._stream_position)
        return self._source

    @property
    def data(self) -> ImageDataset:
        return self.source.dataset

    @property
    def split(self) -> Split | None:
        """The training part and the held-out part, when ``data.holdout > 0``."""
        return self.source.split

    @property
    def steps_per_epoch(self) -> int:
        return len(self.data.images) // self.config.train.batch_size

    def total_steps(self, steps: int | None = None, epochs: float | None = None) -> int:
        """CLI ``--steps`` wins, then ``--epochs``, then the config's steps, then a growth schedule's
        length, then the config's epochs. Totals, not increments."""
        train = self.config.train
        if steps is not None:
            return steps
        if epochs is None and train.steps is not None:
            return train.steps
        if epochs is None and isinstance(self.gan.connection, Growing):
            return self.gan.connection.total_steps()
        return max(1, math.ceil((epochs if epochs is not None else train.epochs) * self.steps_per_epoch))

    def growth(self, step: int) -> Growth:
        """Resolution, fade-in, batch size and data position of ``step`` (fixed unless the model grows)."""
        if isinstance(self.gan.connection, Growing):
            return self.gan.connection.growth(step)
        size = self.config.train.batch_size
        return Growth(self.config.model.resolution, 1.0, size, step * size)

    def _stream_position(self, step: int) -> tuple[int, int]:
        """``(images_seen, batch_size)`` of ``step``: where its batch starts in the data stream."""
        growth = self.growth(step)
        return growth.images_seen, growth.batch_size

    def _batch(self, step: int) -> torch.Tensor:
        """The real images of ``step``, as floats on the device."""
        return self.source.batch(step)

    # ------------------------------------------------------------------ one step

    def ema_decay(self, step: int) -> float:
        """The configured decay; with ``ema_warmup``, TensorFlow's (1+t)/(10+t) ramp caps it early on."""
        train = self.config.train
        return min(train.ema_decay, (1 + step) / (10 + step)) if train.ema_warmup else train.ema_decay

    def train_step(self) -> tuple[torch.Tensor, torch.Tensor]:
        """One discriminator update then one generator update on the same latents.

        Returns the two losses as 0-dim tensors on the device: reading them is a host sync, which the
        loop does only every ``log_every`` steps.
        """
        torch.manual_seed(mix_seed(self.config.seed, self.step, 2))
        growth = self.growth(self.step)
        for target in self.growing:  # a growing connection and its modules
            target.set_growth(growth.resolution, growth.alpha)
        real = self._batch(self.step)
        for augment in self.augment:  # on the global batch, so every rank's slice is what one process would see
            real = augment(real)
        z = torch.randn(real.shape[0], self.config.model.latent_dim, device=self.device)
        real, z = self.dist.shard(real), self.dist.shard(z)
        real_pyramid = self.gan.connection.pyramid(self.precision.images(real), self.config.model.resolutions)
        amp = self.precision

        self.D.requires_grad_(True)
        with amp.autocast():
            fake = self.G_run(z)
            loss_d = self.loss.discriminator(self.D_run, real_pyramid, [f.detach() for f in fake])
        self.opt_d.zero_grad(set_to_none=True)
        amp.backward(loss_d, "discriminator")
        grad_d = self._gradient_norm(self.D, self.opt_d, "discriminator")
        d_ok = self.finite.allows(loss_d, grad_d)
        amp.step(self.opt_d, "discriminator", apply=d_ok)

        self.D.requires_grad_(False)
        with amp.autocast():
            loss_g = self.loss.generator(self.D, real_pyramid, fake)  # no D gradients: no DDP wrapper
        self.opt_g.zero_grad(set_to_none=True)
        amp.backward(loss_g, "generator")
        grad_g = self._gradient_norm(self.G, self.opt_g, "generator")
        g_ok = self.finite.allows(loss_g, grad_g)
        amp.step(self.opt_g, "generator", apply=g_ok)
        if g_ok:
            update_ema(self.G_ema, self.G, self.ema_decay(self.step))
        self.step += 1
        self.finite.record(self.step, loss_d, loss_g, grad_d, grad_g, fake[-1])
        self._last = (real_pyramid, z)
        self.finite.count(not (d_ok and g_ok), self.step)
        return loss_d.detach(), loss_g.detach()

    def _gradient_norm(self, net: nn.Module, optimizer: torch.optim.Optimizer, name: str) -> torch.Tensor:
        """The gradient norm the divergence check watches (zero under fp16, whose scaler handles overflow)."""
        self.precision.unscale(optimizer, name)
        if not self.precision.checks_gradients:
            return torch.zeros((), device=self.device)
        return gradient_norm(net)

    # ------------------------------------------------------------------ checkpoints

    def _model_metadata(self, role: str) -> dict[str, Any]:
        return model_metadata(self.config, self.registry, role, self.step, self.data.description)

    @property
    def networks(self) -> dict[str, nn.Module]:
        """The parts of a checkpoint that are networks, by the prefix of their tensors."""
        return {"generator": self.G, "generator_ema": self.G_ema, "discriminator": self.D}

    def save(self) -> None:
        """Write a checkpoint of this step (rank 0), unless the state about to be saved has diverged."""
        self._probe()
        self.finite.check(self.checkpoint_step)  # a diverged state never replaces a good checkpoint
        if self.dist.is_main:  # rank 0 writes; the others only keep count
            self.checkpoints.save(self.step, self.best_fid)
        self.checkpoint_step = self.step

    def _probe(self) -> None:
        """Let the divergence check judge the weights about to be saved (their losses on the last batch,
        their images), which no step has measured yet.

        In training mode, as the next step would see them (eval-mode spectral norm, with its stale
        vectors, hides a blow-up); the buffers that forward passes update (spectral norm's vectors)
        are put back afterwards, so the probe changes nothing that is saved or trained.
        """
        if self._last is None:  # nothing trained since the weights were loaded
            return
        real, z = self._last
        buffers = [b for net in (self.G, self.D) for b in net.buffers()]
        kept = [b.clone() for b in buffers]
        try:
            with torch.no_grad(), self.precision.autocast():
                fake, ema = self.G(z), self.G_ema(z)[-1]
            with self.precision.autocast():  # gradient penalties differentiate D with respect to its input
                loss_d = self.loss.discriminator(self.D, real, fake).detach()
                loss_g = self.loss.generator(self.D, real, fake).detach()
        finally:
            if buffers:  # the foreach kernels refuse empty lists
                with torch.no_grad():
                    torch._foreach_copy_(buffers, kept)
        self.finite.probe(self.step, loss_d, loss_g, fake[-1], ema)

    def resume(self, run: str | Path) -> None:
        """Continue from the newest verified checkpoint in ``run``; its config must match ours.

        A run folder that never wrote a checkpoint (killed before the first one) starts at step 0; one
        whose checkpoints are all damaged or gone is refused (:meth:`RunDir.latest_checkpoint`).
        """
        source = RunDir(run)
        source.require_run()
        resumed = self.checkpoints.resume(source, self.config, write=self.dist.is_main)
        if resumed is None:
            self.warn(f"--resume {run}: no complete checkpoint yet; starting from step 0")
        else:
            self.step = self.checkpoint_step = resumed.step
            self.best_fid = resumed.best_fid
        if self.dist.is_main:
            self.run.truncate_metrics(self.step, self.warn)

    # ------------------------------------------------------------------ evaluation and samples

    def evaluate(self) -> dict[str, Any]:
        """Score the EMA generator with ``[eval].metrics``; keep it as ``generator_best`` when its FID is the lowest.

        Every rank generates and extracts features for its share of the images; rank 0 writes.
        """
        ev, model = self.config.eval, self.config.model
        real = subset(self.data.images, ev.n, ev.seed)
        z = latents(len(real), model.latent_dim, ev.seed)[self.dist.span(len(real))]
        mine = list(generate(self.G_ema, z, 64, self.device))
        fake = self.dist.gather(torch.cat(mine).cpu() if mine else torch.empty(0, 0, dtype=torch.uint8))
        weights = inception.resolve_weights(ev.inception_weights or None)
        held = self.split.holdout.images if self.split is not None else None
        ctx = EvalContext(real, fake, self.device, weights, dist=self.dist, holdout=held)
        record = as_record(run_metrics(ev.metrics, self.registry, ctx), ctx)
        fid = next((values["fid"] for values in record["metrics"].values() if "fid" in values), None)
        best = fid is not None and (self.best_fid is None or fid < self.best_fid)
        if best:
            self.best_fid = fid
        if self.dist.is_main:
            self.run.log({"step": self.step, "eval": record})
            if self.tensorboard:
                figures = {f"eval/{m}/{k}": v for m, values in record["metrics"].items() for k, v in values.items()}
                self.tensorboard.scalars(self.step, figures)
            if best:
                metadata = {**self._model_metadata("generator"), "ganforge.fid": fid}
                save_module(self.out / GENERATOR_BEST, self.G_ema, metadata)
        self.dist.barrier()  # the others wait for rank 0's files
        return record

    @torch.no_grad()
    def sample_grid(self) -> Path | None:
        if not self.dist.is_main:
            return None
        n = self.config.train.grid_size
        g = torch.Generator().manual_seed(mix_seed(self.config.seed, 3))
        z = torch.randn(n, self.config.model.latent_dim, generator=g).to(self.device)
        images = to_uint8(self.G_ema(z)[-1])
        path = self.out / SAMPLES / f"step_{self.step:07d}.png"
        caption = f"{self.config.name}, step {self.step}, EMA generator. Data: {self.data.description}"
        save_grid(images, path, caption)
        if self.tensorboard:
            self.tensorboard.image("samples", images, self.step)
        return path

    # ------------------------------------------------------------------ loop

    def fit(self, total_steps: int, evaluate: bool = True) -> None:
        """Train until ``self.step == total_steps`` (a total: resuming at 200 with 300 runs 100 more).

        The final checkpoint is written before the final evaluation, so a killed evaluation loses no
        training. SIGINT/SIGTERM end the current step, write a checkpoint and raise
        :class:`~ganforge.errors.Interrupted`.
        """
        if self._source is None:  # decoding a folder or rendering phantoms can take minutes: say so first
            self.say(f"[bold]{self.config.name}[/]: loading the data ({self.config.data.name}) ...")
        self.say(f"[bold]{self.config.name}[/]: data = {self.data.description}")
        if self.dist.is_main:  # after the data loaded: a start that fails on bad data leaves no run behind
            atomic_write(self.out / CONFIG_FILE, dump_toml(self.config))
        if self.split is not None and self.dist.is_main:
            self._record_holdout(self.split)
        if isinstance(self.gan.connection, Growing):
            start, end = self.growth(self.step), self.growth(max(self.step, total_steps - 1))
            plan = f"growing {start.resolution}px → {end.resolution}px"
        else:
            plan = f"{self.steps_per_epoch} steps per epoch"
        layout = ", channels_last" if self.precision.channels_last else ""
        compiled_ = ", compiled" if self.config.train.compile else ""
        ranks = f" × {self.dist.world} processes" if self.dist.active else ""
        self.say(
            f"device {self.device}{ranks}, {self.precision.mode}{layout}{compiled_}, {plan}, "
            f"step {self.step} → {total_steps}"
        )
        if total_steps < self.step:
            self.warn(f"the run is already at step {self.step}, past the {total_steps} asked for; nothing to train")
        if self.config.train.tensorboard and self.dist.is_main and self.tensorboard is None:
            self.tensorboard = TensorBoard.open(self.out, self.warn)
            if self.tensorboard:
                self.tensorboard.text("config", dump_toml(self.config))
        real_grid = self.out / SAMPLES / "real.png"
        if self.dist.is_main and not real_grid.is_file():  # what the samples are compared with
            real = subset(self.data.images, self.config.train.grid_size, self.config.seed)
            save_grid(real, real_grid, f"{self.config.name}: real images. Data: {self.data.description}")
        self.G.train()
        self.D.train()
        with GracefulStop() as stop:
            try:
                self._loop(total_steps, evaluate, stop)
            except Interrupted as exc:  # a second signal, or one during the final evaluation
                raise Interrupted(exc.signum, self.step, self.checkpoint_step) from exc
            finally:
                if self._source is not None:
                    self._source.close()
                if self.tensorboard is not None:
                    self.tensorboard.close()
                    self.tensorboard = None

    def _record_holdout(self, split: Split) -> None:
        """Write which images are held out; a resumed run must hold out the same ones."""
        path = self.out / HOLDOUT
        if not path.is_file():
            holdout.record(path, split, self.config.data.holdout, self.config.seed)
        elif not holdout.matches_record(path, split):
            raise CheckpointError(f"{path}: this run held out other images than the config now does")

    def _loop(self, total_steps: int, evaluate: bool, stop: GracefulStop) -> None:
        train, ev = self.config.train, self.config.eval
        columns = (
            TextColumn("[bold blue]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[stats]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
        )
        evaluated_at = None
        live = self.console.is_terminal  # elsewhere (SLURM, nohup, CI) a plain line every log_every steps
        with Progress(*columns, console=self.console, disable=not live) as progress:
            task = progress.add_task("training", total=total_steps, completed=self.step, stats="")
            window_start, window_images = time.perf_counter(), 0
            self._pace = (window_start, self.step)
            while self.step < total_steps:
                window_images += self.growth(self.step).batch_size
                loss_d, loss_g = self.train_step()
                last = self.step == total_steps
                if self.step % train.log_every == 0 or last:
                    self.finite.check(self.checkpoint_step)
                    loss_d, loss_g = self.dist.mean(loss_d, loss_g)
                    now = time.perf_counter()
                    speed = window_images / max(now - window_start, 1e-9)
                    window_start, window_images = now, 0
                    self._log_losses(progress, task, float(loss_d), float(loss_g), speed)
                if self.step % train.sample_every == 0:
                    self.finite.check(self.checkpoint_step)
                    self.sample_grid()
                if evaluate and ev.metrics and ev.every and self.step % ev.every == 0 and not last:
                    self.finite.check(self.checkpoint_step)
                    self._evaluate(progress)
                    evaluated_at = self.step
                stopping = self.dist.any(stop.signum is not None)  # every rank stops at the same step
                if self.step % train.checkpoint_every == 0 or last or stopping:
                    self.save()
                progress.update(task, completed=self.step)
                if stopping:
                    raise Interrupted(stop.signum or signal.SIGTERM, self.step, self.checkpoint_step)
            if self.checkpoint_step != self.step:  # resumed at the end, or asked for no more steps
                self.save()
            if self.step % train.sample_every != 0:
                self.sample_grid()
            if evaluate and ev.metrics and evaluated_at != self.step:
                with stop.immediately():
                    self._evaluate(progress, final=True)

    def _log_losses(self, progress: Progress, task: Any, loss_d: float, loss_g: float, speed: float) -> None:
        if not self.dist.is_main:
            return
        record = {"step": self.step, "loss_d": loss_d, "loss_g": loss_g, "images_per_second": round(speed, 2)}
        if self.finite.skipped:
            record["skipped_steps"] = self.finite.skipped
        self.run.log({**record, "time": time.time()})
        if self.tensorboard:
            self.tensorboard.scalars(self.step, {f"train/{k}": v for k, v in record.items() if k != "step"})
        grow = ""
        if isinstance(self.gan.connection, Growing):
            now_at = self.growth(self.step - 1)
            grow = f"{now_at.resolution}px α={now_at.alpha:.2f}  "
        stats = f"{grow}D {loss_d:.3f}  G {loss_g:.3f}  {speed:.1f} img/s"
        progress.update(task, stats=stats)
        if progress.disable:
            total = progress.tasks[0].total or self.step
            self.say(f"step {self.step}/{total:.0f}  {stats}  {self._eta(total)}")

    def _report(self, progress: Progress, record: dict[str, Any]) -> None:
        if not self.dist.is_main:
            return
        figures = "  ".join(f"{k} {v:.4g}" for values in record["metrics"].values() for k, v in values.items())
        self.say(f"step {self.step}: {figures}")

    def _evaluate(self, progress: Progress, final: bool = False) -> None:
        """Evaluate and report; first say so, since evaluation can take as long as many steps."""
        if self.dist.is_main:
            names = ", ".join(ref.name for ref in self.config.eval.metrics)
            self.say(f"step {self.step}: {'final ' if final else ''}evaluation ({names}) ...")
        self._report(progress, self.evaluate())

    def _eta(self, total: float) -> str:
        """Time left, from this process's pace so far (a resumed run's earlier steps do not count)."""
        started, first = self._pace
        done = self.step - first
        if done <= 0:
            return ""
        left = (time.perf_counter() - started) / done * (total - self.step)
        return f"ETA {int(left // 3600)}:{int(left % 3600 // 60):02d}:{int(left % 60):02d}"
