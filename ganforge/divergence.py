"""Non-finite losses and gradients: noticed without a host sync per step, never saved.

With ``train.on_nonfinite = "stop"`` (the default) every step records on the device whether its
losses and gradient norms were finite, and the first bad step; the trainer calls :meth:`check`
only where it synchronises anyway (logging, sample grids, evaluation, checkpoints), so a
diverged state is never written over the last good checkpoint. With ``"skip"`` a step whose D or
G update would be non-finite is skipped instead, which needs one sync per step; after
:data:`MAX_CONSECUTIVE_SKIPS` skipped steps in a row training stops all the same.
"""

from __future__ import annotations

import torch
from torch import nn

from .errors import TrainingStopped

WHAT = ("loss_d", "loss_g", "the discriminator's gradient", "the generator's gradient")
MAX_CONSECUTIVE_SKIPS = 100
HINT = 'lower optim.lr, or set train.on_nonfinite = "skip" to skip such steps'


def gradient_norm(module: nn.Module) -> torch.Tensor:
    """The total 2-norm of ``module``'s gradients (inf/nan when any gradient is); a 0-dim device tensor."""
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    if not grads:
        return torch.zeros(())
    return torch.nn.utils.get_total_norm(grads, foreach=True)


class FiniteCheck:
    """Remembers, on ``device``, the first step whose losses or gradients were not finite."""

    def __init__(self, device: torch.device, mode: str = "stop"):
        self.mode = mode
        self.first_bad = torch.full((), -1, dtype=torch.long, device=device)
        self.bad_what = torch.zeros((), dtype=torch.long, device=device)
        self._bits = torch.tensor([1, 2, 4, 8], device=device)
        self.consecutive_skips = 0
        self.skipped = 0

    def record(self, step: int, loss_d: torch.Tensor, loss_g: torch.Tensor, grad_d: torch.Tensor, grad_g: torch.Tensor):
        """Fold this step's four figures into the device-side flag (no sync)."""
        values = torch.stack([v.detach().float().to(self.first_bad.device) for v in (loss_d, loss_g, grad_d, grad_g)])
        code = ((~torch.isfinite(values)).long() * self._bits).sum()
        new = (code > 0) & (self.first_bad < 0)
        self.first_bad = torch.where(new, step, self.first_bad)
        self.bad_what = torch.where(new, code, self.bad_what)

    def allows(self, loss: torch.Tensor, grad: torch.Tensor) -> bool:
        """In ``skip`` mode: may this update be applied? (one sync). Always True in ``stop`` mode."""
        if self.mode != "skip":
            return True
        return bool(torch.isfinite(loss.detach()) & torch.isfinite(grad))

    def count(self, skipped: bool, step: int) -> None:
        """Count a skipped step (``skip`` mode); too many in a row stop training."""
        self.consecutive_skips = self.consecutive_skips + 1 if skipped else 0
        self.skipped += int(skipped)
        if self.consecutive_skips >= MAX_CONSECUTIVE_SKIPS:
            raise TrainingStopped(
                f"step {step}: {MAX_CONSECUTIVE_SKIPS} steps in a row had a non-finite loss or gradient and were "
                "skipped; training stopped, the last checkpoint is untouched (lower optim.lr)"
            )

    def check(self, last_checkpoint: int | None) -> None:
        """Raise :class:`TrainingStopped` if any step so far was not finite (``stop`` mode; one sync)."""
        if self.mode == "skip":
            return
        step = int(self.first_bad)
        if step < 0:
            return
        code = int(self.bad_what)
        bad = [name for bit, name in enumerate(WHAT) if code >> bit & 1]
        what = " and ".join(bad) + (" are" if len(bad) > 1 else " is")
        kept = (
            f"the last checkpoint (step {last_checkpoint}) is untouched"
            if last_checkpoint is not None
            else "nothing was saved"
        )
        raise TrainingStopped(f"step {step}: {what} not finite (nan or inf); training stopped, {kept}; {HINT}")
