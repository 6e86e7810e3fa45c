"""Tracking for single runs: TensorBoard opt-in (harmless when missing), plain progress lines, plots."""

from __future__ import annotations

import builtins

from click.testing import CliRunner

from ganforge.cli import main
from ganforge.config import load_config
from ganforge.plugins import load_registry
from ganforge.tracking import FOLDER
from ganforge.training import Trainer


def test_tensorboard_logs_scalars_grids_and_the_config(tiny_path, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    config, registry = load_config(tiny_path, load_registry, ["train.tensorboard=true"])
    Trainer(config, registry, tmp_path / "run").fit(4, evaluate=False)
    events = EventAccumulator(str(tmp_path / "run" / FOLDER))
    events.Reload()
    tags = events.Tags()
    assert {"train/loss_d", "train/loss_g", "train/images_per_second"} <= set(tags["scalars"])
    assert [e.step for e in events.Scalars("train/loss_d")] == [1, 2, 3, 4]
    assert tags["images"] == ["samples"] and "config/text_summary" in tags["tensors"]


def test_training_goes_on_without_the_tensorboard_package(tiny_path, tmp_path, monkeypatch):
    real_import = builtins.__import__

    def no_tensorboard(name, *args, **kwargs):
        if name.startswith("torch.utils.tensorboard"):
            raise ImportError("No module named 'tensorboard'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    result = CliRunner().invoke(
        main, ["build", str(tiny_path), "--out", str(tmp_path / "run"), "--no-eval", "--set", "train.tensorboard=true"]
    )
    assert result.exit_code == 0, result.output
    assert result.output.count("tensorboard package is not installed") == 1
    assert not (tmp_path / "run" / FOLDER).exists() and (tmp_path / "run" / "generator_ema.safetensors").is_file()
    # Not a terminal: a plain line every log_every (1) steps instead of a live bar.
    # Each line starts with its time (date, clock), then "step N/TOTAL".
    assert [line.split()[3] for line in result.output.splitlines() if line[21:].startswith("step ")][:4] == [
        "1/4",
        "2/4",
        "3/4",
        "4/4",
    ]
