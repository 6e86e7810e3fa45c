"""The training loop: one D step then one G step per iteration (BMSG-GAN), EMA of G, exact resume.

Randomness is a pure function of (seed, step): the data order of epoch ``e`` comes from a
generator seeded with (seed, e), and torch's global RNG is re-seeded from (seed, step) before
every step (latents, augmentation, the gradient-penalty mix). So resuming from a checkpoint at
step k and training to N gives the same weights as training to N without interruption.
"""

from __future__ import annotations

import copy
import json
import math
import time
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from torch import nn

from . import __version__, inception
from .assembly import GAN, build_gan
from .checkpoint import (
    atomic_write,
    load_module,
    load_tensors,
    optimizer_tensors,
    restore_optimizer,
    save_module,
    save_tensors,
)
from .config import Config, dump_toml
from .errors import CheckpointError, GanforgeError
from .evaluation import EvalContext, as_record, run_metrics, subset
from .images import save_grid, to_float, to_uint8
from .kinds import Growing, Growth, ImageDataset
from .plugins import plugin_versions
from .registry import Registry
from .sampling import generate, latents

CONFIG_FILE = "config.toml"
GENERATOR, GENERATOR_EMA, DISCRIMINATOR = (
    "generator.safetensors",
    "generator_ema.safetensors",
    "discriminator.safetensors",
)
GENERATOR_BEST = "generator_best.safetensors"  # the EMA generator with the lowest FID so far
TRAIN_STATE = "train_state.safetensors"
METRICS = "metrics.jsonl"

# Keys that may differ between a run and its resumption (they say how long/where, not what).
RESUMABLE_CHANGES = {
    "train.steps",
    "train.epochs",
    "train.log_every",
    "train.sample_every",
    "train.checkpoint_every",
    "train.device",
}


def _mix(*numbers: int) -> int:
    """A 63-bit seed from integers (splitmix-style), so (seed, step) pairs never collide in practice."""
    x = 0x9E3779B97F4A7C15
    for n in numbers:
        x = (x ^ (n & 0xFFFFFFFFFFFFFFFF)) * 0xBF58476D1CE4E5B9 & 0xFFFFFFFFFFFFFFFF
        x ^= x >> 31
    return x & 0x7FFFFFFFFFFFFFFF


def select_device(name: str) -> torch.device:
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
    """ema ← decay·ema + (1 − decay)·model for parameters; buffers (e.g. spectral-norm vectors) are copied."""
    for e, p in zip(ema.parameters(), model.parameters()):
        e.lerp_(p, 1.0 - decay)
    for e, b in zip(ema.buffers(), model.buffers()):
        e.copy_(b)


