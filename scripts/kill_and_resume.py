"""Kill a training run with SIGKILL at random moments, resume it each time, compare with an uninterrupted run.

    python scripts/kill_and_resume.py examples/demo.toml --steps 40 --kills 20

runs ``ganforge build CONFIG --steps N --set train.checkpoint_every=1 --no-eval`` once without
interruption, then again killed ``--kills`` times, resuming with ``--resume`` after each kill and
finally running to the end. Kill ``i`` happens at a random step (the steps are drawn without
replacement and taken in order, so every kill interrupts real training) and at a random moment
within that step: in the forward or backward pass, the optimizer step, or the middle of writing a
checkpoint. It prints one line per kill and exits 0 only when every tensor of the final checkpoint
and of the top-level weights files equals the uninterrupted run's, bit for bit.
"""

from __future__ import annotations

import argparse
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from ganforge.checkpoint import load_tensors
from ganforge.rundir import DISCRIMINATOR, GENERATOR, GENERATOR_EMA, RunDir


def build(config: Path, out: Path, steps: int, extra: list[str], resume: bool) -> subprocess.Popen:
    where = ["--resume", str(out)] if resume else ["--out", str(out)]
    command = [sys.executable, "-m", "ganforge", "build", str(config), "--steps", str(steps), *where, *extra]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _newest(run: Path) -> int:
    steps = RunDir(run).checkpoint_steps()
    return steps[0] if steps else 0


def tensors(run: Path, steps: int) -> dict[str, dict[str, torch.Tensor]]:
    files = {"checkpoint": RunDir(run).checkpoint_path(steps)}
    files.update({name: run / name for name in (GENERATOR, GENERATOR_EMA, DISCRIMINATOR)})
    return {name: load_tensors(path)[0] for name, path in files.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", type=Path)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill moments")
    parser.add_argument("--out", type=Path, help="folder for the two runs [a temporary one]")
    args = parser.parse_args()
    folder = args.out or Path(tempfile.mkdtemp(prefix="kill-and-resume-"))
    extra = ["--set", "train.checkpoint_every=1", "--no-eval"]

    start = time.monotonic()
    straight = build(args.config, folder / "straight", args.steps, extra, resume=False)
    if straight.wait() != 0:
        print(straight.stderr.read(), file=sys.stderr)
        return 2
    duration = time.monotonic() - start
    print(f"uninterrupted: {duration:.1f} s for {args.steps} steps")

    rng = random.Random(args.seed)
    step_time = duration / args.steps
    targets = sorted(rng.sample(range(args.steps), min(args.kills, args.steps)))
    run = folder / "killed"
    for kill, target in enumerate(targets):
        child = build(args.config, run, args.steps, extra, resume=kill > 0)
        while child.poll() is None and _newest(run) < target:  # the run reaches the chosen step
            time.sleep(0.05)
        moment = rng.uniform(0, step_time)
        time.sleep(moment)
        finished = child.poll() is not None
        child.send_signal(signal.SIGKILL)
        code = child.wait()
        state = "had already finished" if finished else f"killed (exit {code})"
        print(
            f"kill {kill + 1:2d} after step {target:3d} + {moment:4.2f} s: {state}; newest checkpoint: {_newest(run)}"
        )
    final = build(args.config, run, args.steps, extra, resume=True)
    if final.wait() != 0:
        print(final.stderr.read(), file=sys.stderr)
        return 1

    reference, resumed = tensors(folder / "straight", args.steps), tensors(run, args.steps)
    different = [
        f"{name}:{key}"
        for name in reference
        for key in reference[name].keys() | resumed[name].keys()
        if key not in reference[name]
        or key not in resumed[name]
        or not torch.equal(reference[name][key], resumed[name][key])
    ]
    if different:
        print(f"DIFFERENT: {len(different)} tensors, e.g. {', '.join(different[:3])}")
        return 1
    count = sum(len(t) for t in reference.values())
    print(f"identical: all {count} tensors of the final checkpoint and weights files match the uninterrupted run")
    return 0


if __name__ == "__main__":
    sys.exit(main())
