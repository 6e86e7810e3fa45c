"""Divergence: non-finite values, and blow-ups that stay finite; noticed without a host sync per step.

Every step records on the device, for its two losses and two gradient norms, whether they were
finite and whether they jumped to more than :data:`JUMP` times their running level (a trailing
average of their log10, kept from the steps that were sound), and whether the generator's images
were saturated (:data:`SATURATED` of the batch's pixels at or beyond ±1: a PNG of flat black or
white). With ``lr = 1e6`` the losses jump by 10⁹ on the second step, while ordinary training
stays within 10× of its running level (measured on the tiny and demo configs).

A checkpoint stores weights updated by the last step, whose figures only the next step would
show; so before each checkpoint :meth:`DivergenceCheck.probe` looks at that state itself (its
losses on the last batch, and the images of G and of the EMA generator) and a blown-up state
never replaces the last good checkpoint.

The trainer calls :meth:`DivergenceCheck.check` only where it synchronises anyway (logging,
sample grids, evaluation, checkpoints). With ``train.on_nonfinite = "skip"`` a step whose D or G
update would be non-finite is skipped instead (one sync per step); after
:data:`MAX_CONSECUTIVE_SKIPS` skipped steps in a row training stops all the same. Blow-ups that
stay finite stop training in both modes: their update has already been applied.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .errors import TrainingStopped
from .kinds import Loss
from .precision import Precision

WHAT = ("loss_d", "loss_g", "the discriminator's gradient norm", "the generator's gradient norm")
MAX_CONSECUTIVE_SKIPS = 100
JUMP = 1e4  # a loss or gradient norm this many times its running level has blown up
FLOOR = 1.0  # values below it carry no scale: a jump means beyond JUMP × max(level, 1)
SATURATED = 0.99  # share of pixels at or beyond ±1 that makes a batch of images flat black/white
LEVEL_DECAY = 0.95  # of the running level's trailing average
HINT = 'lower optim.lr, or set train.on_nonfinite = "skip" to skip such steps'
_NONFINITE, _JUMPED, _SATURATED, _PROBE = 0, 4, 8, 9  # bit offsets of the flag's causes


def gradient_norm(module: nn.Module) -> torch.Tensor:
    """The total 2-norm of ``module``'s gradients (inf/nan when any gradient is); a 0-dim device tensor."""
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    if not grads:
        return torch.zeros(())
    return torch.nn.utils.get_total_norm(grads, foreach=True)


def saturation(images: torch.Tensor) -> torch.Tensor:
    """The share of ``images``' values at or beyond ±1 (what a PNG shows as pure black or white); 0-dim."""
    return (images.detach().float().abs() >= 1).float().mean()


