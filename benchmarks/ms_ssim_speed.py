"""MS-SSIM throughput at 64×64 on this machine: pytorch-msssim as shipped vs ganforge's call.

ganforge computes MS-SSIM with pytorch-msssim's own per-scale SSIM, with oneDNN switched off
around the call (its grouped one-channel convolution is slow on CPUs) and in batches of 512.
pytorch-msssim's default 5-scale, 11-px variant refuses 64×64 images, so both sides use the
variant that fits: ganforge's automatic 3 scales (11-px window), and for a like-for-like check
the library's 5 scales with a 3-px window.

    .venv/bin/python benchmarks/ms_ssim_speed.py [pairs]
"""

import sys
import time

import torch
from ganforge_plugins.metrics import ms_ssim
from pytorch_msssim import ms_ssim as library_ms_ssim

PAIRS = int(sys.argv[1]) if len(sys.argv) > 1 else 4096
BATCH = 512


def rate(fn) -> float:
    fn(x[:BATCH], y[:BATCH])  # warm-up
    start = time.perf_counter()
    for i in range(0, PAIRS, BATCH):
        fn(x[i : i + BATCH], y[i : i + BATCH])
    return PAIRS / (time.perf_counter() - start)


torch.manual_seed(0)
x = torch.rand(PAIRS, 1, 64, 64) * 255
y = (0.5 * x + 0.5 * torch.rand(PAIRS, 1, 64, 64) * 255).round()
print(f"MS-SSIM at 64×64, {PAIRS} pairs, batches of {BATCH}, {torch.get_num_threads()} threads")
print(f"{'variant':<34} {'pytorch-msssim':>16} {'ganforge':>10}")
lib = rate(lambda a, b: library_ms_ssim(a, b, win_size=3, size_average=False))
ours = rate(lambda a, b: ms_ssim(a, b, scales=5, win_size=3))
print(f"{'5 scales, 3-px window':<34} {lib:>12.0f}/s {ours:>8.0f}/s")
ours3 = rate(lambda a, b: ms_ssim(a, b, scales=3, win_size=11))
print(f"{'3 scales, 11-px window (default)':<34} {'(refused)':>14} {ours3:>8.0f}/s")
same = (library_ms_ssim(x[:64], y[:64], win_size=3, size_average=False) - ms_ssim(x[:64], y[:64], 5, 3)).abs().max()
print(f"largest difference between the two on the same pairs: {same:.2e}")
