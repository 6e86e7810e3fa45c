"""The Checkpointer on its own: a checkpoint restores networks, optimizers, step and best FID exactly."""

from __future__ import annotations

import pytest
import torch
from conftest import write_tiny
from torch import nn

from ganforge.checkpoint import read_header, save_tensors
from ganforge.checkpointing import Checkpointer, same_experiment
from ganforge.config import dump_toml, load_config
from ganforge.errors import CheckpointError
from ganforge.plugins import load_registry
from ganforge.precision import Precision
from ganforge.rundir import GENERATOR, GENERATOR_BEST, GENERATOR_EMA, RunDir


def parts(seed: int) -> tuple[dict[str, nn.Module], dict[str, torch.optim.Optimizer]]:
    torch.manual_seed(seed)
    nets = {"generator": nn.Linear(3, 2), "generator_ema": nn.Linear(3, 2), "discriminator": nn.Linear(2, 1)}
    optimizers = {
        "opt_g": torch.optim.Adam(nets["generator"].parameters(), lr=0.01),
        "opt_d": torch.optim.Adam(nets["discriminator"].parameters(), lr=0.01),
    }
    for net, opt in ((nets["generator"], optimizers["opt_g"]), (nets["discriminator"], optimizers["opt_d"])):
        net(torch.randn(4, net.in_features)).sum().backward()
        opt.step()  # optimizer state worth restoring
    return nets, optimizers


def checkpointer(folder, config, nets, optimizers) -> Checkpointer:
    precision = Precision.create("fp32", torch.device("cpu"))

    def metadata(role: str, step: int) -> dict:
        return {"ganforge.role": role, "ganforge.step": step, "ganforge.config": config.to_dict()}

    return Checkpointer(RunDir(folder), nets, optimizers, {}, precision, metadata, 2, print)


@pytest.fixture
def config(tmp_path):
    return load_config(write_tiny(tmp_path), load_registry)[0]


def test_a_checkpoint_restores_weights_optimizers_step_and_best_fid(tmp_path, config):
    nets, optimizers = parts(0)
    checkpointer(tmp_path, config, nets, optimizers).save(7, 12.5)
    assert read_header(tmp_path / GENERATOR_EMA).metadata["ganforge.step"] == "7"
    other_nets, other_optimizers = parts(1)  # different weights and moments
    resumed = checkpointer(tmp_path, config, other_nets, other_optimizers).resume(RunDir(tmp_path), config, write=True)
    assert resumed is not None and (resumed.step, resumed.best) == (7, 12.5)
    for name in nets:
        for a, b in zip(nets[name].state_dict().values(), other_nets[name].state_dict().values()):
            assert torch.equal(a, b)
    for name in optimizers:
        ours, theirs = optimizers[name].state_dict()["state"], other_optimizers[name].state_dict()["state"]
        assert all(torch.equal(ours[i]["exp_avg"], theirs[i]["exp_avg"]) for i in ours)


def test_resume_brings_stale_exports_level_and_adopts_a_later_best_fid(tmp_path, config):
    nets, optimizers = parts(0)
    saver = checkpointer(tmp_path, config, nets, optimizers)
    saver.save(4, 30.0)
    (tmp_path / GENERATOR).unlink()  # killed between the checkpoint and its exports
    save_tensors(
        tmp_path / GENERATOR_BEST, nets["generator_ema"].state_dict(), {"ganforge.fid": 20.0, "ganforge.step": 4}
    )
    resumed = checkpointer(tmp_path, config, *parts(1)).resume(RunDir(tmp_path), config, write=True)
    assert resumed is not None and resumed.best == 20.0  # the final evaluation after the checkpoint
    assert read_header(tmp_path / GENERATOR).metadata["ganforge.step"] == "4"


def test_a_run_that_never_checkpointed_resumes_from_nothing_and_other_configs_are_refused(tmp_path, config):
    (tmp_path / "config.toml").write_text(dump_toml(config))
    assert checkpointer(tmp_path, config, *parts(0)).resume(RunDir(tmp_path), config, write=True) is None
    same_experiment("run", {**config.to_dict(), "train": {**config.to_dict()["train"], "steps": 99}}, config)
    changed = {**config.to_dict(), "optim": {**config.to_dict()["optim"], "lr": 0.5}}
    with pytest.raises(CheckpointError, match=r"^cannot resume run: the config differs from the run's in optim.lr$"):
        same_experiment("run", changed, config)
