"""Training throughput per precision and memory layout, against the machine's matrix-multiply ceiling.

    python benchmarks/bench_train.py                  # demo widths (examples/demo.toml), 64×64, batch 16
    python benchmarks/bench_train.py --full           # full width: samgan.toml vs msggan.toml (latent 512)
    python benchmarks/bench_train.py --force-bf16     # also time bf16 on a CPU without native bf16 (slow!)
    python benchmarks/bench_train.py --resolution 128 # 128×128 (an extra block, half the 64² width)
    python benchmarks/bench_train.py --ddp 2          # also: the same training run in 1 and in 2 processes

For each config and mode it prints seconds per training step (one D and one G update), images per
second, FLOPs per step (``torch.utils.flop_counter``), the achieved FLOP/s as a fraction of a
matrix-multiply ceiling measured in the same run, sampling images/second and the process's peak
memory, then the ratios the performance targets are stated in, then evaluation images/second (FID
features of real and generated images; first run and with the real features cached; needs
``ganforge inception-weights``). The first line says which CPU (instruction set, native bf16) and
GPU the figures come from: they differ between machines.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from ganforge.config import load_config
from ganforge.evaluation import EvalContext
from ganforge.inception import resolve_weights
from ganforge.plugins import load_registry
from ganforge.precision import cpu_has_native_bf16, hardware_summary, resolve
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


def evaluation_speed(trainer: Trainer, n: int) -> tuple[float, float] | None:
    """Images/second of an FID evaluation of ``n`` real + ``n`` generated images: first, then cached."""
    weights = resolve_weights()
    if weights is None:
        return None
    metric = trainer.registry.build("metric", "fid", {})
    fake = torch.cat(list(generate(trainer.G_ema, latents(n, trainer.config.model.latent_dim, 0), 32, trainer.device)))
    real = trainer.data.images[:n]
    speeds = []
    with tempfile.TemporaryDirectory() as cache:
        os.environ["GANFORGE_CACHE"] = cache
        for _ in range(2):
            start = time.perf_counter()
            metric(EvalContext(real, fake, trainer.device, weights))
            speeds.append(2 * n / (time.perf_counter() - start))
    return speeds[0], speeds[1]


def ddp_scaling(config: Path, overrides: list[str], nproc: int, steps: int, folder: Path) -> dict[int, float]:
    """Training images/second of the same run in 1 and in ``nproc`` processes (torchrun, gloo on CPU)."""
    speeds = {}
    for procs in (1, nproc):
        out = folder / f"ddp{procs}"
        sets = [f"--set={o}" for o in [*overrides, f"train.log_every={steps}"]]
        command = [sys.executable, "-m", "ganforge", "build", str(config), "--out", str(out), "--steps", str(steps)]
        command += [*sets, "--no-eval", "--overwrite", "--nproc", str(procs)]
        subprocess.run(command, check=True, capture_output=True)
        log = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        speeds[procs] = log[-1]["images_per_second"]
    return speeds


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
    parser.add_argument("--eval-images", type=int, default=128, help="real and generated images per evaluation")
    parser.add_argument("--ddp", type=int, default=0, metavar="N", help="also time a run in N processes vs 1")
    args = parser.parse_args()
    device = torch.device(args.device)
    native = device.type == "cuda" or cpu_has_native_bf16()
    common = [f"model.resolution={args.resolution}", f"train.batch_size={args.batch}", "data.size=64"]
    if args.resolution > 64:  # one more block per doubling, at half the width of the one before
        width = 128 if args.full else 8
        common += [f"model.{net}.channels.{args.resolution}={width}" for net in ("generator", "discriminator")]
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
    auto = resolve("auto", device)
    if (plain, auto) in times:
        default = times[plain, "fp32"] / times[plain, auto]
        print(f"{plain}: default precision (auto = {auto} here): {default:.2f}x the fp32 step (target: never slower)")
    with tempfile.TemporaryDirectory() as folder:
        trainer = trainer_for(configs[attention][0], common, device, Path(folder))
        speeds = evaluation_speed(trainer, args.eval_images)
        if speeds is None:
            print("# evaluation: skipped (no Inception weights: run `ganforge inception-weights`)")
        else:
            print(
                f"# evaluation (FID, {args.eval_images} real + {args.eval_images} generated, {args.resolution}²): "
                f"{speeds[0]:.1f} img/s first, {speeds[1]:.1f} img/s with the real features cached"
            )
        if args.ddp > 1:
            config, extra = configs[attention]
            scaling = ddp_scaling(config, [*common, *extra], args.ddp, 2 + args.steps, Path(folder))
            print(
                f"# DDP ({attention}, fp32, global batch {args.batch}): {scaling[1]:.1f} img/s in 1 process, "
                f"{scaling[args.ddp]:.1f} in {args.ddp} ({scaling[args.ddp] / scaling[1]:.2f}x)"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
