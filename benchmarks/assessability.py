"""Which images does the phantom analyser agree to read? The table of docs/pggan.md, per version.

``PhantomAnalyser.assessable`` must accept fresh phantoms of its version at any size and refuse
what is not a phantom radiograph: noise, blank, black and saturated images, box-blurred noise
(zero-padded, so darker at the border, like a body outline) and real chest X-rays. Fresh phantoms
come from seed 424,242, apart from the analyser's reference and check seeds.

    .venv/bin/python benchmarks/assessability.py [--n 1000] [--real ../shared/data/pneumoniamnist.npz]

A minute or two on one CPU core. The real X-rays (MedMNIST ``.npz``: ``train_images``) are
optional; without them their rows are left out.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from ganforge_plugins.phantom import render_phantoms
from ganforge_plugins.phantom_analysis import CHECK, REFERENCE, PhantomAnalyser

from ganforge.precision import hardware_summary

SEED = 424_242
DEFAULT_REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "pneumoniamnist.npz"


def blobs(n: int, width: int) -> torch.Tensor:
    """Uniform noise box-blurred ``width``×``width``, zero-padded (as ``tests/test_phantom_analysis.py``)."""
    noise = torch.rand(n, 1, 64, 64, generator=torch.Generator().manual_seed(width)) * 255
    return F.avg_pool2d(noise, width, 1, width // 2).to(torch.uint8)


def image_sets(n: int, real: Path | None) -> dict[str, Callable[[int], torch.Tensor]]:
    """Row name → images for an analyser of version v (the argument)."""
    g = torch.Generator().manual_seed(0)
    sets: dict[str, Callable[[int], torch.Tensor]] = {
        f"its version's phantoms, {r}²": (lambda v, r=r: render_phantoms(n, r, seed=SEED, version=v)[0])
        for r in (32, 64, 128)
    }
    sets["the other version's phantoms, 64²"] = lambda v: render_phantoms(n, 64, seed=SEED, version=3 - v)[0]
    sets["uniform noise"] = lambda v: torch.randint(0, 256, (n, 1, 64, 64), generator=g, dtype=torch.uint8)
    for value, name in ((128, "blank grey"), (0, "black"), (255, "saturated")):
        sets[name] = lambda v, value=value: torch.full((10, 1, 64, 64), value, dtype=torch.uint8)
    for width in (5, 9, 15, 21):
        sets[f"box-blurred noise, {width}×{width}"] = lambda v, width=width: blobs(n, width)
    if real is not None:
        x_rays = torch.from_numpy(np.load(real)["train_images"])[:, None]
        sets["real chest X-rays, 28²"] = lambda v: x_rays
        resized = F.interpolate(x_rays.float(), size=64, mode="bicubic").clamp(0, 255).to(torch.uint8)
        sets["real chest X-rays, resized to 64²"] = lambda v: resized
    return sets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=1000, help="images per generated row")
    parser.add_argument("--real", type=Path, default=DEFAULT_REAL, help="MedMNIST .npz of real X-rays")
    args = parser.parse_args()
    assert SEED not in (REFERENCE[1], CHECK[1])
    real = args.real if args.real.is_file() else None
    print(hardware_summary(torch.device("cpu")))
    if real is None:
        print(f"no real X-rays at {args.real}: their rows are left out")
    analysers = {v: PhantomAnalyser(version=v) for v in (1, 2)}
    print(f"{'images':<36} {'n':>5} {'v1 assessable':>14} {'v2 assessable':>14}")
    for name, make in image_sets(args.n, real).items():
        shares = []
        for version, analyser in analysers.items():
            images = make(version)
            shares.append(float(analyser.assessable(images).float().mean()))
        print(f"{name:<36} {len(images):>5} {shares[0]:>14.1%} {shares[1]:>14.1%}", flush=True)


if __name__ == "__main__":
    main()
