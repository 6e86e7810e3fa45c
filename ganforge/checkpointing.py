"""A training run's checkpoints: writing one with the exported weights files, and resuming from one.

The :class:`~ganforge.training.Trainer` owns the networks, the optimizers and the counters; a
:class:`Checkpointer` turns them into one checkpoint file (which :class:`~ganforge.rundir.RunDir`
writes atomically and verifies on reading) and back, keeps the top-level weights files
(``generator_ema.safetensors``, ...) in step with the newest checkpoint, and refuses to resume
under a config that describes another experiment.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .best import Best
from .checkpoint import load_state, optimizer_tensors, read_header, restore_optimizer
from .config import CollapseConfig, Config, as_recorded, read_toml
from .errors import CheckpointError, ConfigError
from .precision import Precision
from .rundir import (
    CONFIG_FILE,
    DISCRIMINATOR,
    GENERATOR,
    GENERATOR_BEST,
    GENERATOR_EMA,
    STATE_KEY,
    Checkpoint,
    RunDir,
    Warn,
)

# Keys that may differ between a run and its resumption (they say how long/where, not what).
RESUMABLE_CHANGES = {
    "train.steps",
    "train.epochs",
    "train.log_every",
    "train.sample_every",
    "train.checkpoint_every",
    "train.keep_checkpoints",
    "train.on_nonfinite",
    "train.device",
    "train.precision",
    "train.channels_last",
    "train.compile",
    "train.data_workers",
    "train.threads",
    "train.tensorboard",
    *(f"train.collapse.{key}" for key in CollapseConfig.model_fields),  # how it is watched, not what
}
EXPORTS = {"generator": GENERATOR, "generator_ema": GENERATOR_EMA, "discriminator": DISCRIMINATOR}
Metadata = Callable[[str, int], Mapping[str, Any]]  # (role, step) -> what a weights file carries


@dataclass(frozen=True)
class Resumed:
    """What a checkpoint gives back besides the weights and optimizer states it loaded."""

    step: int
    best: float | None  # the best value of ``eval.best`` so far


def _flat(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out = {}
    for key, value in data.items():
        if isinstance(value, Mapping):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def same_experiment(where: str | Path, saved: Mapping[str, Any], config: Config) -> None:
    """Refuse to resume when ``config`` differs from the run's ``saved`` one beyond :data:`RESUMABLE_CHANGES`."""
    theirs, ours = _flat(saved), _flat(config.to_dict())
    changed = sorted(
        k
        for k in theirs.keys() | ours.keys()
        if theirs.get(k) != ours.get(k) and k not in RESUMABLE_CHANGES and not k.startswith("eval.")
    )
    if changed:
        raise CheckpointError(f"cannot resume {where}: the config differs from the run's in {', '.join(changed)}")


def exported_step(path: Path) -> int | None:
    """The step a top-level weights file was exported at (None when it is missing or unreadable)."""
    try:
        return int(read_header(path).metadata["ganforge.step"])
    except (CheckpointError, KeyError, ValueError):
        return None


