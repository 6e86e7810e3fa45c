"""Yardsticks, side by side in one run: phantom v1, phantom v2 and real chest X-rays, then planted collapse.

Part 1, how varied each set is (64×64): within-set MS-SSIM in both protocols (ganforge's
``ms_ssim`` on 256 random pairs, ``saad2022_ms_ssim``), the mean per-pixel standard deviation
across images on [−1, 1], FID of N images against N real training X-rays, and the time to render
N phantoms (the median of five interleaved runs of 500, scaled). The real row's FID is one half of
the training X-rays against the other (1,214 each, shuffled: the file is sorted by label), the
floor with sets of that size; "meets the targets" checks the MS-SSIMs and the pixel spread (FID
is read beside v1's). Part 2, what each metric says of planted collapsed sets built from the same
images (one image repeated with noise σ = 0.1, ten images with σ = 0.02, of the grey range): the
collapse metrics must flag both, where MS-SSIM can read a set as diverse as fresh images (the ten
on real X-rays; both on phantom v1, tests/test_diversity.py).

Needs ``../shared/data/pneumoniamnist.npz`` (or the path as the first argument) and, for FID, the
Inception weights (``ganforge inception-weights``; without them FID is left out).

    .venv/bin/python benchmarks/yardsticks.py [PNEUMONIAMNIST.npz] [N]
"""

from __future__ import annotations

import platform
import statistics
import sys
import time
from pathlib import Path

import torch
from ganforge_plugins.phantom import render_phantoms

from ganforge.config import ComponentRef
from ganforge.evaluation import EvalContext, run_metrics
from ganforge.inception import resolve_weights
from ganforge.plugins import load_registry

ROOT = Path(__file__).resolve().parents[1]
PATH = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT.parent / "shared" / "data" / "pneumoniamnist.npz"
N = int(sys.argv[2]) if len(sys.argv) > 2 else 2000
TARGET_MS_SSIM, TARGET_STD = 0.05, 0.2  # issue 24: within 0.05 of the real set's (and ≥ 0.45), std within 20 %


def ref(name: str, **params) -> ComponentRef:
    return ComponentRef.model_validate({"name": name, **params})


def planted(base: torch.Tensor, distinct: int, noise: float, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = base[torch.arange(len(base)) % distinct].float() + noise * 255 * torch.randn(base.shape, generator=g)
    return x.round().clamp(0, 255).to(torch.uint8)


def render_seconds(repeats: int = 5, n: int = 500) -> dict[int, float]:
    """Per version, the median seconds to render ``n`` phantoms at 64×64, the versions interleaved
    (v1 v2 v1 v2 …) so that load on a shared machine hits both alike; scaled to N images."""
    times: dict[int, list[float]] = {1: [], 2: []}
    for _ in range(repeats):
        for v in (1, 2):
            start = time.perf_counter()
            render_phantoms(n, 64, seed=3, version=v)
            times[v].append(time.perf_counter() - start)
    return {v: statistics.median(t) * N / n for v, t in times.items()}


def main() -> None:
    sys.stdout.reconfigure(line_buffering=True)  # rows as they are measured, also into a file
    if not PATH.is_file():
        sys.exit(f"{PATH}: no PneumoniaMNIST file (see ../shared/data/README.md or docs/real-data.md)")
    registry = load_registry()
    print(f"{platform.processor() or platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads")

    def medmnist(split: str):
        return registry.build(
            "dataset", "medmnist", {"path": str(PATH), "split": split}, resolution=64, image_channels=1
        )

    real = medmnist("train").images  # this copy is sorted by label (pneumonia first): shuffle it
    real = real[torch.randperm(len(real), generator=torch.Generator().manual_seed(0))]
    half = len(real) // 2
    weights = resolve_weights()
    n_fid = min(N, len(real))
    seconds = render_seconds()
    sets = {f"phantom v{v}": (render_phantoms(N, 64, seed=3, version=v)[0], seconds[v]) for v in (1, 2)}
    diversity = [ref("ms_ssim", pairs=256), ref("saad2022_ms_ssim")]
    print(f"\nPart 1: {len(real)} real training X-rays (PneumoniaMNIST 28² → 64²) and {N} phantoms of each version")
    print(f"{'set':<24} {'MS-SSIM':>8} {'saad2022':>9} {'pixel std':>10} {'FID vs real':>12} {'render s':>9}")
    real_figures = None
    for label, (images, seconds) in [("real X-rays (train)", (real, None)), *sets.items()]:
        first = images[:512]
        values = [r.values for r in run_metrics(diversity, registry, EvalContext(first, first, registry=registry))]
        ms, saad = values[0]["ms_ssim_real"], values[1]["ms_ssim_saad2022_real"]
        std = float((first.float() / 127.5 - 1).std(0).mean())
        fid = "–"
        if weights is not None:  # the real row: one half of the training set against the other (the floor)
            pair = (real[:half], real[half:]) if label.startswith("real") else (real[:n_fid], images[:n_fid])
            ctx = EvalContext(*pair, inception_weights=weights, registry=registry)
            fid = f"{run_metrics([ref('fid')], registry, ctx)[0].values['fid']:.1f}"
        real_figures = real_figures or (ms, saad, std)
        mark = ""
        if label.startswith("phantom"):
            ok = all(
                abs(a - b) <= TARGET_MS_SSIM and a >= 0.45 for a, b in ((ms, real_figures[0]), (saad, real_figures[1]))
            )
            ok = ok and abs(std - real_figures[2]) <= TARGET_STD * real_figures[2]
            mark = "  meets the targets" if ok else "  misses the targets"
        timing = f"{seconds:.1f}" if seconds is not None else "–"
        print(f"{label:<24} {ms:8.3f} {saad:9.3f} {std:10.3f} {fid:>12} {timing:>9}{mark}")

    print("\nPart 2: planted collapse, 512 images each against 512 real training X-rays and against phantom v2")
    collapse = [
        ref("ms_ssim", pairs=256),
        ref("diversity"),
        ref("density_coverage", space="pixels"),
        *([ref("density_coverage")] if weights is not None else []),
    ]
    header = f"{'reference':<11} {'generated set':<22} {'MS-SSIM':>8} {'nn ratio':>9} {'modes':>6} {'coverage':>9}"
    print(header + (f" {'cov (Incep.)':>12}" if weights is not None else "") + "  flagged")
    for name, base in (("real", real), ("phantom v2", sets["phantom v2"][0])):
        reference, fresh = base[:512], base[512:1024]
        cases = {
            "fresh images": fresh,
            "one + noise 0.1": planted(fresh, 1, 0.1),
            "ten + noise 0.02": planted(fresh, 10, 0.02),
        }
        for label, fake in cases.items():
            ctx = EvalContext(reference, fake, inception_weights=weights, registry=registry)
            values = [r.values for r in run_metrics(collapse, registry, ctx)]
            ms = values[0]["ms_ssim_fake"]
            div = values[1]
            row = f"{name:<11} {label:<22} {ms:8.3f} {div['nn_ratio']:9.3f} {div['modes_covered']:6.2f}"
            row += f" {div['coverage']:9.3f}"
            if weights is not None:
                row += f" {values[3]['coverage']:12.3f}"
            print(row + f"  {'yes' if div['collapse_flag'] else 'no'}")
        print(f"{'':<11} (MS-SSIM of the reference set itself: {values[0]['ms_ssim_real']:.3f})")


if __name__ == "__main__":
    main()
