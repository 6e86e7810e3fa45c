"""Training throughput per precision and memory layout, against the machine's matrix-multiply ceiling.

    python benchmarks/bench_train.py                  # demo widths (examples/demo.toml), 64×64, batch 16
    python benchmarks/bench_train.py --full           # full width: samgan.toml vs msggan.toml (latent 512)
    python benchmarks/bench_train.py --force-bf16     # also time bf16 on a CPU without native bf16 (slow!)

For each config and mode it prints seconds per training step (one D and one G update), images per
second, FLOPs per step (``torch.utils.flop_counter``), the achieved FLOP/s as a fraction of a
matrix-multiply ceiling measured in the same run, sampling images/second and the process's peak
memory, then the ratios the performance targets are stated in. The first line says which CPU
(instruction set, native bf16) and GPU the figures come from: they differ between machines.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from ganforge.config import load_config
from ganforge.plugins import load_registry
from ganforge.precision import cpu_has_native_bf16, hardware_summary
from ganforge.sampling import generate, latents
from ganforge.training import Trainer

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
NO_ATTENTION = ["model.generator.attention_resolutions=[]", "model.discriminator.attention_resolutions=[]"]


def matmul_ceiling(dtype: torch.dtype, device: torch.device, n: int = 2048, repeats: int = 5) -> float:
    """FLOP/s of a large square matrix product: what this device can do at best in ``dtype``."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    a @ b  # warm-up
    _sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    _sync(device)
    return 2 * n**3 * repeats / (time.perf_counter() - start)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def trainer_for(config: Path, overrides: list[str], device: torch.device, folder: Path) -> Trainer:
    cfg, registry = load_config(config, load_registry, overrides)
    return Trainer(cfg, registry, folder, device=str(device))


def measure(trainer: Trainer, steps: int) -> tuple[float, int]:
    """(seconds per step after one warm-up step, FLOPs of one step)."""
    trainer.train_step()
    with FlopCounterMode(display=False) as counter:
        trainer.train_step()
    _sync(trainer.device)
    start = time.perf_counter()
    for _ in range(steps):
        loss_d, _ = trainer.train_step()
    float(loss_d)  # one host sync at the end, as the trainer does between log lines
    _sync(trainer.device)
    return (time.perf_counter() - start) / steps, counter.get_total_flops()


def sampling_speed(trainer: Trainer, n: int = 64) -> float:
    z = latents(n, trainer.config.model.latent_dim, 0)
    start = time.perf_counter()
    for _ in generate(trainer.G_ema, z, 32, trainer.device):
        pass
    return n / (time.perf_counter() - start)


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # the process's peak so far (Linux: KB)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="full-width samgan.toml and msggan.toml")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per row (after one warm-up)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--force-bf16", action="store_true", help="time bf16 even without native hardware bf16")
    args = parser.parse_args()
    device = torch.device(args.device)
    native = device.type == "cuda" or cpu_has_native_bf16()
    common = [f"model.resolution={args.resolution}", f"train.batch_size={args.batch}", "data.size=64"]
    if args.full:
        configs = {"samgan": (EXAMPLES / "samgan.toml", []), "msggan": (EXAMPLES / "msggan.toml", [])}
    else:
        configs = {
            "samgan-demo": (EXAMPLES / "demo.toml", []),
            "demo-no-attention": (EXAMPLES / "demo.toml", NO_ATTENTION),
        }
    modes = [("fp32", False), ("fp32", True), ("bf16", False), ("bf16", True)]

    print(f"# {hardware_summary(device)}; torch {torch.__version__}")
    ceilings = {"fp32": matmul_ceiling(torch.float32, device)}
    if native or args.force_bf16:
        ceilings["bf16"] = matmul_ceiling(torch.bfloat16, device)
    print("# matmul ceiling: " + ", ".join(f"{k} {v / 1e9:.1f} GFLOP/s" for k, v in ceilings.items()))
    header = f"{'config':<18} {'mode':<16} {'s/step':>8} {'img/s':>7} {'GFLOP/step':>10} {'of ceiling':>10} "
    print(header + f"{'sample img/s':>12} {'peak MB':>8}")
    times: dict[tuple[str, str], float] = {}
    with tempfile.TemporaryDirectory() as folder:
        for name, (config, extra) in configs.items():
            for precision, channels_last in modes:
                mode = precision + ("+channels_last" if channels_last else "")
                if precision == "bf16" and not (native or args.force_bf16):
                    print(f"{name:<18} {mode:<16} {'skipped: no native bf16 on this CPU (--force-bf16 times it)':>60}")
                    continue
                overrides = [*common, *extra, f"train.precision={precision}", f"train.channels_last={channels_last}"]
                trainer = trainer_for(config, overrides, device, Path(folder) / name)
                seconds, flops = measure(trainer, args.steps)
                times[name, mode] = seconds
                fraction = flops / seconds / ceilings[precision]
                print(
                    f"{name:<18} {mode:<16} {seconds:8.3f} {args.batch / seconds:7.1f} {flops / 1e9:10.2f} "
                    f"{fraction:10.1%} {sampling_speed(trainer):12.1f} {peak_memory_mb(device):8.0f}",
                    flush=True,
                )
    attention, plain = list(configs)
    print("# targets (ratios of step times in this run)")
    if (attention, "fp32") in times and (plain, "fp32") in times:
        limit = "1.3" if args.full else "2"
        ratio = times[attention, "fp32"] / times[plain, "fp32"]
        print(f"{attention} / {plain} step time, fp32: {ratio:.2f}x (target ≤ {limit}x)")
    best = min((t, m) for (n, m), t in times.items() if n == plain)
    speedup = times[plain, "fp32"] / best[0]
    print(f"{plain}: fastest mode {best[1]}: {speedup:.2f}x the fp32 step (target ≥ 3x where bf16 is native)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
