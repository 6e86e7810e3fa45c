"""Which evaluation keeps ``generator_best.safetensors``: the figure ``eval.best`` names, lowest or highest.

A figure is named as its metric reports it (``fid``, ``kid_mean``, ``ms_ssim``) or, where two
metrics report the same name, with its metric's label (``fid.fid``, ``"ms_ssim(protocol=saad2022).ms_ssim"``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .config import EvalConfig


@dataclass
class Best:
    """The figure that picks the best generator, its direction and the best value so far."""

    figure: str = "fid"
    lowest: bool = True  # FID, KID: lower is better
    value: float | None = None

    @classmethod
    def of(cls, ev: EvalConfig, value: float | None = None) -> Best:
        return cls(ev.best, ev.best_mode == "min", value)

    def find(self, record: Mapping[str, Any]) -> float | None:
        """The figure in an evaluation record (``metrics.jsonl``'s ``eval``), or None when no metric reports it."""
        metrics: Mapping[str, Mapping[str, float]] = record["metrics"]
        for label, values in metrics.items():
            if self.figure in values:
                return float(values[self.figure])
            if self.figure.startswith(f"{label}.") and self.figure[len(label) + 1 :] in values:
                return float(values[self.figure[len(label) + 1 :]])
        return None

    def improves(self, value: float) -> bool:
        if self.value is None:
            return True
        return value < self.value if self.lowest else value > self.value

    def offer(self, record: Mapping[str, Any]) -> float | None:
        """The record's figure when it beats the best so far (which it then becomes), else None."""
        value = self.find(record)
        if value is None or not self.improves(value):
            return None
        self.value = value
        return value

    def metadata(self) -> dict[str, Any]:
        """What ``generator_best.safetensors`` says about why it was kept."""
        return {
            "ganforge.best_figure": self.figure,
            "ganforge.best_value": self.value,
            "ganforge.best_mode": ("min" if self.lowest else "max"),
        }
