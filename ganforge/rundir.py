"""The run directory: its layout, checkpoints as single verified units, and the metrics log.

::

    RUN/config.toml                              the resolved config (written when training starts)
    RUN/checkpoints/step_0001234.safetensors     one file per checkpoint: G, G_ema, D, both optimizer
                                                 states, step, best figure, config; checksummed;
                                                 the last K kept
    RUN/generator.safetensors                    the latest checkpoint's networks, for sampling:
    RUN/generator_ema.safetensors                refreshed after every checkpoint, never read by
    RUN/discriminator.safetensors                resuming
    RUN/generator_best.safetensors               the best EMA generator by eval.best (lowest FID)
    RUN/metrics.jsonl, RUN/samples/step_*.png

A checkpoint is one file written to a temporary name, fsynced and renamed, so a reader sees the old
complete checkpoint or the new complete one and never a mixture, whenever the writer is killed.
Resuming takes the newest checkpoint whose checksum and step agree, and falls back to the one
before (with a warning naming what was wrong) otherwise. When none verifies, or the checkpoints are
gone although the run exported weights, resuming is refused and nothing is touched: under a
cluster's requeue loop a silent restart from step 0 would throw the run away.

One process at a time trains in a folder: :class:`RunLock` holds an OS lock (``flock``) on
``RUN/.lock`` for the life of the process, and a second one is refused with the holder's PID.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from . import jsontext
from .checkpoint import atomic_write, load_tensors, remove_temporaries, save_tensors
from .config import as_recorded
from .errors import CheckpointError, GanforgeError, ResumeRefused, RunExists

CONFIG_FILE = "config.toml"
GENERATOR, GENERATOR_EMA, DISCRIMINATOR = (
    "generator.safetensors",
    "generator_ema.safetensors",
    "discriminator.safetensors",
)
GENERATOR_BEST = "generator_best.safetensors"
METRICS = "metrics.jsonl"
CHECKPOINTS = "checkpoints"
SAMPLES = "samples"
HOLDOUT = "holdout.safetensors"  # which images data.holdout reserved (ganforge.holdout)
AUDIT = "audit"  # what `ganforge audit` writes
STATE_KEY = "ganforge.train_state"
LOCK = ".lock"  # flock-ed by the process training in the folder; holds its PID (never part of the run)
_STEP_FILE = re.compile(r"^step_(\d+)\.safetensors$")
ARTIFACTS = (
    CONFIG_FILE,
    GENERATOR,
    GENERATOR_EMA,
    DISCRIMINATOR,
    GENERATOR_BEST,
    METRICS,
    CHECKPOINTS,
    SAMPLES,
    HOLDOUT,
    AUDIT,
)

Warn = Callable[[str], None]

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; one process per folder is then up to the user
    fcntl = None  # type: ignore[assignment]


class RunLock:
    """An exclusive OS lock on ``FOLDER/.lock`` held until :meth:`release` or the process ends (even by SIGKILL).

    The kernel drops a ``flock`` when its holder dies, so a killed run never leaves a stale lock behind.
    """

    def __init__(self, folder: str | Path, what: str = "run directory", warn: Warn | None = None):
        self.folder, self.what, self.warn = Path(folder), what, warn
        self._fd: int | None = None

    @property
    def path(self) -> Path:
        return self.folder / LOCK

    def acquire(self) -> RunLock:
        """Take the lock, or raise :class:`GanforgeError` naming the process that holds it."""
        if fcntl is None or self._fd is not None:
            return self
        if self.folder.exists() and not self.folder.is_dir():
            raise GanforgeError(f"{self.what} {self.folder}: exists and is not a folder")
        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):  # e.g. ENOLCK on some NFS mounts
                if self.warn:
                    self.warn(f"{self.path}: cannot be locked ({exc.strerror}); make sure no other process uses it")
                return self
            pid = holder_pid(self.path)
            who = f"PID {pid}" if pid else "another process"
            raise GanforgeError(
                f"{self.what} {self.folder}: {who} is already running there; wait for it to end or stop it "
                "(one process per run directory)"
            ) from exc
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the last descriptor drops the flock
            self._fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def holder_pid(lock: Path) -> int | None:
    """The PID written in a lock file (None when unreadable)."""
    try:
        return int(lock.read_text(encoding="ascii").strip() or "0") or None
    except (OSError, ValueError):
        return None


def lock_holder(folder: str | Path) -> int | None:
    """PID holding ``folder``'s lock (0 when its PID is unknown), or None when the lock is free."""
    path = Path(folder) / LOCK
    if fcntl is None or not path.is_file():
        return None
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return holder_pid(path) or 0
    finally:
        os.close(fd)
    return None


