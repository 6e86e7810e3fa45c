"""Loss curves of one config trained by this checkout and by revision REV: what a change of algorithm does.

    python benchmarks/loss_curves.py --baseline REV [--config examples/demo.toml] [--steps 600] [--window 100]

Both runs train the same config with the same seed in fp32, one thread each, side by side (two
processes), logging every step, without evaluation. The table gives, per window of steps, the mean
and standard deviation of D's and G's losses in each run. Used for issue 27's "once per update"
change (spectral norm's power iteration once per D or G update instead of once per D call).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bench_train import ROOT, checkout


def train(tree: Path, config: Path, out: Path, steps: int, extra: list[str]) -> subprocess.Popen:
    command = [sys.executable, "-m", "ganforge", "build", str(tree / config.relative_to(ROOT)), "--out", str(out)]
    command += ["--steps", str(steps), "--no-eval", "--precision", "fp32", "--set", "train.log_every=1"]
    command += ["--set", "train.threads=1", *(f"--set={s}" for s in extra)]
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(command, cwd=tree, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def losses(run: Path) -> list[dict]:
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [r for r in records if "loss_d" in r]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", required=True, metavar="REV")
    parser.add_argument("--config", type=Path, default=ROOT / "examples" / "demo.toml")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--window", type=int, default=100)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config overrides")
    args = parser.parse_args()
    config = args.config.resolve()
    with tempfile.TemporaryDirectory() as folder:
        trees = {"this checkout": ROOT, args.baseline: checkout(args.baseline, Path(folder) / "baseline")}
        runs = {
            name: train(tree, config, Path(folder) / f"run{i}", args.steps, args.set)
            for i, (name, tree) in enumerate(trees.items())
        }
        for name, process in runs.items():
            _, err = process.communicate()
            if process.returncode:
                sys.exit(f"{name}: training failed:\n{err[-2000:]}")
        curves = {name: losses(Path(folder) / f"run{i}") for i, name in enumerate(runs)}
    print(f"# {config.name}, fp32, {args.steps} steps; mean ± sd of each loss per window of {args.window} steps")
    names = list(curves)
    print(f"{'steps':>11} " + " ".join(f"{n + ' ' + k:>26}" for n in names for k in ("D", "G")))
    for start in range(0, args.steps, args.window):
        cells = []
        for name in names:
            window = [r for r in curves[name] if start < r["step"] <= start + args.window]
            for key in ("loss_d", "loss_g"):
                values = [r[key] for r in window]
                cells.append(f"{statistics.mean(values):17.3f} ± {statistics.stdev(values):6.3f}")
        print(f"{start + 1:>5}–{start + args.window:<5} " + " ".join(cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())
