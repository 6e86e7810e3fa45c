"""Training throughput per precision and memory layout, timed in interleaved rounds.

    python benchmarks/bench_train.py                  # demo widths (examples/demo.toml), 64×64, batch 16
    python benchmarks/bench_train.py --full           # full width: samgan.toml vs msggan.toml (latent 512)
    python benchmarks/bench_train.py --baseline main  # also time revision main's fp32 step (a git archive)
    python benchmarks/bench_train.py --modes fp32,bf16+channels_last --rounds 8 --steps 2
    python benchmarks/bench_train.py --resolution 128 # 128×128 (an extra block, half the 64² width)
    python benchmarks/bench_train.py --ddp 2          # also: the same training run in 1 and in 2 processes

Every (config, mode) is built once; then each round times ``--steps`` training steps (one D and one
G update each) of every one of them, in alternating order (A B C … then … C B A), so that load
drift on a shared machine falls on all modes alike. It prints, per row, the median seconds per
step and the range over rounds, images per second, FLOPs per step (``torch.utils.flop_counter``)
and the achieved FLOP/s as a fraction of a matrix-multiply ceiling measured in the same run; the
load average before and after; then the ratios the performance targets are stated in (each a
ratio of medians), then evaluation images/second (FID features; needs ``ganforge inception-weights``).
``--baseline REV`` times REV's code in a worker process (``step_worker.py``) inside the same rounds.
The demo rows run without R1 (it costs one step in 16, which a few timed steps would catch or miss).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import tomllib
import torch
from step_worker import build_trainer, sync, timed_steps
from torch.utils.flop_counter import FlopCounterMode

from ganforge.evaluation import EvalContext
from ganforge.inception import resolve_weights
from ganforge.precision import cpu_has_native_bf16, hardware_summary
from ganforge.sampling import generate, latents
from ganforge.timing import interleaved, load_average
from ganforge.training import Trainer

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
NO_ATTENTION = ["model.generator.attention_resolutions=[]", "model.discriminator.attention_resolutions=[]"]
KV_POOL = ["model.generator.attention.pool=2", "model.discriminator.attention.pool=2"]  # BigGAN's keys and values
PAPER_ATTENTION = ["model.generator.attention.pool=1", "model.discriminator.attention.pool=1"]  # every key
MODES = ("fp32", "fp32+channels_last", "bf16", "bf16+channels_last", "auto")


def pools_attention(config: Path) -> bool:
    """Whether a config file itself sets ``attention.pool`` other than 1 (a baseline revision's may not know it)."""
    model = tomllib.loads(config.read_text()).get("model", {})
    tables = [model.get(net, {}).get("attention") for net in ("generator", "discriminator")]
    return any(isinstance(table, dict) and table.get("pool", 1) != 1 for table in tables)


@dataclass(frozen=True)
class Row:
    config: str
    mode: str  # a MODES entry, or "REV fp32" for the baseline revision

    @property
    def label(self) -> str:
        return f"{self.config:<18} {self.mode:<20}"


def mode_overrides(mode: str) -> list[str]:
    """``auto`` leaves the layout unset: auto chooses it too."""
    precision, _, layout = mode.partition("+")
    return [f"train.precision={precision}"] + ([] if mode == "auto" else [f"train.channels_last={bool(layout)}"])


def matmul_ceiling(dtype: torch.dtype, device: torch.device, n: int = 2048, repeats: int = 5) -> float:
    """FLOP/s of a large square matrix product: what this device can do at best in ``dtype``."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    a @ b  # warm-up
    sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    sync(device)
    return 2 * n**3 * repeats / (time.perf_counter() - start)


def warm_up(trainer: Trainer) -> int:
    """Two untimed steps (kernels chosen, caches filled); the FLOPs of the second."""
    trainer.train_step()
    with FlopCounterMode(display=False) as counter:
        trainer.train_step()
    return counter.get_total_flops()


class Baseline:
    """Another revision's trainer in a worker process, timed on request."""

    def __init__(self, tree: Path, config: Path, overrides: list[str], device: torch.device, steps: int, folder: Path):
        args = {"config": str(tree / config.relative_to(ROOT)), "overrides": overrides, "device": str(device)}
        args |= {"folder": str(folder), "steps": steps, "warmup": 2}
        env = {**os.environ, "PYTHONPATH": str(tree)}
        worker = [sys.executable, str(Path(__file__).with_name("step_worker.py")), json.dumps(args)]
        self.process = subprocess.Popen(
            worker, cwd=tree, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        self._expect("ready")

    def _expect(self, what: str) -> str:
        assert self.process.stdout is not None
        line = self.process.stdout.readline().strip()
        if not line or (what and line != what):
            raise RuntimeError(f"baseline worker stopped (exit {self.process.poll()}); its stderr says why")
        return line

    def __call__(self) -> float:
        assert self.process.stdin is not None
        self.process.stdin.write("run\n")
        self.process.stdin.flush()
        return float(self._expect(""))

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        self.process.wait()


def checkout(revision: str, into: Path) -> Path:
    """``revision``'s tracked files in ``into``, importable as it was (``ganforge_plugins`` is ``plugins/``)."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", revision], check=True, capture_output=True).stdout
    into.mkdir()
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    (into / "ganforge_plugins").symlink_to("plugins")
    return into


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


def ratio(times: dict[Row, float], a: Row, b: Row, what: str, target: str) -> None:
    if a in times and b in times:
        print(f"{what}: {times[a] / times[b]:.2f}x ({target})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="full-width samgan.toml and msggan.toml")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--modes", default=",".join(MODES), help=f"comma-separated, of {', '.join(MODES)}")
    parser.add_argument("--rounds", type=int, default=6, help="interleaved rounds (A B … B A)")
    parser.add_argument("--steps", type=int, default=2, help="timed steps per row and round (after two warm-up)")
    parser.add_argument("--only", metavar="NAMES", help="comma-separated configs of the table (default: all)")
    parser.add_argument("--baseline", metavar="REV", help="also time REV's fp32 step (a git revision)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--force-bf16", action="store_true", help="time bf16 even without native hardware bf16")
    parser.add_argument("--eval-images", type=int, default=128, help="real and generated images per evaluation")
    parser.add_argument("--peak", type=float, metavar="TFLOPS", help="the device's bf16 peak: adds an 'of peak' column")
    parser.add_argument("--ddp", type=int, default=0, metavar="N", help="also time a run in N processes vs 1")
    args = parser.parse_args()
    device = torch.device(args.device)
    native = device.type == "cuda" or cpu_has_native_bf16()
    modes = args.modes.split(",")
    if unknown := [m for m in modes if m not in MODES]:
        parser.error(f"--modes: {', '.join(unknown)} not among {', '.join(MODES)}")
    common = [f"model.resolution={args.resolution}", f"train.batch_size={args.batch}", "data.size=64"]
    if args.resolution > 64:  # one more block per doubling, at half the width of the one before
        width = 128 if args.full else 8
        common += [f"model.{net}.channels.{args.resolution}={width}" for net in ("generator", "discriminator")]
    if args.full:
        samgan = EXAMPLES / "samgan.toml"
        configs = {"samgan": (samgan, []), "msggan": (EXAMPLES / "msggan.toml", []), "samgan-pool2": (samgan, KV_POOL)}
    else:
        demo = EXAMPLES / "demo.toml"
        configs = {
            "samgan-demo": (demo, ["regularize=[]", *PAPER_ATTENTION]),  # the demo pools since 2026-12-03
            "demo-no-attention": (demo, ["regularize=[]", *NO_ATTENTION]),
            "samgan-demo-pool2": (demo, ["regularize=[]", *KV_POOL]),
        }
    attention, plain, pooled = list(configs)  # the paper's, without attention, BigGAN's pooled keys and values
    if args.only:
        configs = {name: configs[name] for name in args.only.split(",") if name in configs}

    print(f"# {hardware_summary(device)}; torch {torch.__version__}; load average {load_average()}")
    ceilings = {"fp32": matmul_ceiling(torch.float32, device)}
    if native or args.force_bf16:
        ceilings["bf16"] = matmul_ceiling(torch.bfloat16, device)
    print("# matmul ceiling: " + ", ".join(f"{k} {v / 1e9:.1f} GFLOP/s" for k, v in ceilings.items()))
    runs, flops, chosen, baselines = {}, {}, {}, []
    with tempfile.TemporaryDirectory() as folder:
        tree = checkout(args.baseline, Path(folder) / "baseline") if args.baseline else None
        for name, (config, extra) in configs.items():
            for mode in modes:
                if mode.startswith("bf16") and not (native or args.force_bf16):
                    print(f"# {name} {mode}: skipped, no native bf16 on this CPU (--force-bf16 times it)")
                    continue
                trainer = build_trainer(config, [*common, *extra, *mode_overrides(mode)], device, Path(folder) / name)
                row = Row(name, mode)
                flops[row] = warm_up(trainer)
                runs[row] = lambda trainer=trainer: timed_steps(trainer, args.steps)
                if mode == "auto":
                    layout = "+channels_last" if trainer.precision.channels_last else ""
                    chosen[name] = trainer.precision.mode + layout
            if tree is not None and name != pooled:  # the baseline revision may not have the pooled variant
                if not pools_attention(tree / config.relative_to(ROOT)):  # it attends to every key anyway,
                    extra = [o for o in extra if o not in PAPER_ATTENTION]  # and may predate `pool`
                overrides = [*common, *extra, *mode_overrides("fp32")]
                baseline = Baseline(tree, config, overrides, device, args.steps, Path(folder) / f"baseline-{name}")
                baselines.append(baseline)
                runs[Row(name, f"{args.baseline} fp32")] = baseline
        timings = interleaved(runs, args.rounds)
        for baseline in baselines:
            baseline.close()

    print(f"# {args.rounds} interleaved rounds of {args.steps} steps; load average after: {load_average()}")
    peak = f" {'of peak':>8}" if args.peak else ""
    head = f"{'config':<18} {'mode':<20} {'s/step':>8} {'range':>15} {'img/s':>7} {'GFLOP/step':>10}"
    print(f"{head} {'of ceiling':>10}{peak}")
    times = {row: timing.median for row, timing in timings.items()}
    for row, timing in timings.items():
        work = f"{'—':>10} {'—':>10}"
        if row in flops:
            precision = chosen.get(row.config, "fp32") if row.mode == "auto" else row.mode
            ceiling = ceilings[precision.split("+")[0]]
            work = f"{flops[row] / 1e9:10.2f} {flops[row] / timing.median / ceiling:10.1%}"
            if args.peak:
                work += f" {flops[row] / timing.median / (args.peak * 1e12):8.1%}"
        spread = f"{timing.low:7.3f}–{timing.high:<7.3f}"
        print(f"{row.label} {timing.median:8.3f} {spread} {args.batch / timing.median:7.1f} {work}")
    print("# targets (ratios of median step times in this run)")
    for name in configs:
        if name in chosen:
            print(f"# {name}: auto chose {chosen[name]}")
        ratio(times, Row(name, "auto"), Row(name, "fp32"), f"{name} auto / fp32", "target: ≤ 1, never slower")
    limit = "1.3" if args.full else "1.6"
    for mode in modes:
        ratio(times, Row(attention, mode), Row(plain, mode), f"{attention} / {plain}, {mode}", f"target ≤ {limit}x")
        ratio(times, Row(pooled, mode), Row(plain, mode), f"{pooled} / {plain}, {mode}", "BigGAN's pooled variant")
        if args.baseline:
            base = f"{args.baseline} fp32"
            for name in configs:
                ratio(times, Row(name, mode), Row(name, base), f"{name} {mode} / {base}", "target ≤ 0.55x")
    with tempfile.TemporaryDirectory() as folder:
        trainer = build_trainer(
            EXAMPLES / ("samgan.toml" if args.full else "demo.toml"),
            [*common, "train.precision=fp32"],
            device,
            Path(folder),
        )
        speeds = evaluation_speed(trainer, args.eval_images)
        if speeds is None:
            print("# evaluation: skipped (no Inception weights: run `ganforge inception-weights`)")
        else:
            print(
                f"# evaluation (FID, {args.eval_images} real + {args.eval_images} generated, {args.resolution}²): "
                f"{speeds[0]:.1f} img/s first, {speeds[1]:.1f} img/s with the real features cached"
            )
        if args.ddp > 1:
            config, extra = configs.get(attention, (EXAMPLES / "demo.toml", []))
            scaling = ddp_scaling(config, [*common, *extra], args.ddp, 2 + args.steps, Path(folder))
            print(
                f"# DDP ({attention}, fp32, global batch {args.batch}): {scaling[1]:.1f} img/s in 1 process, "
                f"{scaling[args.ddp]:.1f} in {args.ddp} ({scaling[args.ddp] / scaling[1]:.2f}x)"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
