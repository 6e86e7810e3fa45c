"""What casting each normalized weight once per update (``ganforge.layers.AutocastWeight``) changes in bf16.

    python benchmarks/autocast_casts.py [--config examples/demo.toml] [--batch 8] [--set KEY=VALUE ...]

Autocast caches its casts of leaf tensors only, so before ``AutocastWeight`` a parametrized weight
(equalized lr, spectral norm) was cast to bf16 on every call, within ``parametrize.cached()`` too.
Counted by torch's profiler over one training step (the ops do not depend on the machine): the casts
(``aten::_to_copy``) with the weight cast once per update and, as before, per call. Then what it does
to the numbers: one discriminator update's parameter gradients in bf16, both ways, against the
same gradients in fp32 (relative L2 error over all of D's parameters; the cast-once gradients sum a
weight's calls in bf16 before the cast back, as autocast does for a plain weight).
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path

import torch
from step_worker import build_trainer
from torch.nn.utils import parametrize
from torch.profiler import profile

from ganforge.layers import AutocastWeight
from ganforge.precision import hardware_summary

ROOT = Path(__file__).resolve().parents[1]


@contextlib.contextmanager
def cast_per_call() -> Iterator[None]:
    """The behaviour before: the parametrization leaves the cast to autocast (one per call)."""
    forward = AutocastWeight.forward
    AutocastWeight.forward = lambda self, weight: weight  # type: ignore[method-assign]
    try:
        yield
    finally:
        AutocastWeight.forward = forward  # type: ignore[method-assign]


def casts_per_step(trainer) -> int:
    with profile() as prof:
        trainer.train_step()
    return sum(event.count for event in prof.key_averages() if event.key == "aten::_to_copy")


def d_gradients(trainer, autocast: bool) -> torch.Tensor:
    """D's parameter gradients, flattened, of the D loss at step 0 (no update: the networks stay as built)."""
    torch.manual_seed(0)
    real = trainer.source.batch(0)
    z = torch.randn(real.shape[0], trainer.config.model.latent_dim)
    trainer.D.zero_grad(set_to_none=True)
    context = torch.autocast("cpu", dtype=torch.bfloat16) if autocast else contextlib.nullcontext()
    with context, parametrize.cached():
        pyramid = trainer.gan.connection.pyramid(real, trainer.config.model.resolutions)
        fake = [f.detach() for f in trainer.G(z)]
        loss = trainer.loss.discriminator(trainer.D, pyramid, fake)
    loss.float().backward()
    return torch.cat([p.grad.flatten() for p in trainer.D.parameters() if p.grad is not None])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=ROOT / "examples" / "demo.toml")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config overrides")
    args = parser.parse_args()
    print(hardware_summary(torch.device("cpu")))
    overrides = [f"train.batch_size={args.batch}", "train.precision=bf16", "train.collapse.every=0", *args.set]
    with tempfile.TemporaryDirectory() as folder:
        trainer = build_trainer(args.config, overrides, torch.device("cpu"), Path(folder))
        trainer.D.eval()  # no power iteration: the same effective weights for every gradient below
        trainer.G.eval()
        reference = d_gradients(trainer, autocast=False).double()
        errors = {}
        for name, mode in (("once per update", contextlib.nullcontext), ("per call (before)", cast_per_call)):
            with mode():
                grad = d_gradients(trainer, autocast=True).double()
            errors[name] = float((grad - reference).norm() / reference.norm())
        trainer.D.train()
        trainer.G.train()
        trainer.train_step()  # warm-up
        with cast_per_call():
            before = casts_per_step(trainer)
        after = casts_per_step(trainer)
    print(f"# {args.config.name}, batch {args.batch}, bf16")
    print(f"casts (aten::_to_copy) per training step: {before} per call (before), {after} once per update")
    for name, error in errors.items():
        print(f"D's gradients, bf16 cast {name}: relative L2 error against fp32 {error:.2e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
