"""How well does the discriminator see? Issue 25's diagnostics per weight-norm variant, at init and after training.

For each variant (a name and ``--set`` overrides of the config, default ``examples/demo.toml``), on
64 fixed real images and 64 fixed latents:

- **activation RMS** of D's first and last convolution outputs (and of D's score);
- **D(real)** mean ± sd;
- **scale ratio**: ‖∂D/∂x‖ at the coarsest input of the multi-scale pyramid over the finest (with
  one pyramid, the 4×4 input carries as much information as 256 pixels of the 64×64 one; a ratio of
  thousands means D barely looks at fine scales);
- **sign changes**: the share of D's pre-activation units (channel × position) whose sign is not
  the same for all 64 real images (a D that has turned nearly linear has few);
- **gradient cosine**: the mean pairwise cosine, across the 64 samples, of the gradient of G's
  loss with respect to its finest output (near 1: every latent is pushed the same way).

    .venv/bin/python benchmarks/discriminator_health.py [--steps 300] [--config examples/demo.toml]

Trains each variant ``--steps`` steps in this process (``train_step`` only: no checkpoints, samples
or evaluation). The first line says which hardware the figures come from.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from ganforge.api import load_experiment
from ganforge.images import to_float
from ganforge.precision import hardware_summary
from ganforge.training import Trainer

ROOT = Path(__file__).resolve().parents[1]
SN = "model.{net}.weight_norms=['equalized_lr', {{name = 'spectral', scale = '{scale}'}}]"
VARIANTS = {
    "sn unit (until now)": [SN.format(net=n, scale="unit") for n in ("generator", "discriminator")],
    "sn init scale": [SN.format(net=n, scale="init") for n in ("generator", "discriminator")],
    "no sn (eq-lr only)": [f"model.{n}.weight_norms=['equalized_lr']" for n in ("generator", "discriminator")],
}


def _convs(D: nn.Module) -> list[nn.Conv2d]:
    return [m for m in D.modules() if isinstance(m, nn.Conv2d)]


def measure(trainer: Trainer, real: list[torch.Tensor], z: torch.Tensor) -> dict[str, float]:
    D, G, loss = trainer.D, trainer.G, trainer.loss
    convs = _convs(D)
    outputs: dict[nn.Module, torch.Tensor] = {}
    hooks = [c.register_forward_hook(lambda m, i, o: outputs.__setitem__(m, o.detach())) for c in convs]
    D.eval()  # no power iteration while measuring
    pyramid = [x.detach().clone().requires_grad_(True) for x in real]
    score = D(pyramid)
    for h in hooks:
        h.remove()
    grads = torch.autograd.grad(score.sum(), pyramid)
    by_size = sorted(zip(pyramid, grads), key=lambda pair: pair[0].shape[-1])
    ratio = float(by_size[0][1].norm() / by_size[-1][1].norm().clamp_min(1e-30))
    pre = [outputs[c] for c in convs if outputs[c].shape[-1] > 1 or outputs[c].shape[1] > 1]
    signs = torch.cat([((o > 0).any(0) & (o <= 0).any(0)).flatten().float() for o in pre])
    with torch.no_grad():
        fake = [f.detach() for f in G(z)]
    fake = [f.clone().requires_grad_(True) for f in fake]
    g = torch.autograd.grad(loss.generator(D, real, fake), fake[-1])[0].flatten(1)
    unit = g / g.norm(dim=1, keepdim=True).clamp_min(1e-30)
    cos = unit @ unit.T
    n = len(cos)
    D.train()
    return {
        "rms first": float(outputs[convs[0]].pow(2).mean().sqrt()),
        "rms last": float(outputs[convs[-1]].pow(2).mean().sqrt()),
        "D mean": float(score.detach().mean()),
        "D sd": float(score.detach().std()),
        "scale ratio": ratio,
        "sign changes": float(signs.mean()),
        "grad cosine": float((cos.sum() - cos.diagonal().sum()) / (n * (n - 1))),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=ROOT / "examples" / "demo.toml")
    parser.add_argument("--steps", type=int, default=300, help="training steps before the second measurement")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="for every variant")
    parser.add_argument("--only", help="comma-separated variant names")
    args = parser.parse_args()
    print(hardware_summary(torch.device("cpu")), flush=True)
    names = args.only.split(",") if args.only else list(VARIANTS)
    columns = ["rms first", "rms last", "D mean", "D sd", "scale ratio", "sign changes", "grad cosine"]
    print(f"{'variant':<26} {'step':>5} " + " ".join(f"{c:>12}" for c in columns), flush=True)
    for name in names:
        config, registry = load_experiment(args.config, [*args.overrides, *VARIANTS[name], "train.precision=fp32"])
        with tempfile.TemporaryDirectory() as out:
            trainer = Trainer(config, registry, out, device="cpu")
            real = trainer.gan.connection.pyramid(to_float(trainer.data.images[:64]), config.model.resolutions)
            z = torch.randn(len(real[0]), config.model.latent_dim, generator=torch.Generator().manual_seed(1))
            start = time.perf_counter()
            for step in itertools.chain([0], [args.steps] if args.steps else []):
                while trainer.step < step:
                    trainer.train_step()
                    if trainer.step % 50 == 0:
                        print(
                            f"  step {trainer.step} ({time.perf_counter() - start:.0f} s)", file=sys.stderr, flush=True
                        )
                figures = measure(trainer, real, z)
                row = " ".join(f"{figures[c]:12.4g}" for c in columns)
                print(f"{name:<26} {trainer.step:>5} {row}", flush=True)
            print(f"{'':<26} ({time.perf_counter() - start:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
