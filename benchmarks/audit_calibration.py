"""Can a researcher publish the privacy audit's verdicts? False-positive rates on null data, power on copies.

**Null replicates.** Each renders a fresh phantom v2 set (its own seed) of training, held-out and
"generated" images and splits it at random (a resampled held-out set), so the generated images
are fresh draws that copy nothing. Every verdict's flag rate must be at most its α within the
simulation's sampling error (the one-sided 95 % Clopper-Pearson bound on the rate is printed).
The tests the audit used before (binomial tests at the estimated radius and minimum as if they
were known; C_T read against −3) are scored beside them.

**Power.** In the first ``--power-replicates`` replicates a share (1, 5, 10, 25 %) of the generated
images is replaced by copies of random training images: exact, mirrored, moved by 1–3 px
(every (dx, dy) up to ±3 but (0, 0), edges repeated), brightness ×(1 ± 0.1), Gaussian noise
σ = 0.02 (of the full range), rotated by 2–5° either way.

**Spaces.** ``pixels`` (the audit's pixel space, as configured by default) per replicate;
``inception`` (the FID features) from one pool of fresh images and their copies, featurised once
and split at random per replicate (replicates share images, so its rates vary more than a
binomial's). The figures of replicate 0 are checked against a full ``run_metrics`` audit of the
same images, so the table measures the audit's own code.

    .venv/bin/python benchmarks/audit_calibration.py [--replicates 200] [--power-replicates 40]
        [--spaces pixels,inception] [--train 1000] [--held 200] [--fake 500] [--pool 2000]

Minutes on 2 CPU cores for the pixel space at the defaults; the Inception pool adds one Inception
pass per pool image and copy (about 8 × ``--pool``).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from ganforge_plugins.phantom import render_phantoms
from scipy.stats import beta, binom

from ganforge.audit.distances import Views
from ganforge.audit.neighbours import kmeans, nearest, nearest_of_views
from ganforge.audit.statistics import cell_distances, copying_test, near_copies
from ganforge.config import ComponentRef
from ganforge.evaluation import EvalContext, run_metrics
from ganforge.inception import resolve_weights
from ganforge.plugins import load_registry
from ganforge.precision import hardware_summary

ALPHA = 0.001
RATES = (0.01, 0.05, 0.10, 0.25)
PERCENTILE, MIN_PER_CELL = 5.0, 5  # the audit's defaults
RESOLUTION = 64


# --------------------------------------------------------------------------- copies


def _moved(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    out = torch.empty_like(x)
    moves = [(dx, dy) for dy in range(-3, 4) for dx in range(-3, 4) if dx or dy]
    picks = torch.randint(len(moves), (len(x),), generator=g)
    r = x.shape[-1]
    padded = F.pad(x.float(), (3, 3, 3, 3), mode="replicate")
    for i, pick in enumerate(picks.tolist()):
        dx, dy = moves[pick]
        out[i] = padded[i, :, 3 - dy : 3 - dy + r, 3 - dx : 3 - dx + r].to(x.dtype)
    return out


def _brightened(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    factor = 1 + 0.1 * (2 * torch.randint(2, (len(x), 1, 1, 1), generator=g) - 1)
    return (x.float() * factor).round().clamp(0, 255).to(torch.uint8)


def _noised(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    noise = torch.randn(x.shape, generator=g) * 0.02 * 255
    return (x.float() + noise).round().clamp(0, 255).to(torch.uint8)


def _rotated(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    degrees = (2 + 3 * torch.rand(len(x), generator=g)) * (2 * torch.randint(2, (len(x),), generator=g) - 1)
    theta = torch.deg2rad(degrees)
    cos, sin = theta.cos(), theta.sin()
    matrix = torch.stack([torch.stack([cos, -sin, 0 * cos], 1), torch.stack([sin, cos, 0 * cos], 1)], 1)
    grid = F.affine_grid(matrix, list(x.shape), align_corners=False)
    turned = F.grid_sample(x.float(), grid, mode="bilinear", padding_mode="border", align_corners=False)
    return turned.round().clamp(0, 255).to(torch.uint8)


COPIES: dict[str, Callable[[torch.Tensor, torch.Generator], torch.Tensor]] = {
    "exact": lambda x, g: x.clone(),
    "mirrored": lambda x, g: x.flip(-1),
    "moved 1-3 px": _moved,
    "brightness ±10 %": _brightened,
    "noise σ 0.02": _noised,
    "rotated 2-5°": _rotated,
}


# --------------------------------------------------------------------------- per-image figures


@dataclass
class Scored:
    """For every query image (generated, then the copies of each kind) and held-out image: the
    distance to the nearest training image, its k-means cell and the distance within the cell."""

    query: torch.Tensor
    query_cell: torch.Tensor
    query_in_cell: torch.Tensor
    held: torch.Tensor
    held_cell: torch.Tensor
    held_in_cell: torch.Tensor


def score(
    train: torch.Tensor, query_views: Sequence[torch.Tensor], held_views: Sequence[torch.Tensor], cells: int
) -> Scored:
    """The audit's own functions, applied once to every image a replicate can draw from."""
    query = nearest_of(query_views, train)
    held = nearest_of(held_views, train)
    centroids = kmeans(train, cells, 0)
    train_cell = nearest(train, centroids)[1]
    query_in_cell, query_cell = cell_distances(query_views, centroids, train, train_cell)
    held_in_cell, held_cell = cell_distances(held_views, centroids, train, train_cell)
    return Scored(query, query_cell, query_in_cell, held, held_cell, held_in_cell)