@dataclass
class Checkpoint:
    """A verified checkpoint: its tensors (prefixed by part) and its JSON train state."""

    path: Path
    step: int
    tensors: dict[str, torch.Tensor]
    state: dict[str, Any]
    metadata: dict[str, str]

    def config(self) -> dict[str, Any]:
        """The resolved config the run was trained with."""
        try:
            config = jsontext.loads(self.metadata.get("ganforge.config", "{}"))
        except ValueError as exc:
            raise CheckpointError(f"{self.path}: metadata 'ganforge.config' is not valid JSON") from exc
        return as_recorded(config) if isinstance(config, dict) else {}

    def part(self, prefix: str) -> dict[str, torch.Tensor]:
        """The tensors of one part (``generator``, ``opt_d``, ...) without the prefix."""
        head = f"{prefix}."
        return {k[len(head) :]: v for k, v in self.tensors.items() if k.startswith(head)}


class RunDir:
    """One training run's folder."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.checkpoints = self.path / CHECKPOINTS

    def is_run(self) -> bool:
        """Does the folder already hold (part of) a ganforge run?"""
        return any((self.path / name).exists() for name in (CONFIG_FILE, CHECKPOINTS, METRICS))

    def require_run(self) -> None:
        if not self.is_run():
            raise CheckpointError(f"{self.path}: not a ganforge run directory (no {CONFIG_FILE} or checkpoints/)")

    def prepare(self, *, resume: bool, overwrite: bool, warn: Warn) -> None:
        """Claim the folder for training: refuse to write over a run by accident; clean a killed run's debris."""
        if self.path.exists() and not self.path.is_dir():
            raise GanforgeError(f"{self.path}: exists and is not a folder")
        if self.is_run() and not resume:
            if not overwrite:
                raise RunExists(self.path)
            self.clear()
        self.path.mkdir(parents=True, exist_ok=True)
        removed = [
            p for folder in (self.path, self.checkpoints, self.path / SAMPLES) for p in remove_temporaries(folder)
        ]
        if removed:
            warn(f"removed {len(removed)} temporary file(s) an interrupted run left in {self.path}")

    def clear(self) -> None:
        """Delete ganforge's own files (and nothing else) from the folder."""
        for name in ARTIFACTS:
            target = self.path / name
            if target.is_dir():
                shutil.rmtree(target)
            else:
                target.unlink(missing_ok=True)

    # ------------------------------------------------------------------ checkpoints

    def checkpoint_path(self, step: int) -> Path:
        return self.checkpoints / f"step_{step:07d}.safetensors"

    def checkpoint_steps(self) -> list[int]:
        """Steps of the checkpoint files present, newest first."""
        if not self.checkpoints.is_dir():
            return []
        found = (_STEP_FILE.match(p.name) for p in self.checkpoints.iterdir())
        return sorted((int(m.group(1)) for m in found if m), reverse=True)

    def write_checkpoint(
        self, step: int, tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, Any], keep: int
    ) -> Path:
        """Write one checkpoint atomically, then delete all but the newest ``keep``."""
        path = self.checkpoint_path(step)
        save_tensors(path, tensors, metadata)
        for old in self.checkpoint_steps()[keep:]:
            self.checkpoint_path(old).unlink(missing_ok=True)
        return path

    def read_checkpoint(self, step: int) -> Checkpoint:
        """One checkpoint, verified: readable, checksum present and right, step as its name says."""
        path = self.checkpoint_path(step)
        tensors, meta = load_tensors(path)
        if "ganforge.checksum" not in meta:
            raise CheckpointError(f"{path}: no checksum in its metadata")
        if STATE_KEY not in meta:
            raise CheckpointError(f"{path}: no '{STATE_KEY}' in its metadata")
        try:
            state = jsontext.loads(meta[STATE_KEY])
        except ValueError as exc:
            raise CheckpointError(f"{path}: metadata '{STATE_KEY}' is not valid JSON") from exc
        if not isinstance(state, dict) or state.get("step") != step:
            raise CheckpointError(f"{path}: its train state is for step {state.get('step')}, not {step}")
        return Checkpoint(path, step, tensors, state, meta)

    def latest_checkpoint(self, warn: Warn) -> Checkpoint | None:
        """The newest checkpoint that verifies; None when the run never wrote one (killed before it).

        Damaged checkpoints newer than the one returned are renamed ``*.bad`` with a warning. When none
        verifies, or none is left although the run exported weights (``checkpoints/`` deleted), a
        :class:`CheckpointError` names what is wrong and no file is renamed or changed.
        """
        damaged: list[tuple[Path, CheckpointError]] = []
        for step in self.checkpoint_steps():
            try:
                checkpoint = self.read_checkpoint(step)
            except CheckpointError as exc:
                damaged.append((self.checkpoint_path(step), exc))
                continue
            for path, reason in damaged:
                path.replace(path.with_suffix(".bad"))
                warn(f"skipping a damaged checkpoint ({reason}); kept as {path.with_suffix('.bad').name}")
            return checkpoint
        if damaged:
            reasons = "; ".join(str(exc) for _, exc in damaged)
            raise ResumeRefused(self.path, f"no checkpoint verifies ({reasons})", self.checkpoints)
        trace = self._trained_before()
        if trace:
            raise ResumeRefused(self.path, f"no checkpoint in {self.checkpoints}, but {trace}", self.checkpoints)
        return None

    def _trained_before(self) -> str:
        """What shows that the run had written a checkpoint once ('' when nothing does)."""
        bad = sorted(self.checkpoints.glob("*.bad")) if self.checkpoints.is_dir() else []
        if bad:
            return f"{bad[-1].name} was set aside as damaged earlier"
        exported = [name for name in (GENERATOR, GENERATOR_EMA, DISCRIMINATOR) if (self.path / name).is_file()]
        if exported:
            return f"the run exported {exported[0]}, which is written after a checkpoint (were checkpoints deleted?)"
        return ""

    def export(self, name: str, tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, Any]) -> None:
        """A top-level weights file (what users sample from)."""
        save_tensors(self.path / name, tensors, metadata)

    # ------------------------------------------------------------------ metrics log

    def log(self, record: Mapping[str, Any]) -> None:
        with (self.path / METRICS).open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")

    def read_metrics(self, warn: Warn | None = None) -> list[dict[str, Any]]:
        """Every record of ``metrics.jsonl``; lines that do not parse (a torn append) are dropped."""
        path = self.path / METRICS
        if not path.is_file():
            return []
        records, torn = [], []
        for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            try:
                record = jsontext.loads(line)
            except ValueError:
                record = None
            if isinstance(record, dict) and isinstance(record.get("step"), int):
                records.append(record)
            elif line.strip():
                torn.append(number)
        if torn and warn is not None:
            warn(f"{path}: dropped {len(torn)} unreadable line(s) ({', '.join(map(str, torn[:5]))}), e.g. a torn write")
        return records

    def truncate_metrics(self, step: int, warn: Warn) -> None:
        """Keep the records up to ``step`` (those after it will be written again by the resumed run)."""
        path = self.path / METRICS
        if path.is_file():
            kept = [r for r in self.read_metrics(warn) if r["step"] <= step]
            atomic_write(path, "".join(json.dumps(r) + "\n" for r in kept))
