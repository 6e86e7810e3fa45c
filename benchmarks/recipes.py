"""Which small-data recipe keeps the SAMGAN demo from collapsing? Issue 25's measured recipes.

Each recipe (a name and ``--set`` overrides of ``examples/pneumonia.toml``: the demo at 32²) trains
on phantom v2 (2,048 images) and on the real X-rays (2,428) for each seed, with the collapse
alarm every 250 steps and FID / pixel-space coverage / diversity every 1,000 steps on 256 images.
Runs go to ``runs/recipes/DATA/RECIPE/seedS``; finished ones are read back, not retrained, and an
interrupted one resumes. The table gives, per recipe and data set, over the seeds (mean ± sd):
whether the alarm fired, the last alarm figures (nearest-neighbour ratio, coverage, and coverage
over the real-vs-real coverage of as many images), and FID at 1,000 steps and at the end.

    .venv/bin/python benchmarks/recipes.py [--steps 3000] [--seeds 0,1,2] [--data phantom,real] [--only a,b] [--table]

Targets for the default (issue 25): no alarm; coverage ≥ 0.8 of real-vs-real; ratio ≥ 0.9; FID
lower at the end than at 1,000 steps. Hours on 2 CPU cores at the full protocol (30 runs).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import tomllib
import torch

from ganforge import api
from ganforge.assembly import build_dataset
from ganforge.collapse import below
from ganforge.config import CollapseConfig
from ganforge.diversity import density_coverage, pixel_embedding
from ganforge.evaluation import subset
from ganforge.precision import hardware_summary

ROOT = Path(__file__).resolve().parents[1]
SN = "model.{net}.weight_norms=['equalized_lr', {{name = 'spectral', scale = '{scale}'}}]"
SN_UNIT, SN_INIT = ([SN.format(net=n, scale=s) for n in ("generator", "discriminator")] for s in ("unit", "init"))
HEADS, SKIP, POOLED = ([f"model.connection.fakes='{f}'"] for f in ("heads", "skip", "pooled"))  # what D gets from G
TTUR = ["optim.lr=0.0001", "optim_d={ name = 'adam', lr = 0.0004, betas = [0.0, 0.99] }"]  # SAGAN's
NO_ATTENTION = [f"model.{n}.attention_resolutions=[]" for n in ("generator", "discriminator")]  # MSG-GAN
# The paper's attention (every key) and BigGAN's 2×2-pooled keys and values.
PAPER_ATTENTION, KV_POOL = ([f"model.{n}.attention.pool={p}" for n in ("generator", "discriminator")] for p in (1, 2))
# No small-data tool but the recipe's own, and the paper's attention unless the recipe pools: the
# demo's own may change (it pools since 2026-12-03).
PLAIN = ["d_augment=[]", "regularize=[]", *PAPER_ATTENTION]
DIFFAUGMENT = ["d_augment=['diffaugment']"]
ADA = ["d_augment=[{ name = 'ada', speed_images = 20000, heuristic = 'relative' }]"]
R1 = ["regularize=[{ name = 'r1', gamma = 1.0, every = 16 }]"]
RECIPES = {  # each says its spectral-norm scale and generated pyramid: the demo's own may change
    "demo": [*SN_UNIT, *HEADS],  # the demo as it was before spectral norm's init scale
    "sn-init": [*SN_INIT, *HEADS],
    "sn-init+diffaugment": [*SN_INIT, *HEADS, *DIFFAUGMENT],
    "sn-init+ada": [*SN_INIT, *HEADS, *ADA],
    "sn-init+r1": [*SN_INIT, *HEADS, *R1],
    "sn-init+ttur": [*SN_INIT, *HEADS, *TTUR],
    "sn-init+ttur+diffaugment": [*SN_INIT, *HEADS, *TTUR, *DIFFAUGMENT],
    "sn-init+skip": [*SN_INIT, *SKIP],
    "sn-init+pooled": [*SN_INIT, *POOLED],  # no multi-scale tell
    "sn-init+pooled+diffaugment": [*SN_INIT, *POOLED, *DIFFAUGMENT],
    "sn-init+pooled+ada": [*SN_INIT, *POOLED, *ADA],
    "sn-init+pooled+r1": [*SN_INIT, *POOLED, *R1],
    "sn-init+pooled+r1+kv-pool2": [*SN_INIT, *POOLED, *R1, *KV_POOL],  # the demo now: cheaper attention
    "msggan-sn-init": [*SN_INIT, *HEADS, *NO_ATTENTION],
    "msggan-sn-init+pooled": [*SN_INIT, *POOLED, *NO_ATTENTION],
    "msggan-sn-init+pooled+r1": [*SN_INIT, *POOLED, *R1, *NO_ATTENTION],  # MSG-GAN with the demo's recipe
}
PNEUMONIA = ROOT / "examples" / "pneumonia.toml"  # the demo's model at 32²
DATA = {
    "phantom": (PNEUMONIA, ["data={ name = 'phantom', size = 2048, holdout = 0.1 }"]),  # v2
    "real": (PNEUMONIA, []),
}
EVAL = [
    "eval.metrics=['fid', { name = 'density_coverage', space = 'pixels' }, 'diversity']",
    "eval.n=256",
    "eval.every=1000",
    "train.collapse.every=250",
    "train.sample_every=500",
    "train.checkpoint_every=500",
]


def records(run: Path) -> list[dict]:
    path = run / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def finished(run: Path, steps: int) -> bool:
    return any(r.get("step") == steps and "eval" in r for r in records(run))  # the final evaluation


def real_coverage(config_path: Path, overrides: list[str], n: int, size: int, k: int) -> float:
    """Coverage of ``n`` training images by ``n`` others, in the collapse alarm's pixel space: the ceiling."""
    config, registry = api.load_experiment(config_path, overrides)
    images = build_dataset(config, registry).images
    picked = subset(images, 2 * n, 11)
    _, coverage = density_coverage(pixel_embedding(picked[:n], size), pixel_embedding(picked[n:], size), k)
    return coverage