def nearest_of(views: Sequence[torch.Tensor], train: torch.Tensor) -> torch.Tensor:
    return nearest_of_views(views, train)[0]


def verdicts(s: Scored, picked: torch.Tensor) -> dict[str, float]:
    """Each test's p-value (or the old rule's flag as 0/1) for the generated images ``picked``."""
    fake = s.query[picked]
    found = near_copies(fake, s.held, PERCENTILE)
    copying = copying_test(s.query_in_cell[picked], s.query_cell[picked], s.held_in_cell, s.held_cell, MIN_PER_CELL)
    # what the audit computed before: binomial tests at the estimated radius and minimum, C_T < −3
    radius = float(torch.quantile(s.held.double(), PERCENTILE / 100))
    m, n = len(fake), len(s.held)
    old_rate = float(binom.sf(int((fake < radius).sum()) - 1, m, PERCENTILE / 100))
    old_min = float(binom.sf(int((fake < s.held.min()).sum()) - 1, m, 1 / (n + 1)))
    return {
        "near copies: rate": found.p_value,
        "near copies: below minimum": found.below_min_p,
        "near copies (verdict)": min(found.p_value, found.below_min_p) * 2,  # flag: either < α/2
        "data copying C_T": copying.p_value,
        "either metric (nominal 2α)": min(min(found.p_value, found.below_min_p) * 2, copying.p_value),
        "old: binomial, either test": min(old_rate, old_min),
        "old: C_T < −3": 0.0 if copying.ct < -3 else 1.0,
    }


# --------------------------------------------------------------------------- replicates


@dataclass
class Replicate:
    scored: Scored
    fresh: int  # the first ``fresh`` queries are fresh images; then each kind's copies, ``per_kind`` each
    per_kind: int


