"""eval.best: which evaluated figure keeps generator_best, in which direction, across resumes."""

from __future__ import annotations

import pytest
import torch
from conftest import write_tiny

from ganforge.best import Best
from ganforge.checkpoint import save_tensors
from ganforge.checkpointing import Checkpointer
from ganforge.config import load_config
from ganforge.errors import ConfigError
from ganforge.plugins import load_registry
from ganforge.precision import Precision
from ganforge.rundir import GENERATOR_BEST, STATE_KEY, RunDir

RECORD = {"metrics": {"fid": {"fid": 40.0}, "ms_ssim": {"ms_ssim_fake": 0.3, "ms_ssim_real": 0.5}, "x": {"fid": 9.0}}}


def test_a_figure_is_found_by_its_name_or_its_metric_label():
    assert Best("fid").find(RECORD) == 40.0  # the first metric that reports it
    assert Best("x.fid").find(RECORD) == 9.0
    assert Best("ms_ssim_fake").find(RECORD) == 0.3
    assert Best("kid_mean").find(RECORD) is None


@pytest.mark.parametrize("lowest, values, kept", [(True, [5, 7, 3, 4], [5, 3]), (False, [5, 7, 3, 8], [5, 7, 8])])
def test_only_an_improvement_in_the_configured_direction_is_kept(lowest, values, kept):
    best = Best("fid", lowest)
    offered = [best.offer({"metrics": {"fid": {"fid": v}}}) for v in values]
    assert [v for v in offered if v is not None] == kept and best.value == kept[-1]
    assert best.metadata() == {
        "ganforge.best_figure": "fid",
        "ganforge.best_value": kept[-1],
        "ganforge.best_mode": "min" if lowest else "max",
    }


def test_the_config_names_the_figure_and_refuses_an_unknown_direction(tmp_path):
    config, _ = load_config(write_tiny(tmp_path), load_registry, ["eval.best=ms_ssim_fake", "eval.best_mode=max"])
    assert Best.of(config.eval) == Best("ms_ssim_fake", lowest=False)
    with pytest.raises(ConfigError, match=r"eval\.best_mode"):
        load_config(write_tiny(tmp_path), load_registry, ["eval.best_mode=lowest"])


def test_resume_reads_the_best_value_of_runs_written_before_eval_best(tmp_path):
    """Checkpoints of earlier versions say ``best_fid`` and their generator_best ``ganforge.fid``."""
    config, _ = load_config(write_tiny(tmp_path), load_registry, ["eval.best_mode=max"])
    net = torch.nn.Linear(2, 2)
    nets = {"generator": net, "generator_ema": torch.nn.Linear(2, 2), "discriminator": torch.nn.Linear(2, 1)}
    opts = {"opt_g": torch.optim.Adam(net.parameters()), "opt_d": torch.optim.Adam(nets["discriminator"].parameters())}

    def metadata(role: str, step: int) -> dict:
        return {"ganforge.role": role, "ganforge.step": step, "ganforge.config": config.to_dict()}

    checkpointer = Checkpointer(
        RunDir(tmp_path), nets, opts, {}, Precision.create("fp32", torch.device("cpu")), metadata, 2, print
    )
    checkpointer.save(4, 0.25)
    checkpoint = RunDir(tmp_path).read_checkpoint(4)
    assert checkpoint.state["best"] == 0.25
    old = {**{k: v for k, v in checkpoint.state.items() if k != "best"}, "best_fid": 0.125}
    RunDir(tmp_path).write_checkpoint(4, checkpoint.tensors, {**metadata("checkpoint", 4), STATE_KEY: old}, 2)
    resumed = checkpointer.resume(RunDir(tmp_path), config, write=False)
    assert resumed is not None and resumed.best == 0.125
    # An evaluation after the checkpoint kept a better generator (higher: best_mode = max), in the old format.
    save_tensors(
        tmp_path / GENERATOR_BEST, nets["generator_ema"].state_dict(), {"ganforge.fid": 0.5, "ganforge.step": 4}
    )
    resumed = checkpointer.resume(RunDir(tmp_path), config, write=False)
    assert resumed is not None and resumed.best == 0.5