class DivergenceCheck:
    """Remembers, on ``device``, the first step whose figures were not finite, blew up or saturated."""

    def __init__(self, device: torch.device, mode: str = "stop"):
        self.mode = mode
        self.first_bad = torch.full((), -1, dtype=torch.long, device=device)
        self.bad_what = torch.zeros((), dtype=torch.long, device=device)
        self.bad_values = torch.zeros(5, device=device)  # the four figures and the saturation then
        self.bad_levels = torch.zeros(4, device=device)  # their running levels (log10) then
        self.level = torch.zeros(4, device=device)
        self.seen = torch.zeros(4, dtype=torch.long, device=device)
        self._bits = 2 ** torch.arange(4, device=device)
        self.consecutive_skips = 0
        self.skipped = 0

    def _flags(self, values: torch.Tensor, saturated: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        finite = torch.isfinite(values)
        log = torch.log10(values.abs().clamp(min=FLOOR))
        jumped = finite & (self.seen > 0) & (log - self.level > math.log10(JUMP))
        code = ((~finite).long() * self._bits).sum() + (jumped.long() * self._bits).sum() * 2**_JUMPED
        code = code + (saturated >= SATURATED).long() * 2**_SATURATED
        return code, finite & ~jumped

    def _remember(self, step: int, code: torch.Tensor, values: torch.Tensor, saturated: torch.Tensor) -> None:
        new = (code > 0) & (self.first_bad < 0)
        self.first_bad = torch.where(new, step, self.first_bad)
        self.bad_what = torch.where(new, code, self.bad_what)
        self.bad_values = torch.where(new, torch.cat([values, saturated.reshape(1)]), self.bad_values)
        self.bad_levels = torch.where(new, self.level, self.bad_levels)

    @staticmethod
    def _stack(*figures: torch.Tensor, device: torch.device) -> torch.Tensor:
        return torch.stack([v.detach().float().to(device) for v in figures])

    def record(
        self,
        step: int,
        loss_d: torch.Tensor,
        loss_g: torch.Tensor,
        grad_d: torch.Tensor,
        grad_g: torch.Tensor,
        images: torch.Tensor | None = None,
    ) -> None:
        """Fold this step's figures (and the saturation of its generated ``images``) into the flag (no sync)."""
        device = self.first_bad.device
        values = self._stack(loss_d, loss_g, grad_d, grad_g, device=device)
        saturated = saturation(images).to(device) if images is not None else torch.zeros((), device=device)
        code, sound = self._flags(values, saturated)
        self._remember(step, code, values, saturated)
        log = torch.log10(values.abs().clamp(min=FLOOR))
        trailing = torch.where(self.seen > 0, LEVEL_DECAY * self.level + (1 - LEVEL_DECAY) * log, log)
        self.level = torch.where(sound, trailing, self.level)
        self.seen = self.seen + sound.long()

    def probe(self, step: int, loss_d: torch.Tensor, loss_g: torch.Tensor, *images: torch.Tensor) -> None:
        """Judge the state about to be checkpointed: its losses on the last batch and its ``images``."""
        device = self.first_bad.device
        values = self._stack(loss_d, loss_g, torch.zeros(()), torch.zeros(()), device=device)
        saturated = torch.stack([saturation(x).to(device) for x in images]).max()
        code, _ = self._flags(values, saturated)
        self._remember(step, torch.where(code > 0, code + 2**_PROBE, code), values, saturated)

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
        """Raise :class:`TrainingStopped` if any step so far diverged (one sync).

        In ``skip`` mode non-finite steps were skipped, so only blow-ups and saturation count.
        """
        step = int(self.first_bad)
        if step < 0:
            return
        code = int(self.bad_what)
        if self.mode == "skip" and code < 2**_JUMPED:
            return
        kept = (
            f"the last checkpoint (step {last_checkpoint}) is untouched"
            if last_checkpoint is not None
            else "nothing was saved"
        )
        raise TrainingStopped(f"step {step}: {self._describe(code)}; training stopped, {kept}; {HINT}")

    def _describe(self, code: int) -> str:
        values, levels = self.bad_values.tolist(), self.bad_levels.tolist()
        where = "the weights about to be checkpointed: " if code >> _PROBE & 1 else ""
        nonfinite = [WHAT[i] for i in range(4) if code >> (_NONFINITE + i) & 1]
        if nonfinite:
            return (
                where + " and ".join(nonfinite) + (" are" if len(nonfinite) > 1 else " is") + " not finite (nan or inf)"
            )
        jumped = [i for i in range(4) if code >> (_JUMPED + i) & 1]
        if jumped:
            i = jumped[0]
            return (
                f"{where}{WHAT[i]} jumped to {values[i]:.3g}, over {JUMP:,.0f}× its running level "
                f"({10 ** levels[i]:.3g}): training blew up although the values are finite"
            )
        return (
            f"{where}the generator's images are saturated ({100 * values[4]:.1f} % of pixels at ±1: flat black "
            "or white): training blew up although the values are finite"
        )


def probe_state(
    G: nn.Module,
    G_ema: nn.Module,
    D: nn.Module,
    loss: Loss,
    precision: Precision,
    real: list[torch.Tensor],
    z: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The losses of the current weights on the last batch and their images (G's, the EMA's), for
    :meth:`DivergenceCheck.probe` before a checkpoint.

    In training mode, as the next step would see them (eval-mode spectral norm, with its stale
    vectors, hides a blow-up); the buffers that forward passes update (spectral norm's vectors)
    are put back afterwards, so the probe changes nothing that is saved or trained.
    """
    buffers = [b for net in (G, D) for b in net.buffers()]
    kept = [b.clone() for b in buffers]
    try:
        with torch.no_grad(), precision.autocast():
            fake, ema = G(z), G_ema(z)[-1]
        with precision.autocast():  # gradient penalties differentiate D with respect to its input
            loss_d = loss.discriminator(D, real, fake).detach()
            loss_g = loss.generator(D, real, fake).detach()
    finally:
        if buffers:  # the foreach kernels refuse empty lists
            with torch.no_grad():
                torch._foreach_copy_(buffers, kept)
    return loss_d, loss_g, fake[-1], ema