class Checkpointer:
    """Writes and reads the checkpoints of the run in ``run`` for the given networks and optimizers.

    ``networks``, ``states`` and ``optimizers`` are keyed by the prefix of their tensors in a
    checkpoint (``generator``, ``generator_ema``, ``discriminator``; ``d_augment``; ``opt_g``,
    ``opt_d``); networks are also exported as weights files, ``states`` (training state such as
    ADA's probability) live in checkpoints only. ``metadata`` says what each weights file carries.
    Only the process that writes files (rank 0) calls :meth:`save`.
    """

    def __init__(
        self,
        run: RunDir,
        networks: Mapping[str, nn.Module],
        optimizers: Mapping[str, torch.optim.Optimizer],
        states: Mapping[str, nn.Module],
        precision: Precision,
        metadata: Metadata,
        keep: int,
        warn: Warn,
    ):
        self.run, self.networks, self.optimizers, self.precision = run, networks, optimizers, precision
        self.modules = {**networks, **states}
        self.metadata, self.keep, self.warn = metadata, keep, warn

    def save(self, step: int, best: float | None) -> None:
        """One checkpoint of ``step`` (``best``: the best value of ``eval.best`` so far) as one unit, then
        the top-level weights files from it."""
        tensors = {f"{part}.{k}": v for part, net in self.modules.items() for k, v in net.state_dict().items()}
        structure = {}
        for prefix, optimizer in self.optimizers.items():
            opt_tensors, structure[prefix] = optimizer_tensors(prefix, optimizer)
            tensors.update(opt_tensors)
        state = {"step": step, **structure, "best": best, "grad_scalers": self.precision.state()}
        self.run.write_checkpoint(step, tensors, {**self.metadata("checkpoint", step), STATE_KEY: state}, self.keep)
        self.export({part: net.state_dict() for part, net in self.networks.items()}, step)

    def export(self, parts: Mapping[str, Mapping[str, torch.Tensor]], step: int) -> None:
        """Top-level weights files (``generator_ema.safetensors``, ...) from the given state dicts."""
        for part, state in parts.items():
            role = "discriminator" if part == "discriminator" else "generator"
            self.run.export(EXPORTS[part], state, self.metadata(role, step))

    def resume(self, source: RunDir, config: Config, write: bool) -> Resumed | None:
        """Load the newest verified checkpoint of ``source`` (refused when ``config`` is another experiment).

        None when the run never wrote a checkpoint; a run whose checkpoints are all damaged or gone is
        refused (:meth:`RunDir.latest_checkpoint`). ``write``: this process may bring stale exports level.
        """
        checkpoint = source.latest_checkpoint(self.warn)
        if checkpoint is None:
            same_experiment(source.path, self._saved_config(source), config)
            return None
        same_experiment(checkpoint.path, checkpoint.config(), config)
        self._load(checkpoint)
        # Killed between a checkpoint and its exports: bring the stale ones level (and leave the rest untouched).
        stale = [part for part, name in EXPORTS.items() if exported_step(self.run.path / name) != checkpoint.step]
        if write:
            self.export({part: checkpoint.part(part) for part in stale}, checkpoint.step)
        return Resumed(checkpoint.step, self._best(checkpoint, Best.of(config.eval)))

    def _load(self, checkpoint: Checkpoint) -> None:
        for part, net in self.modules.items():
            load_state(checkpoint.path, net, checkpoint.part(part))
        state = checkpoint.state
        try:
            for prefix, optimizer in self.optimizers.items():
                restore_optimizer(prefix, optimizer, checkpoint.tensors, state[prefix])
        except (KeyError, ValueError, TypeError) as exc:
            raise CheckpointError(f"{checkpoint.path}: optimizer state does not fit ({exc})") from exc
        self.precision.load_state(state.get("grad_scalers", {}))

    def _best(self, checkpoint: Checkpoint, best: Best) -> float | None:
        """The checkpoint's best value, or a better one from an evaluation after it (the final one).

        Checkpoints and files written before ``eval.best`` existed name it ``best_fid`` / ``ganforge.fid``.
        """
        state = checkpoint.state
        best.value = state.get("best", state.get("best_fid"))
        path = self.run.path / GENERATOR_BEST
        if not path.is_file():
            return best.value
        try:
            meta = read_header(path).metadata
            value = float(meta.get("ganforge.best_value") or meta["ganforge.fid"])
            step = int(meta["ganforge.step"])
        except (CheckpointError, KeyError, TypeError, ValueError):
            return best.value
        return value if step <= checkpoint.step and best.improves(value) else best.value

    @staticmethod
    def _saved_config(source: RunDir) -> dict[str, Any]:
        path = source.path / CONFIG_FILE
        try:
            return as_recorded(read_toml(path))
        except ConfigError as exc:
            raise CheckpointError(f"cannot resume {source.path}: cannot read {path.name} ({exc.reason})") from exc