def _flat(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


class Trainer:
    """Builds everything a run needs from a validated config and trains it into ``out``."""

    def __init__(
        self, config: Config, registry: Registry, out: str | Path, device: str = "auto", console: Console | None = None
    ):
        self.config, self.registry, self.out = config, registry, Path(out)
        self.device = select_device(device if device != "auto" else config.train.device)
        self.console = console or Console(stderr=True)
        model = config.model
        torch.manual_seed(config.seed)  # initial weights and spectral-norm vectors
        self.gan: GAN = build_gan(model, registry)
        self.G, self.D = self.gan.generator.to(self.device), self.gan.discriminator.to(self.device)
        self.G_ema = copy.deepcopy(self.G).eval().requires_grad_(False)
        self.loss = registry.build("loss", config.loss.name, config.loss.params)
        self.opt_g = registry.build("optimizer", config.optim.name, config.optim.params, parameters=self.G.parameters())
        d_optim = config.optim_d or config.optim
        self.opt_d = registry.build("optimizer", d_optim.name, d_optim.params, parameters=self.D.parameters())
        self.augment = [registry.build("augment", a.name, a.params) for a in config.augment]
        self.step = 0
        self.best_fid: float | None = None
        self._data: ImageDataset | None = None
        self._order: tuple[int, torch.Tensor] | None = None

    # ------------------------------------------------------------------ data

    @property
    def data(self) -> ImageDataset:
        if self._data is None:
            ref, model = self.config.data, self.config.model
            self._data = self.registry.build(
                "dataset", ref.name, ref.params, resolution=model.resolution, image_channels=model.image_channels
            )
            if len(self._data.images) < self.config.train.batch_size:
                raise GanforgeError(
                    f"data: {len(self._data.images)} images is fewer than train.batch_size = "
                    f"{self.config.train.batch_size}"
                )
            self._images = self._data.images.to(self.device)
        return self._data

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

    def _batch(self, size: int, seen: int) -> torch.Tensor:
        """Images ``seen … seen + size`` of the data stream: epoch after epoch, each in its own seeded order."""
        n = len(self.data.images)
        positions = torch.arange(seen, seen + size)
        index = torch.empty(size, dtype=torch.long)
        for epoch in positions.div(n, rounding_mode="floor").unique().tolist():
            if self._order is None or self._order[0] != epoch:
                g = torch.Generator().manual_seed(_mix(self.config.seed, epoch, 1))
                self._order = (epoch, torch.randperm(n, generator=g))
            mask = positions // n == epoch
            index[mask] = self._order[1][positions[mask] % n]
        return to_float(self._images[index.to(self.device)])

    # ------------------------------------------------------------------ one step

    def ema_decay(self, step: int) -> float:
        """The configured decay; with ``ema_warmup``, TensorFlow's (1+t)/(10+t) ramp caps it early on."""
        train = self.config.train
        return min(train.ema_decay, (1 + step) / (10 + step)) if train.ema_warmup else train.ema_decay

    def train_step(self) -> tuple[float, float]:
        """One discriminator update then one generator update on the same latents."""
        torch.manual_seed(_mix(self.config.seed, self.step, 2))
        growth = self.growth(self.step)
        for target in (self.gan.connection, *self.G.modules(), *self.D.modules()):
            if hasattr(target, "set_growth"):  # a growing connection and its modules
                target.set_growth(growth.resolution, growth.alpha)
        real = self._batch(growth.batch_size, growth.images_seen)
        for augment in self.augment:
            real = augment(real)
        real_pyramid = self.gan.connection.pyramid(real, self.config.model.resolutions)
        z = torch.randn(real.shape[0], self.config.model.latent_dim, device=self.device)

        fake = self.G(z)
        self.D.requires_grad_(True)
        loss_d = self.loss.discriminator(self.D, real_pyramid, [f.detach() for f in fake])
        self.opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        self.opt_d.step()

        self.D.requires_grad_(False)
        loss_g = self.loss.generator(self.D, real_pyramid, fake)
        self.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        self.opt_g.step()
        update_ema(self.G_ema, self.G, self.ema_decay(self.step))
        self.step += 1
        return loss_d.item(), loss_g.item()

    # ------------------------------------------------------------------ files

    def save(self) -> None:
        """Weights, EMA, optimizer state and the resolved config; each file written atomically."""
        self.out.mkdir(parents=True, exist_ok=True)
        atomic_write(self.out / CONFIG_FILE, dump_toml(self.config))
        data = self.data.description
        for name, module, role in (
            (GENERATOR, self.G, "generator"),
            (GENERATOR_EMA, self.G_ema, "generator"),
            (DISCRIMINATOR, self.D, "discriminator"),
        ):
            save_module(self.out / name, module, model_metadata(self.config, self.registry, role, self.step, data))
        g_tensors, g_struct = optimizer_tensors("opt_g", self.opt_g)
        d_tensors, d_struct = optimizer_tensors("opt_d", self.opt_d)
        state = {
            "step": self.step,
            "opt_g": g_struct,
            "opt_d": d_struct,
            "config": self.config.to_dict(),
            "best_fid": self.best_fid,
        }
        save_tensors(self.out / TRAIN_STATE, {**g_tensors, **d_tensors}, {"ganforge.train_state": state})

    def resume(self, run: str | Path) -> None:
        """Load weights, EMA, optimizer state and step from ``run``; its config must match ours."""
        run = Path(run)
        if not (run / TRAIN_STATE).is_file():
            raise CheckpointError(f"--resume {run}: no {TRAIN_STATE} there (is it a ganforge run directory?)")
        tensors, meta = load_tensors(run / TRAIN_STATE)
        state = json.loads(meta["ganforge.train_state"])
        saved, ours = _flat(state["config"]), _flat(self.config.to_dict())
        changed = sorted(
            k
            for k in saved.keys() | ours.keys()
            if saved.get(k) != ours.get(k) and k not in RESUMABLE_CHANGES and not k.startswith("eval.")
        )
        if changed:
            raise CheckpointError(f"--resume {run}: the config differs from the run's in {', '.join(changed)}")
        load_module(run / GENERATOR, self.G)
        load_module(run / GENERATOR_EMA, self.G_ema)
        load_module(run / DISCRIMINATOR, self.D)
        restore_optimizer("opt_g", self.opt_g, tensors, state["opt_g"])
        restore_optimizer("opt_d", self.opt_d, tensors, state["opt_d"])
        self.step = state["step"]
        self.best_fid = state.get("best_fid")
        self._truncate_metrics()

    def _truncate_metrics(self) -> None:
        """Drop log lines written after the checkpoint we resume from (they will be written again)."""
        path = self.out / METRICS
        if path.is_file():
            lines = [ln for ln in path.read_text().splitlines() if ln and json.loads(ln).get("step", 0) <= self.step]
            atomic_write(path, "".join(f"{ln}\n" for ln in lines))

    def log(self, record: dict[str, Any]) -> None:
        with (self.out / METRICS).open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")

    def evaluate(self) -> dict[str, Any]:
        """Score the EMA generator with ``[eval].metrics``; keep it as ``generator_best`` when its FID is the lowest."""
        ev, model = self.config.eval, self.config.model
        real = subset(self.data.images, ev.n, ev.seed)
        fake = torch.cat(list(generate(self.G_ema, latents(len(real), model.latent_dim, ev.seed), 64, self.device)))
        ctx = EvalContext(real, fake, self.device, inception.resolve_weights(ev.inception_weights or None))
        record = as_record(run_metrics(ev.metrics, self.registry, ctx), ctx)
        self.log({"step": self.step, "eval": record})
        fid = next((values["fid"] for values in record["metrics"].values() if "fid" in values), None)
        if fid is not None and (self.best_fid is None or fid < self.best_fid):
            self.best_fid = fid
            meta = model_metadata(self.config, self.registry, "generator", self.step, self.data.description)
            save_module(self.out / GENERATOR_BEST, self.G_ema, {**meta, "ganforge.fid": fid})
        return record

    @torch.no_grad()
    def sample_grid(self) -> Path:
        n = self.config.train.grid_size
        g = torch.Generator().manual_seed(_mix(self.config.seed, 3))
        z = torch.randn(n, self.config.model.latent_dim, generator=g).to(self.device)
        images = to_uint8(self.G_ema(z)[-1])
        path = self.out / "samples" / f"step_{self.step:07d}.png"
        caption = f"{self.config.name}, step {self.step}, EMA generator. Data: {self.data.description}"
        save_grid(images, path, caption)
        return path

    # ------------------------------------------------------------------ loop

    def fit(self, total_steps: int) -> None:
        """Train until ``self.step == total_steps`` (a total: resuming at 200 with 300 runs 100 more)."""
        train = self.config.train
        self.out.mkdir(parents=True, exist_ok=True)
        atomic_write(self.out / CONFIG_FILE, dump_toml(self.config))
        self.console.print(f"[bold]{self.config.name}[/]: data = {self.data.description}")
        if isinstance(self.gan.connection, Growing):
            start, end = self.growth(self.step), self.growth(max(self.step, total_steps - 1))
            plan = f"growing {start.resolution}px → {end.resolution}px"
        else:
            plan = f"{self.steps_per_epoch} steps per epoch"
        self.console.print(f"device {self.device}, {plan}, step {self.step} → {total_steps}")
        self.G.train()
        self.D.train()
        columns = (
            TextColumn("[bold blue]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[stats]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
        )
        with Progress(*columns, console=self.console) as progress:
            task = progress.add_task("training", total=total_steps, completed=self.step, stats="")
            window_start, window_images = time.perf_counter(), 0
            while self.step < total_steps:
                window_images += self.growth(self.step).batch_size
                loss_d, loss_g = self.train_step()
                if self.step % train.log_every == 0 or self.step == total_steps:
                    now = time.perf_counter()
                    speed = window_images / max(now - window_start, 1e-9)
                    window_start, window_images = now, 0
                    self.log(
                        {
                            "step": self.step,
                            "loss_d": loss_d,
                            "loss_g": loss_g,
                            "images_per_second": round(speed, 2),
                            "time": time.time(),
                        }
                    )
                    now_at = self.growth(self.step - 1)
                    grow = (
                        f"{now_at.resolution}px α={now_at.alpha:.2f}  "
                        if isinstance(self.gan.connection, Growing)
                        else ""
                    )
                    progress.update(task, stats=f"{grow}D {loss_d:.3f}  G {loss_g:.3f}  {speed:.1f} img/s")
                if self.step % train.sample_every == 0:
                    self.sample_grid()
                if self.config.eval.metrics and self.config.eval.every and self.step % self.config.eval.every == 0:
                    self._report(progress, task, self.evaluate())
                if self.step % train.checkpoint_every == 0:
                    self.save()
                progress.update(task, completed=self.step)
            evaluated = self.config.eval.every and self.step % self.config.eval.every == 0
            if self.config.eval.metrics and not evaluated:
                self._report(progress, task, self.evaluate())
        self.save()
        self.sample_grid()

    def _report(self, progress: Progress, task: Any, record: dict[str, Any]) -> None:
        figures = "  ".join(f"{k} {v:.4g}" for values in record["metrics"].values() for k, v in values.items())
        progress.console.print(f"step {self.step}: {figures}")
