"""Time training steps of one config, in this process or as a worker for another checkout's code.

``bench_train.py --baseline REV`` runs this file in a subprocess whose ``PYTHONPATH`` is a copy of
revision REV, so REV's trainer is timed in the same interleaved rounds as today's. It therefore
uses only what every revision has (``load_config``, ``load_registry``, ``Trainer.train_step``).
Protocol: one JSON line of arguments on the command line; ``ready`` once built and warmed up; then
for each ``run`` line on stdin, the seconds per step of ``steps`` timed steps.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch

from ganforge.config import load_config
from ganforge.plugins import load_registry
from ganforge.training import Trainer


def build_trainer(config: Path, overrides: list[str], device: torch.device, folder: Path) -> Trainer:
    cfg, registry = load_config(config, load_registry, overrides)
    return Trainer(cfg, registry, folder, device=str(device))


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_steps(trainer: Trainer, steps: int) -> float:
    """Seconds per step over ``steps`` steps, with one host sync at the end as the trainer's loop does."""
    sync(trainer.device)
    start = time.perf_counter()
    for _ in range(steps):
        loss_d, _ = trainer.train_step()
    float(loss_d)
    sync(trainer.device)
    return (time.perf_counter() - start) / steps


def main() -> int:
    args = json.loads(sys.argv[1])
    device = torch.device(args["device"])
    trainer = build_trainer(Path(args["config"]), args["overrides"], device, Path(args["folder"]))
    for _ in range(args["warmup"]):
        trainer.train_step()
    print("ready", flush=True)
    for line in sys.stdin:
        if line.strip() == "run":
            print(timed_steps(trainer, args["steps"]), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
