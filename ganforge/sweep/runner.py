"""Running a sweep: each row :func:`ganforge.api.train` in a process of its own (:mod:`.row`), in ``OUT/<row>/``.

What is done survives any stop: ``OUT/sweep.json`` records every row that finished (with the
overrides and steps it finished with) and is rewritten atomically after each one, so running the
same command again skips finished rows and resumes interrupted ones from their checkpoints. A
row that fails (a bad override, a diverged run) is reported by name with its one-line error while
the others run. Row processes run in their own session: a signal reaches the sweep, which passes
it on once to every running row (they checkpoint and stop) and then stops. A row also stops (with a
checkpoint) when its sweep ends any other way, SIGKILL included (:func:`ganforge.interrupts.stop_with_parent`),
and a row whose directory is still held by a previous sweep's process waits for it to end, so a
rerun never trains one row twice at once. One sweep process at a time runs in a sweep directory.
"""

from __future__ import annotations

import json
import os
import queue
import shlex
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

from .. import jsontext
from ..checkpoint import atomic_write
from ..errors import Interrupted
from ..interrupts import PARENT_ENV, GracefulStop
from ..rundir import RunDir, RunLock, lock_holder
from .row import RowSettings
from .spec import Row, Sweep

STATE_FILE = "sweep.json"
LOGS = "logs"


@dataclass
class RowRun:
    """One row's place in this invocation of the sweep."""

    row: Row
    directory: Path
    state: str = "queued"  # queued → running → done | failed | interrupted; or skipped (finished before)
    message: str = ""
    started: float | None = None
    ended: float | None = None
    process: subprocess.Popen | None = field(default=None, repr=False)

    def step(self) -> int | None:
        records = RunDir(self.directory).read_metrics()
        return records[-1]["step"] if records else None

    def elapsed(self) -> str:
        if self.started is None:
            return ""
        seconds = int((self.ended or time.monotonic()) - self.started)
        return f"{seconds // 60}:{seconds % 60:02d}"