def alarm_fired(collapse: list[dict], settings: CollapseConfig) -> bool:
    """Whether the collapse alarm warned, replaying its decision over the logged figures."""
    best = 0.0
    for figures in collapse:
        if below(settings, figures, best):
            return True
        best = max(best, figures["coverage"])
    return False


COLUMNS = ("nn_ratio", "coverage", "fid_1k", "fid_end")


def run_figures(run: Path, steps: int, settings: CollapseConfig) -> dict:
    """One finished run's alarm, last alarm figures, FID at 1,000 steps and at the end, and its precision."""
    lines = records(run)
    collapse = [r["collapse"] for r in lines if "collapse" in r and r["step"] <= steps]
    evals = {r["step"]: r["eval"] for r in lines if "eval" in r}

    def fid(step: int) -> float | None:
        return evals[step]["metrics"]["fid"]["fid"] if step in evals else None

    config = tomllib.loads((run / "config.toml").read_text())
    return {
        "alarm": alarm_fired(collapse, settings),
        "nn_ratio": collapse[-1]["nn_ratio"] if collapse else None,
        "coverage": collapse[-1]["coverage"] if collapse else None,
        "fid_1k": fid(1000),
        "fid_end": fid(steps),
        "precision": config["train"]["precision"],
    }


def summary(values: list[float]) -> str:
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--data", default="phantom,real")
    parser.add_argument("--only", help="comma-separated recipe names")
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "recipes")
    parser.add_argument("--table", action="store_true", help="train nothing: the table of the finished runs")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], help="for every run, e.g. train.precision=bf16"
    )
    args = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)
    print(hardware_summary(torch.device("cpu")))
    recipes = args.only.split(",") if args.only else list(RECIPES)
    seeds = [int(s) for s in args.seeds.split(",")]
    rows = []
    for data in args.data.split(","):
        config_path, data_sets = DATA[data]
        for recipe in recipes:
            for seed in seeds:
                run = args.work / data / recipe / f"seed{seed}"
                if not finished(run, args.steps) and not args.table:
                    print(f"training {data} {recipe} seed {seed} → {run}")
                    overrides = [*data_sets, *EVAL, *PLAIN, *RECIPES[recipe], f"seed={seed}", *args.overrides]
                    resume = run if (run / "checkpoints").is_dir() else None
                    api.train(
                        config_path, run, overrides=overrides, steps=args.steps, resume=resume, overwrite=resume is None
                    )
            runs = [args.work / data / recipe / f"seed{s}" for s in seeds]
            rows.append((data, recipe, [run for run in runs if finished(run, args.steps)]))
    settings = api.load_experiment(ROOT / "examples" / "demo.toml", EVAL)[0].train.collapse
    ceilings = {
        data: real_coverage(DATA[data][0], DATA[data][1], settings.images, settings.size, settings.k)
        for data in args.data.split(",")
    }
    print(
        f"\n{args.steps} steps, seeds {seeds}; real-vs-real coverage ({settings.images} images): "
        + ", ".join(f"{d} {c:.3f}" for d, c in ceilings.items())
    )
    print(
        f"{'data':<8} {'recipe':<26} {'alarm':>6} {'nn ratio':>15} {'coverage':>15} {'cov/real':>15} "
        f"{'FID 1k':>17} {'FID end':>17}"
    )
    per_run = []
    for data, recipe, runs in rows:
        figures = [run_figures(run, args.steps, settings) for run in runs]
        per_run += [(data, recipe, run, f) for run, f in zip(runs, figures)]
        alarms = sum(f["alarm"] for f in figures)
        ratios, coverages, fid_1k, fid_end = ([f[k] for f in figures if f[k] is not None] for k in COLUMNS)
        relative = [c / ceilings[data] for c in coverages]
        print(
            f"{data:<8} {recipe:<26} {alarms:>3}/{len(runs):<2} {summary(ratios):>15} {summary(coverages):>15} "
            f"{summary(relative):>15} {summary(fid_1k):>17} {summary(fid_end):>17}"
        )
    print(f"\nper run: data, recipe, seed, precision, alarm, {', '.join(COLUMNS)}")
    for data, recipe, run, f in per_run:
        cells = " ".join("–" if f[k] is None else f"{f[k]:.3f}" for k in COLUMNS)
        print(f"{data:<8} {recipe:<26} {run.name:<6} {f['precision']:<6} alarm {f['alarm']:d}  {cells}")


if __name__ == "__main__":
    main()
