"""Peak memory of the end-of-training evaluation against ``eval.n``: it must not grow with n.

Each n runs in a fresh process: ``--steps`` training steps of the config (so the optimiser state,
gradients and the allocator's pools are what they are at the end of a real run), then
:meth:`ganforge.training.Trainer.evaluate` exactly as the training loop calls it (``real``: the
images the data has, at most n), with an empty feature cache (the real set's Inception features
are computed too, the worst case). The peak
resident memory is the kernel's high-water mark (``VmHWM``), reset before each phase through
``/proc/self/clear_refs``, so each phase's figure is its own.

    .venv/bin/python benchmarks/eval_memory.py                          # full-width SAMGAN8, n = 512, 3616
    .venv/bin/python benchmarks/eval_memory.py --config examples/demo.toml --n 3616,10000 --set data.size=10000
    .venv/bin/python benchmarks/eval_memory.py --set eval.batch_size=64  # any --set override

Full width on one CPU thread, another run on the other core, took 0.86 s per image (generator
and Inception): 52 minutes for n = 3,616 (docs/performance.md). Needs the FID Inception weights
(``ganforge inception-weights``) and Linux.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from ganforge.precision import hardware_summary

GIB = 2**30


def high_water_mark() -> int:
    """Peak resident bytes of this process since the last :func:`reset_high_water_mark`."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status: this benchmark needs Linux")


def resident() -> int:
    with open("/proc/self/statm", encoding="ascii") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def reset_high_water_mark() -> None:
    with open("/proc/self/clear_refs", "w", encoding="ascii") as clear:
        clear.write("5")


def child(config: str, n: int, steps: int, overrides: list[str], out: Path) -> dict[str, float]:
    """Train ``steps`` steps, then evaluate ``n`` vs ``n`` images: resident bytes after training, each
    phase's peak, the evaluation's seconds and batch."""
    from ganforge.config import load_config
    from ganforge.plugins import load_registry
    from ganforge.rundir import RunDir
    from ganforge.training import Trainer

    cfg, registry = load_config(Path(config), load_registry, [f"eval.n={n}", *overrides])
    RunDir(out).prepare(resume=False, overwrite=True, warn=print)
    trainer = Trainer(cfg, registry, out, device="cpu")
    trainer.data  # noqa: B018 - loaded before the figures: the dataset is not the evaluation's
    reset_high_water_mark()
    for _ in range(steps):
        trainer.train_step()
    figures: dict[str, float] = {"train_peak": high_water_mark(), "before": resident()}
    reset_high_water_mark()
    started = time.perf_counter()
    record = trainer.evaluate()
    figures |= {"eval_peak": high_water_mark(), "eval_s": time.perf_counter() - started}
    figures |= {"batch": trainer.evaluation_batch, "n_fake": record["n_fake"], "n_real": record["n_real"]}
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="examples/samgan.toml")
    parser.add_argument("--n", default="512,3616", help="comma-separated eval.n values, one process each")
    parser.add_argument("--steps", type=int, default=2, help="training steps before the evaluation")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        with tempfile.TemporaryDirectory() as folder:
            figures = child(args.config, args.child, args.steps, args.overrides, Path(folder) / "run")
        print(json.dumps(figures))
        return

    from ganforge.inception import resolve_weights

    weights = resolve_weights(None)  # the real cache's weights; features go to an empty cache
    if weights is None:
        sys.exit("no FID Inception weights: run `ganforge inception-weights` first")
    torch.set_num_threads(args.threads)
    print(hardware_summary(torch.device("cpu")))
    print(f"{args.config}, {args.steps} training steps, then Trainer.evaluate; overrides: {args.overrides or 'none'}")
    columns = ("n", "real", "batch", "resident", "train peak", "eval peak", "eval adds", "eval s")
    print(" ".join(f"{c:>{w}}" for c, w in zip(columns, (6, 6, 5, 9, 11, 10, 10, 7))))
    for n in (int(v) for v in args.n.split(",")):
        with tempfile.TemporaryDirectory() as cache:
            env = {**os.environ, "GANFORGE_CACHE": cache, "OMP_NUM_THREADS": str(args.threads)}
            command = [sys.executable, __file__, "--child", str(n), "--config", args.config, "--steps", str(args.steps)]
            command += [f"--set={o}" for o in [f"eval.inception_weights={weights}", f"train.threads={args.threads}"]]
            command += [f"--set={o}" for o in args.overrides]
            done = subprocess.run(command, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            sys.exit(f"n = {n}: the evaluation process failed:\n{done.stderr[-3000:]}")
        f = json.loads(done.stdout.strip().splitlines()[-1])
        print(
            f"{n:>6} {f['n_real']:>6} {f['batch']:>5} {f['before'] / GIB:>7.2f} G {f['train_peak'] / GIB:>9.2f} G "
            f"{f['eval_peak'] / GIB:>8.2f} G {(f['eval_peak'] - f['before']) / GIB:>8.2f} G {f['eval_s']:>7.0f}",
            flush=True,
        )
    print("resident: after training, before evaluating; eval adds: the evaluation's peak above it")


if __name__ == "__main__":
    main()
