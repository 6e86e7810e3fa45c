"""The paper's comparison on real chest X-rays: SAMGAN against MSG-GAN (Table 2's components at demo width).

Scores the final EMA generators that ``benchmarks/recipes.py`` trained (3,000 steps, one run per
seed) against the real X-rays: FID, KID, MS-SSIM diversity and Inception-space density/coverage on
``--n`` images per side, as mean ± sd over the seeds. The pairs compared differ only in attention
(SAMGAN: self-attention at 8² and 16² in G and D; MSG-GAN: none).

    .venv/bin/python benchmarks/recipes.py --data real --only sn-init+pooled+r1,msggan-sn-init+pooled+r1
    .venv/bin/python benchmarks/samgan_vs_msggan.py [--n 500] [--seeds 0,1,2]
        [--pairs sn-init+pooled+r1:msggan-sn-init+pooled+r1,sn-init+pooled:msggan-sn-init+pooled]

The default pair is the demo's recipe (``pooled`` + R1) with and without attention.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

from ganforge import api
from ganforge.precision import hardware_summary

ROOT = Path(__file__).resolve().parents[1]
METRICS = ["fid", "kid", "ms_ssim", "density_coverage"]
FIGURES = [  # (column, metric, key): what the table shows
    ("FID", "fid", "fid"),
    ("KID ×1000", "kid", "kid_mean"),
    ("MS-SSIM (fake)", "ms_ssim", "ms_ssim_fake"),
    ("coverage", "density_coverage", "coverage"),
    ("density", "density_coverage", "density"),
]


def scores(run: Path, n: int) -> dict[str, float]:
    result = api.evaluate(
        ROOT / "examples" / "pneumonia.toml",
        weights=run / "generator_ema.safetensors",
        n=n,
        metrics=METRICS,
        device="cpu",
    )
    values = {r.name: r.values for r in result.results}
    return {column: values[metric][key] * (1000 if metric == "kid" else 1) for column, metric, key in FIGURES}


def summary(values: list[float]) -> str:
    if len(values) < 2:
        return f"{values[0]:.3f}" if values else "–"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--pairs", default="sn-init+pooled+r1:msggan-sn-init+pooled+r1")
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "recipes" / "real")
    args = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)
    print(hardware_summary(torch.device("cpu")))
    seeds = [int(s) for s in args.seeds.split(",")]
    print(f"{args.n} generated vs {args.n} real X-rays (PneumoniaMNIST, 32²), seeds {seeds}, final EMA generators")
    print(f"{'recipe':<26} {'runs':>4} " + " ".join(f"{c:>17}" for c, _, _ in FIGURES))
    for pair in args.pairs.split(","):
        for recipe in pair.split(":"):
            runs = [args.work / recipe / f"seed{s}" for s in seeds]
            found = [scores(run, args.n) for run in runs if (run / "generator_ema.safetensors").is_file()]
            cells = [summary([f[c] for f in found]) for c, _, _ in FIGURES]
            print(f"{recipe:<26} {len(found):>4} " + " ".join(f"{c:>17}" for c in cells))


if __name__ == "__main__":
    main()
