"""The training loop: one D step then one G step per iteration (BMSG-GAN), EMA of G, exact resume.

Randomness is a pure function of (seed, step): the data order of epoch ``e`` comes from a
generator seeded with (seed, e), and torch's global RNG is re-seeded from (seed, step) before
every step (latents, augmentation, the gradient-penalty mix). So resuming from a checkpoint at
step k and training to N gives the same weights as training to N without interruption.
"""

from __future__ import annotations

import copy
import functools
import math
from pathlib import Path
from typing import Any, cast

import torch
from rich.console import Console
from torch import nn
from torch.nn.utils import parametrize

from . import __version__, autotune, inception
from .assembly import GAN, build_gan
from .augmentation import DiscriminatorAugments
from .best import Best
from .checkpoint import save_module
from .checkpointing import Checkpointer
from .collapse import CollapseAlarm
from .config import Config
from .datasource import TrainingData
from .distributed import Distributed
from .divergence import DivergenceCheck, gradient_norm, probe_state
from .errors import GanforgeError
from .evaluation import EvalContext, as_record, run_metrics, subset
from .footprint import fitting_batch
from .holdout import Split
from .images import to_uint8
from .kinds import Growth, ImageDataset
from .memory import budget
from .plugins import plugin_versions
from .precision import Precision
from .progress import progress
from .registry import Registry
from .rundir import GENERATOR_BEST, SAMPLES, RunDir
from .sampling import generate, latents
from .seeds import mix_seed
from .trainlog import TrainLog


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
    """The device ``name`` (``auto``: the config's ``train.device``, then CUDA when there is one)."""
    name = configured if name == "auto" else name
    if name == "cuda" and not torch.cuda.is_available():
        raise GanforgeError("device cuda: no CUDA device is available (use cpu or auto)")
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

    The collaborators each hold one concern: :class:`~ganforge.datasource.TrainingData` the images
    and their batches, :class:`~ganforge.precision.Precision` autocast and scaling,
    :class:`~ganforge.checkpointing.Checkpointer` checkpoints and resume,
    :class:`~ganforge.divergence.DivergenceCheck` blow-ups, :class:`~ganforge.trainlog.TrainLog`
    what the run reports, :class:`~ganforge.best.Best` which evaluation is kept, the connection's
    :class:`~ganforge.kinds.Schedule` each step's resolution and batch. This class holds the
    networks and the loop.
    """

    def __init__(
        self, config: Config, registry: Registry, out: str | Path, device: str = "auto", console: Console | None = None
    ):
        self.config, self.registry, self.out = config, registry, Path(out)
        self.run = RunDir(self.out)
        self.dist = Distributed.from_environment(select_device(device, config.train.device))
        self.device = self.dist.device
        self.log = TrainLog(self.run, console or Console(stderr=True), self.dist.is_main)
        train = config.train
        if train.threads:
            torch.set_num_threads(train.threads)
        torch.manual_seed(config.seed)  # initial weights and spectral-norm vectors
        self.gan: GAN = build_gan(config.model, registry)
        self.schedule = self.gan.connection.schedule(config.model.resolution, train.batch_size)
        self.loss = registry.build("loss", config.loss.name, config.loss.params)
        self.precision = self._precision()
        # The EMA generator keeps the standard layout: its samples equal those of its weights file, bit for bit.
        self.G_ema = copy.deepcopy(self.gan.generator).to(self.device).eval().requires_grad_(False)
        self.G = self.precision.layout(self.gan.generator.to(self.device))
        self.D = self.precision.layout(self.gan.discriminator.to(self.device))
        self.G_run = self.dist.wrap(self.G)
        self.G_run = compiled(self.G_run) if train.compile else self.G_run
        self.D_run = self.dist.wrap(self.D)  # eager: see compiled()
        self.opt_g = registry.build("optimizer", config.optim.name, config.optim.params, parameters=self.G.parameters())
        d_optim = config.optim_d or config.optim
        self.opt_d = registry.build("optimizer", d_optim.name, d_optim.params, parameters=self.D.parameters())
        self.augment = [registry.build("augment", a.name, a.params) for a in config.augment]
        self.d_augment = DiscriminatorAugments(
            registry.build("d_augment", a.name, a.params) for a in config.d_augment
        ).to(self.device)
        if self.dist.active and list(self.d_augment.buffers()):
            raise GanforgeError("d_augment: ada adapts its probability in one process; train it with one process")
        self.regularizers = [registry.build("regularizer", r.name, r.params) for r in config.regularize]
        self.checkpoints = Checkpointer(
            self.run,
            {"generator": self.G, "generator_ema": self.G_ema, "discriminator": self.D},
            {"opt_g": self.opt_g, "opt_d": self.opt_d},
            {"d_augment": self.d_augment},
            self.precision,
            self._model_metadata,
            train.keep_checkpoints,
            lambda message: self.warn(message),  # late-bound: callers may replace self.warn
        )
        self.finite = DivergenceCheck(self.device, train.on_nonfinite)
        self.best = Best.of(config.eval)
        self._warned_best = False
        self.step = 0
        self.checkpoint_step: int | None = None  # step of the newest complete checkpoint on disk
        self._source: TrainingData | None = None  # see the source property
        self._alarm: CollapseAlarm | None = None  # see check_collapse
        self._last: tuple[list[torch.Tensor], torch.Tensor] | None = None  # last step's real pyramid and z

    def warn(self, message: str) -> None:
        self.log.warn(message)

    def _precision(self) -> Precision:
        """The configured precision and layout; ``auto``: measured (:mod:`ganforge.autotune`), on rank 0 for all."""
        train = self.config.train
        if train.precision != "auto":
            return Precision.create(train.precision, self.device, bool(train.channels_last))

        def measured() -> str:
            batch = train.batch_size // self.dist.world
            decision = autotune.decide(self.gan, self.loss, self.config.model, batch, self.device, train.channels_last)
            if not decision.fixed:
                self.log.say(decision.describe())
            return decision.mode.label

        mode = autotune.Mode.parse(self.dist.from_main(measured))
        return Precision.create(mode.precision, self.device, mode.channels_last)

    # ------------------------------------------------------------------ data and schedule

    @property
    def source(self) -> TrainingData:
        """The training images and their batches (loaded on first use: building a dataset can take minutes)."""
        if self._source is None:
            self._source = TrainingData.load(self.config, self.registry, self.device, self._stream_position)
        return self._source

    @property
    def data_loaded(self) -> bool:
        return self._source is not None

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
        """``steps`` wins, then ``epochs``, then the config's steps, then the schedule's own length
        (progressive growing), then the config's epochs. Totals, not increments."""
        train = self.config.train
        if steps is not None:
            return steps
        if epochs is None and train.steps is not None:
            return train.steps
        if epochs is None and (scheduled := self.schedule.total_steps()) is not None:
            return scheduled
        return max(1, math.ceil((epochs if epochs is not None else train.epochs) * self.steps_per_epoch))

    def growth(self, step: int) -> Growth:
        """Resolution, fade-in, batch size and data position of ``step``."""
        return self.schedule.growth(step)

    def _stream_position(self, step: int) -> tuple[int, int]:
        """``(images_seen, batch_size)`` of ``step``: where its batch starts in the data stream."""
        growth = self.growth(step)
        return growth.images_seen, growth.batch_size

    # ------------------------------------------------------------------ one step

    def ema_decay(self, step: int) -> float:
        """The configured decay; with ``ema_warmup``, TensorFlow's (1+t)/(10+t) ramp caps it early on."""
        train = self.config.train
        return min(train.ema_decay, (1 + step) / (10 + step)) if train.ema_warmup else train.ema_decay

    def train_step(self) -> tuple[torch.Tensor, torch.Tensor]:
        """One discriminator update then one generator update on the same latents.

        Within each update the parametrized weights (equalized lr, spectral norm) are computed once for
        all of a network's calls (``parametrize.cached``): D runs on real and on fake images, and for R1,
        in one update, and spectral norm's power iteration runs once per update, as in Miyato et al.'s
        Algorithm 1, not once per call.

        Returns the two losses as 0-dim tensors on the device: reading them is a host sync, which the
        loop does only every ``log_every`` steps.
        """
        torch.manual_seed(mix_seed(self.config.seed, self.step, 2))
        growth = self.growth(self.step)
        self.G.set_growth(growth.resolution, growth.alpha)
        self.D.set_growth(growth.resolution, growth.alpha)
        real = self.source.batch(self.step)
        for augment in self.augment:  # on the global batch, so every rank's slice is what one process would see
            real = augment(real)
        z = torch.randn(real.shape[0], self.config.model.latent_dim, device=self.device)
        real, z = self.dist.shard(real), self.dist.shard(z)
        real_pyramid = self.gan.connection.pyramid(self.precision.images(real), self.config.model.resolutions)
        amp = self.precision

        self.D.requires_grad_(True)
        with amp.autocast(), parametrize.cached():
            fake = self.G_run(z)
            D = self.d_augment.seen_by_losses(self.D_run, real_pyramid)
            loss_d = self.loss.discriminator(D, real_pyramid, [f.detach() for f in fake])
            self.d_augment.feedback(D)
            loss_d = loss_d + self._penalties(self.d_augment.seen_by_losses(self.D_run), real, fake[-1].detach())
        d_ok, grad_d = self._update(loss_d, self.D, self.opt_d, "discriminator")

        self.D.requires_grad_(False)
        with amp.autocast(), parametrize.cached():  # no D gradients: no DDP wrapper
            loss_g = self.loss.generator(self.d_augment.seen_by_losses(self.D), real_pyramid, fake)
        g_ok, grad_g = self._update(loss_g, self.G, self.opt_g, "generator")
        if g_ok:
            update_ema(self.G_ema, self.G, self.ema_decay(self.step))
        self.step += 1
        self.finite.record(self.step, loss_d, loss_g, grad_d, grad_g, fake[-1])
        self._last = (real_pyramid, z)
        self.finite.count(not (d_ok and g_ok), self.step)
        return loss_d.detach(), loss_g.detach()

    def _penalties(self, D, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor | float:
        """The regularizers due at this step (lazy: every ``every`` steps, times ``every``), on finest-scale images."""
        due = [r for r in self.regularizers if self.step % r.every == 0]
        if not due:
            return 0.0
        resolutions = self.config.model.resolutions

        def score(x: torch.Tensor) -> torch.Tensor:
            return D(self.gan.connection.pyramid(self.precision.images(x), resolutions))

        return sum(r.every * r(score, real, fake) for r in due)

    def _update(
        self, loss: torch.Tensor, net: nn.Module, optimizer: torch.optim.Optimizer, name: str
    ) -> tuple[bool, torch.Tensor]:
        """Backward and (unless the divergence check refuses the step) the optimizer step; (applied, grad norm).

        The gradient norm is zero under fp16, whose scaler handles overflow itself.
        """
        optimizer.zero_grad(set_to_none=True)
        self.precision.backward(loss, name)
        self.precision.unscale(optimizer, name)
        grad = gradient_norm(net) if self.precision.checks_gradients else torch.zeros((), device=self.device)
        ok = self.finite.allows(loss, grad)
        self.precision.step(optimizer, name, apply=ok)
        return ok, grad

    # ------------------------------------------------------------------ checkpoints

    def _model_metadata(self, role: str, step: int | None = None) -> dict[str, Any]:
        step = self.step if step is None else step
        return model_metadata(self.config, self.registry, role, step, self.data.description)

    def save(self) -> None:
        """Write a checkpoint of this step (rank 0), unless the state about to be saved has diverged."""
        self._probe()
        self.finite.check(self.checkpoint_step)  # a diverged state never replaces a good checkpoint
        if self.dist.is_main:  # rank 0 writes; the others only keep count
            self.checkpoints.save(self.step, self.best.value)
        self.checkpoint_step = self.step

    def _probe(self) -> None:
        """Let the divergence check judge the weights about to be saved, which no step has measured yet."""
        if self._last is not None:  # None: nothing trained since the weights were loaded
            state = probe_state(self.G, self.G_ema, self.D, self.loss, self.precision, *self._last)
            self.finite.probe(self.step, *state)

    def resume(self, run: str | Path) -> None:
        """Continue from the newest verified checkpoint in ``run``; its config must match ours.

        A run folder that never wrote a checkpoint (killed before the first one) starts at step 0; one
        whose checkpoints are all damaged or gone is refused (:meth:`RunDir.latest_checkpoint`).
        """
        source = RunDir(run)
        source.require_run()
        resumed = self.checkpoints.resume(source, self.config, write=self.dist.is_main)
        if resumed is None:
            self.warn(f"{run}: no complete checkpoint yet; starting from step 0")
        else:
            self.step = self.checkpoint_step = resumed.step
            self.best.value = resumed.best
        if self.dist.is_main:
            self.run.truncate_metrics(self.step, self.warn)

    # ------------------------------------------------------------------ evaluation and samples

    def evaluate(self) -> dict[str, Any]:
        """Score the EMA generator with ``[eval].metrics``; keep it as ``generator_best`` when it is the best
        by ``eval.best``. Every rank generates and extracts features for its share of the images; rank 0 writes.
        """
        ev, model = self.config.eval, self.config.model
        real = subset(self.data.images, ev.n, ev.seed)
        z = latents(len(real), model.latent_dim, ev.seed)[self.dist.span(len(real))]
        batch = self.evaluation_batch
        batches = generate(self.G_ema, z, batch, self.device)
        mine = list(progress(batches, "generating", total=math.ceil(len(z) / batch), show=self.dist.is_main))
        fake = self.dist.gather(torch.cat(mine).cpu() if mine else torch.empty(0, 0, dtype=torch.uint8))
        weights = inception.resolve_weights(ev.inception_weights or None)
        held = self.split.holdout.images if self.split is not None else None
        ctx = EvalContext(real, fake, self.device, weights, batch, dist=self.dist, holdout=held)
        record = as_record(run_metrics(ev.metrics, self.registry, ctx), ctx)
        best = self.best.offer(record)
        if self.best.find(record) is None and not self._warned_best:
            self._warned_best = True
            self.warn(f"eval.best = {ev.best!r}: no evaluated metric reports it, so no generator_best is kept")
        self.log.evaluation(self.step, record)
        if best is not None and self.dist.is_main:
            save_module(
                self.out / GENERATOR_BEST, self.G_ema, {**self._model_metadata("generator"), **self.best.metadata()}
            )
        self.dist.barrier()  # the others wait for rank 0's files
        return record

    @functools.cached_property
    def evaluation_batch(self) -> int:
        """``eval.batch_size``, lowered to what the memory left beside training fits: the evaluation's peak
        is one batch of the generator and of the feature extractor, whatever ``eval.n`` is."""
        limit = budget(None, self.device)
        return fitting_batch(self.config, self.registry, self.config.eval.batch_size, limit, "evaluation")

    def check_collapse(self) -> dict[str, float]:
        """The collapse alarm's figures for the EMA generator now (logged; a warning when they are low)."""
        if self._alarm is None:  # fixed real images and latents, chosen once
            self._alarm = CollapseAlarm(
                self.config.train.collapse, self.data.images, self.config.model.latent_dim, self.config.seed
            )
        figures = self._alarm.measure(self.G_ema, self.device)
        self.log.collapse(self.step, figures)
        if (message := self._alarm.warning(self.step, figures)) is not None:
            self.warn(message)
        return figures

    @torch.no_grad()
    def sample_grid(self) -> Path | None:
        """The EMA generator's grid of this step (the same latents every time), in ``RUN/samples/`` (rank 0)."""
        if not self.dist.is_main:
            return None
        g = torch.Generator().manual_seed(mix_seed(self.config.seed, 3))
        z = torch.randn(self.config.train.grid_size, self.config.model.latent_dim, generator=g).to(self.device)
        path = self.out / SAMPLES / f"step_{self.step:07d}.png"
        caption = f"{self.config.name}, step {self.step}, EMA generator. Data: {self.data.description}"
        self.log.grid(to_uint8(self.G_ema(z)[-1]), path, caption, self.step)
        return path

    # ------------------------------------------------------------------ loop

    def fit(self, total_steps: int, evaluate: bool = True) -> None:
        """Train until ``self.step == total_steps`` (a total: resuming at 200 with 300 runs 100 more).

        The final checkpoint is written before the final evaluation, so a killed evaluation loses no
        training. SIGINT/SIGTERM end the current step, write a checkpoint and raise
        :class:`~ganforge.errors.Interrupted`. When to log, sample, evaluate and checkpoint:
        :class:`~ganforge.loop.Loop`.
        """
        from .loop import Loop

        Loop(self, evaluate).run(total_steps)
