"""Time and memory of the privacy audit's nearest-neighbour search (chunked matrix products).

    python benchmarks/audit_neighbours.py                # 1k, 10k vs 10k, 10k vs 112k; 2048-d; CPU or CUDA
    python benchmarks/audit_neighbours.py --dim 1024 --rows 1000x1000 100000x100000

Each row: generated × training features (random, float32), seconds for the search, the process's
peak resident memory after it (rows run from small to large, so the figure is that row's peak)
and on CUDA the peak device memory. The features held in memory are part of the peak: 112,000 ×
2,048 float32 is 0.9 GB; the search itself adds one block of 2,048 × 16,384 distances (128 MiB).
"""

from __future__ import annotations

import argparse
import resource
import time

import torch

from ganforge.audit.neighbours import nearest
from ganforge.precision import hardware_summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dim", type=int, default=2048, help="feature size (Inception pool: 2048)")
    parser.add_argument("--rows", nargs="+", default=["1000x1000", "10000x10000", "10000x112000"])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    print(f"# {hardware_summary(device)}")
    print(f"{'generated':>10} {'training':>10} {'seconds':>9} {'peak RSS MB':>12} {'peak GPU MB':>12}")
    g = torch.Generator().manual_seed(0)
    for row in args.rows:
        n, m = (int(x) for x in row.split("x"))
        queries, refs = torch.randn(n, args.dim, generator=g), torch.randn(m, args.dim, generator=g)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
            nearest(queries[:10], refs[:10], device)  # warm-up (CUDA context, kernels)
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        nearest(queries, refs, device)
        seconds = time.perf_counter() - start
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        gpu = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else float("nan")
        print(f"{n:>10} {m:>10} {seconds:>9.2f} {rss:>12.0f} {gpu:>12.0f}")


if __name__ == "__main__":
    main()