def machine_slots(jobs: int) -> tuple[list[dict[str, str]], str]:
    """The environment of each parallel row (one per GPU, or CPU cores shared out) and a note on the cap."""
    import torch

    gpus = torch.cuda.device_count()
    if gpus:
        slots = min(jobs, gpus)
        return [{"CUDA_VISIBLE_DEVICES": str(i)} for i in range(slots)], f"{gpus} GPU(s)"
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    slots = min(jobs, cores)
    threads = str(max(1, cores // slots))
    return [{"OMP_NUM_THREADS": threads, "CUDA_VISIBLE_DEVICES": ""} for _ in range(slots)], f"{cores} CPU core(s)"


class SweepRunner:
    def __init__(
        self,
        sweep: Sweep,
        out: Path,
        *,
        steps: int | None = None,
        sets: list[str] | None = None,
        jobs: int = 1,
        console: Console | None = None,
    ):
        self.sweep, self.out, self.steps, self.sets = sweep, Path(out), steps, list(sets or [])
        self.console = console or Console(stderr=True)
        self.slots, self.capacity = machine_slots(max(1, jobs))
        if jobs > len(self.slots):
            self._warn(f"jobs = {jobs}: this machine has {self.capacity}; running {len(self.slots)} row(s) at once")
        self._lock = threading.Lock()
        self._stopping = False

    def _warn(self, message: str) -> None:
        self.console.print(f"[yellow]warning[/]: {message}")

    # ------------------------------------------------------------------ state on disk

    def state(self) -> dict[str, Any]:
        path = self.out / STATE_FILE
        try:
            data = jsontext.loads(path.read_text(encoding="utf-8"))
        except (FileNotFoundError, ValueError):
            return {"rows": {}}
        return data if isinstance(data.get("rows"), dict) else {"rows": {}}

    def _settings(self, row: Row) -> dict[str, Any]:
        return {"overrides": [*row.overrides, *self.sets], "steps": self.steps}

    def _record(self, run: RowRun) -> None:
        with self._lock:
            state = self.state()
            state["sweep"] = str(self.sweep.path.resolve())
            state["base"] = str(self.sweep.base)
            state["rows"][run.row.name] = {
                **self._settings(run.row),
                "paper": run.row.paper,
                "state": run.state,
                "message": run.message,
            }
            atomic_write(self.out / STATE_FILE, json.dumps(state, indent=1))

    def finished(self, row: Row) -> bool:
        """Finished before with the same overrides and steps (and its run directory still there)."""
        saved = self.state()["rows"].get(row.name, {})
        same = {k: saved.get(k) for k in ("overrides", "steps")} == self._settings(row)
        return saved.get("state") == "done" and same and RunDir(self.out / row.name).is_run()

    # ------------------------------------------------------------------ one row

    def settings(self, run: RowRun) -> RowSettings:
        """The row's training: resumed when its folder holds a run, else started afresh (overwriting)."""
        resume = RunDir(run.directory).is_run()
        overrides = [*run.row.overrides, *self.sets]
        return RowSettings(str(self.sweep.base), str(run.directory), overrides, self.steps, resume)

    def command(self, run: RowRun) -> list[str]:
        """The row's own process: :mod:`ganforge.sweep.row`, which calls :func:`ganforge.api.train`."""
        return [sys.executable, "-m", "ganforge.sweep.row", self.settings(run).to_json()]

    def _wait_for_previous(self, run: RowRun) -> bool:
        """Wait while another process (a killed sweep's row, finishing its checkpoint) holds the row's folder."""
        announced = False
        while (pid := lock_holder(run.directory)) is not None:
            if self._stopping:
                return False
            if not announced:
                run.message = f"waiting for PID {pid or '?'}, which still runs in {run.directory}"
                self._announce(run)
                announced = True
            time.sleep(0.2)
        run.message = ""
        return True

    def _run_row(self, run: RowRun, slots: queue.Queue) -> None:
        if self._stopping:
            return
        env = slots.get()
        try:
            if not self._wait_for_previous(run):
                return
            log = self.out / LOGS / f"{run.row.name}.log"
            log.parent.mkdir(parents=True, exist_ok=True)
            command = self.command(run)
            with log.open("a", encoding="utf-8") as handle:
                handle.write(f"$ {by_hand(self.settings(run))}   # this row, run by hand\n")
                handle.flush()
                run.state, run.started = "running", time.monotonic()
                self._announce(run)
                run.process = subprocess.Popen(
                    command,
                    stdout=handle,
                    stderr=subprocess.STDOUT,
                    env={**os.environ, **env, "COLUMNS": "120", PARENT_ENV: str(os.getpid())},
                    start_new_session=True,  # a Ctrl-C reaches the sweep, which passes it on once
                )
                code = run.process.wait()
            run.ended = time.monotonic()
            if code == 0:
                run.state = "done"
            elif code >= 128 and self._stopping:
                run.state, run.message = "interrupted", "stopped with the sweep; it resumes next time"
            elif code < 0:  # killed by a signal it could not handle
                run.state, run.message = "failed", killed_by(-code)
            else:
                run.state, run.message = "failed", _last_error(log) or f"exit code {code}"
            self._record(run)
            self._announce(run)
        finally:
            slots.put(env)

    # ------------------------------------------------------------------ all rows

    def run(self, rows: list[Row]) -> list[RowRun]:
        """Run ``rows`` (finished ones are skipped); raises Interrupted after a signal, once rows have stopped."""
        with RunLock(self.out, "sweep directory", self._warn):
            return self._run(rows)

    def _run(self, rows: list[Row]) -> list[RowRun]:
        runs = [RowRun(row, self.out / row.name) for row in rows]
        for run in runs:
            if self.finished(run.row):
                run.state, run.message = "skipped", "finished before"
        todo = [run for run in runs if run.state == "queued"]
        for run in todo:  # listed in the report from now on, in the sweep file's order
            self._record(run)
        self.console.print(
            f"sweep {self.sweep.path.name}: {len(rows)} row(s), {len(todo)} to run, "
            f"{len(self.slots)} at a time ({self.capacity}); logs in {self.out / LOGS}"
        )
        slots: queue.Queue = queue.Queue()
        for env in self.slots:
            slots.put(env)
        live = Live(self._table(runs), console=self.console, refresh_per_second=2) if self.console.is_terminal else None
        with GracefulStop() as stop, ThreadPoolExecutor(len(self.slots)) as pool:
            futures = [pool.submit(self._run_row, run, slots) for run in todo]
            if live:
                live.start()
            try:
                while not all(f.done() for f in futures):
                    if stop.signum is not None and not self._stopping:
                        self._stopping = True
                        for run in runs:
                            if run.process is not None and run.process.poll() is None:
                                run.process.send_signal(stop.signum)
                    if live:
                        live.update(self._table(runs))
                    time.sleep(0.5)
            finally:
                if live:
                    live.update(self._table(runs))
                    live.stop()
            for future in futures:
                future.result()
            if stop.signum is not None:
                raise Interrupted(stop.signum)
        return runs

    def _announce(self, run: RowRun) -> None:
        """A plain line per change of state, when no live table shows it (logs, CI, nohup)."""
        if self.console.is_terminal:
            return
        detail = f" ({run.message})" if run.message else ""
        self.console.print(f"{run.row.name}: {run.state}{detail} {run.elapsed()}".rstrip())

    def _table(self, runs: list[RowRun]) -> Table:
        table = Table(title=f"sweep {self.sweep.path.name} → {self.out}")
        for column in ("row", "state", "step", "time", "note"):
            table.add_column(column)
        colours = {"done": "green", "failed": "red", "running": "cyan", "interrupted": "yellow"}
        for run in runs:
            step = run.step() if run.state in ("running", "done", "failed", "interrupted") else None
            total = f"/{self.steps}" if self.steps else ""
            state = f"[{colours.get(run.state, 'dim')}]{run.state}[/]"
            table.add_row(run.row.name, state, "" if step is None else f"{step}{total}", run.elapsed(), run.message)
        return table


def by_hand(row: RowSettings) -> str:
    """The ``ganforge build`` command that trains ``row`` as the sweep does (the log's first line)."""
    where = ["--resume", row.out] if row.resume else ["--out", row.out, "--overwrite"]
    steps = ["--steps", str(row.steps)] if row.steps is not None else []
    return shlex.join(["ganforge", "build", row.config, *where, *steps, *(f"--set={item}" for item in row.overrides)])


def _last_error(log: Path) -> str:
    """The one-line ``error: …`` the build printed (or its last line)."""
    lines = [line.strip() for line in log.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    return (errors or lines or [""])[-1].removeprefix("error: ")


def killed_by(signum: int) -> str:
    """What a row killed by ``signum`` tells the user, with the likely cause."""
    try:
        name = signal.Signals(signum).name
    except ValueError:
        name = f"signal {signum}"
    causes: dict[int, str] = {
        signal.SIGKILL: "most often the kernel's out-of-memory killer (see `dmesg`); lower the batch size or "
        "--jobs, or run it again: it resumes from its last checkpoint",
        signal.SIGSEGV: "a crash inside a native library (PyTorch, a driver)",
        signal.SIGBUS: "a memory-mapped file changed or the disk filled",
    }
    return f"killed by {name}: {causes.get(signum, 'sent by another process')}"
