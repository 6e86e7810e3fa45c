"""Write copies of a run's training images as PNGs: a positive control for the privacy audit.

    python scripts/plant_copies.py runs/demo planted/ -n 200
    ganforge audit runs/demo --fake planted/      # must be flagged

A quarter each exact, mirrored, lightly noised and shifted by one pixel
(:func:`ganforge.audit.controls.planted_copies`); ``sources.csv`` says which training image each
file copies (its index in the run's training part) and how.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ganforge.audit.controls import KINDS, planted_copies
from ganforge.audit.run import run_split
from ganforge.checkpoint import atomic_write
from ganforge.config import load_config
from ganforge.images import save_png
from ganforge.plugins import load_registry
from ganforge.rundir import CONFIG_FILE


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("-n", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    config, registry = load_config(args.run / CONFIG_FILE, load_registry)
    train = run_split(args.run, config, registry).train.images
    copies, sources = planted_copies(train, args.n, args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    rows = ["file,training_index,kind"]
    for i, (image, source) in enumerate(zip(copies, sources)):
        kind = KINDS[min(i // (args.n // 4), 3)] if args.n >= 4 else KINDS[3]
        save_png(image, args.out / f"copy_{i:05d}.png")
        rows.append(f"copy_{i:05d}.png,{int(source)},{kind}")
    atomic_write(args.out / "sources.csv", "\n".join(rows) + "\n")
    print(f"{args.n} copies of {args.run}'s training images in {args.out}")


if __name__ == "__main__":
    main()