def draw(
    g: torch.Generator, images: torch.Tensor, n_train: int, n_held: int, n_fake: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    order = torch.randperm(len(images), generator=g)
    return order[:n_train], order[n_train : n_train + n_held], order[n_train + n_held : n_train + n_held + n_fake]


def pixel_replicate(index: int, args, registry, with_copies: bool) -> Replicate:
    per_kind = math.ceil(max(RATES) * args.fake) if with_copies else 0
    images = render_phantoms(args.train + args.held + args.fake, RESOLUTION, seed=10_000 + index, version=2)[0]
    g = torch.Generator().manual_seed(index)
    train_i, held_i, fake_i = draw(g, images, args.train, args.held, args.fake)
    train = images[train_i]
    queries = [images[fake_i]]
    for make in COPIES.values() if with_copies else ():
        queries.append(make(train[torch.randperm(len(train), generator=g)[:per_kind]], g))
    ctx = EvalContext(train, torch.cat(queries), holdout=images[held_i], registry=registry)
    space = registry.build("feature_space", "pixels", {})
    scored = score(space(ctx, "real"), Views(space, ctx, "fake"), Views(space, ctx, "holdout"), cells(args.held))
    if index == 0:
        check_against_audit(ctx, scored, args.fake, registry, {"name": "pixels"})
    return Replicate(scored, args.fake, per_kind)


class InceptionPool:
    """Fresh images and copies of each of them, featurised once; replicates split the pool anew."""

    def __init__(self, args, registry):
        self.args, self.registry = args, registry
        self.images = render_phantoms(args.pool, RESOLUTION, seed=20_000, version=2)[0]
        g = torch.Generator().manual_seed(1)
        everything = torch.cat([self.images, *(make(self.images, g) for make in COPIES.values())])
        weights = resolve_weights(None)
        self.ctx = EvalContext(everything[:1], everything, inception_weights=weights, registry=registry, cache=False)
        started = time.perf_counter()
        space = registry.build("feature_space", "inception", {})
        self.features = space(self.ctx, "fake").float().reshape(1 + len(COPIES), args.pool, -1)
        print(f"inception pool: {len(everything)} images featurised in {time.perf_counter() - started:.0f} s")

    def replicate(self, index: int, with_copies: bool) -> Replicate:
        args = self.args
        per_kind = math.ceil(max(RATES) * args.fake) if with_copies else 0
        g = torch.Generator().manual_seed(30_000 + index)
        train_i, held_i, fake_i = draw(g, self.images, args.train, args.held, args.fake)
        queries = [self.features[0, fake_i]]
        for kind in range(len(COPIES)) if with_copies else ():
            sources = train_i[torch.randperm(len(train_i), generator=g)[:per_kind]]
            queries.append(self.features[1 + kind, sources])
        scored = score(self.features[0, train_i], [torch.cat(queries)], [self.features[0, held_i]], cells(args.held))
        if index == 0:
            ctx = EvalContext(
                self.images[train_i],
                self.images[fake_i],
                holdout=self.images[held_i],
                registry=self.registry,
                inception_weights=self.ctx.inception_weights,
                cache=False,
            )
            check_against_audit(ctx, scored, args.fake, self.registry, {"name": "inception"})
        return Replicate(scored, args.fake, per_kind)


def cells(held: int) -> int:
    return max(1, min(50, held // 40))  # the audit's default (plugins/privacy.py)


def check_against_audit(ctx: EvalContext, scored: Scored, n_fake: int, registry, space: dict) -> None:
    """The figures the simulation assembles equal what ``run_metrics`` reports for the same images."""
    fresh = EvalContext(  # replicates' images are not worth a disk cache
        ctx.real,
        ctx.fake[:n_fake],
        holdout=ctx.holdout,
        registry=registry,
        inception_weights=ctx.inception_weights,
        cache=False,
    )
    refs = [ComponentRef(name=m, space=space) for m in ("near_copies", "data_copying")]
    got = {k: v for r in run_metrics(refs, registry, fresh) for k, v in r.values.items()}
    picked = torch.arange(n_fake)
    mine = verdicts(scored, picked)
    assert math.isclose(got["near_copy_p"], mine["near copies: rate"], rel_tol=1e-6), (got, mine)
    assert math.isclose(got["copying_p"], mine["data copying C_T"], rel_tol=1e-6), (got, mine)


def mixture(rep: Replicate, kind: int, rate: float) -> torch.Tensor:
    copies = round(rate * rep.fresh)
    start = rep.fresh + kind * rep.per_kind
    return torch.cat([torch.arange(rep.fresh - copies), torch.arange(start, start + copies)])


# --------------------------------------------------------------------------- tables


def upper_bound(flags: int, n: int) -> float:
    """One-sided 95 % Clopper-Pearson upper bound of a rate seen as flags / n."""
    return 1.0 if flags == n else float(beta.ppf(0.95, flags + 1, n - flags))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--replicates", type=int, default=200)
    parser.add_argument("--power-replicates", type=int, default=40)
    parser.add_argument("--spaces", default="pixels")
    parser.add_argument("--train", type=int, default=1000)
    parser.add_argument("--held", type=int, default=200)
    parser.add_argument("--fake", type=int, default=500)
    parser.add_argument("--pool", type=int, default=2000, help="Inception pool: fresh images (≥ train + held + fake)")
    args = parser.parse_args()
    if "inception" in args.spaces and args.pool < args.train + args.held + args.fake:
        parser.error(f"--pool {args.pool} is smaller than --train + --held + --fake")
    sys.stdout.reconfigure(line_buffering=True)
    print(hardware_summary(torch.device("cpu")))
    print(
        f"phantom v2 at {RESOLUTION}²: {args.train} training, {args.held} held-out, {args.fake} generated images; "
        f"α = {ALPHA:g}; {args.replicates} null replicates, copies in the first {args.power_replicates}"
    )
    registry = load_registry()
    for space in args.spaces.split(","):
        pool = InceptionPool(args, registry) if space == "inception" else None
        null: list[dict[str, float]] = []
        power: dict[tuple[str, float], list[dict[str, float]]] = {}
        started = time.perf_counter()
        for i in range(args.replicates):
            with_copies = i < args.power_replicates
            rep = pool.replicate(i, with_copies) if pool else pixel_replicate(i, args, registry, with_copies)
            null.append(verdicts(rep.scored, torch.arange(args.fake)))
            for k, kind in enumerate(COPIES if with_copies else ()):
                for rate in RATES:
                    power.setdefault((kind, rate), []).append(verdicts(rep.scored, mixture(rep, k, rate)))
            if (i + 1) % 20 == 0:
                print(f"  {space}: {i + 1}/{args.replicates} replicates, {time.perf_counter() - started:.0f} s")
        print(f"\nfalse positives, {space} space, {len(null)} null replicates")
        print(f"{'test':<30} {'α':>7} {'flagged':>9} {'rate':>7} {'95 % bound':>11}")
        for test in null[0]:
            for alpha in (ALPHA, 0.01, 0.05):
                if test.startswith("old: C_T") and alpha != ALPHA:
                    continue
                flagged = sum(v[test] < alpha for v in null)
                print(
                    f"{test:<30} {alpha:>7g} {flagged:>5}/{len(null):<3} {flagged / len(null):>7.3f} "
                    f"{upper_bound(flagged, len(null)):>11.3f}"
                )
        print(f"\npower at α = {ALPHA:g}, {space} space, {args.power_replicates} replicates: flagged share")
        tests = ("near copies (verdict)", "data copying C_T", "either metric (nominal 2α)")
        print(f"{'copies':<18} {'rate':>5} " + " ".join(f"{t:>22}" for t in tests))
        for (kind, rate), rows in power.items():
            shares = [sum(v[t] < ALPHA for v in rows) / len(rows) for t in tests]
            print(f"{kind:<18} {rate:>5.0%} " + " ".join(f"{s:>22.2f}" for s in shares))


if __name__ == "__main__":
    main()
