"""Data-parallel training through torchrun with gloo on CPU: two processes compute what one does."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import write_tiny

from ganforge.checkpoint import load_tensors
from ganforge.distributed import Distributed
from ganforge.errors import GanforgeError
from ganforge.rundir import METRICS, RunDir

# Batch statistics (minibatch std-dev groups, the relativistic loss's means) are per rank in any
# data-parallel GAN; with them off the global batch's gradient is exactly the mean of the shards'.
DECOMPOSABLE = ["--set", "loss.name=hinge", "--set", "model.discriminator.block.minibatch_std=false", "--no-eval"]


def build(tmp_path: Path, *args) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "ganforge", "build", str(write_tiny(tmp_path)), *map(str, args), *DECOMPOSABLE]
    env = {**os.environ, "COLUMNS": "200"}
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return done


def checkpoint(run: Path, step: int) -> dict[str, torch.Tensor]:
    return load_tensors(RunDir(run).checkpoint_path(step))[0]


@pytest.mark.slow
def test_two_processes_compute_the_gradients_of_one(tmp_path):
    build(tmp_path, "--out", "one", "--steps", 1)
    two = build(tmp_path, "--out", "two", "--steps", 1, "--nproc", 2)
    assert "× 2 processes" in two.stderr
    one, two = checkpoint(tmp_path / "one", 1), checkpoint(tmp_path / "two", 1)
    assert one.keys() == two.keys()
    # Adam with β1 = 0 stores the step's gradient as exp_avg: the all-reduced gradients equal one process's.
    moments = [k for k in one if k.endswith(".exp_avg")]
    assert len(moments) > 50
    for key in moments:
        torch.testing.assert_close(two[key], one[key], rtol=1e-4, atol=1e-6)
    # The weights: equal up to float noise, except where a gradient is ~0 and Adam's first step is ±lr.
    for key in (k for k in one if k.startswith(("generator.", "discriminator."))):
        assert (two[key] - one[key]).abs().max() <= 2 * 0.002 + 1e-5, key
    steps = [json.loads(line)["step"] for line in (tmp_path / "two" / METRICS).read_text().splitlines()]
    assert steps == [1]  # rank 0 alone writes


@pytest.mark.slow
def test_resume_under_ddp_and_on_another_number_of_processes(tmp_path):
    build(tmp_path, "--out", "straight", "--steps", 3, "--nproc", 2)
    build(tmp_path, "--out", "split", "--steps", 2, "--nproc", 2)
    build(tmp_path, "--resume", "split", "--steps", 3, "--nproc", 2)
    straight, split = checkpoint(tmp_path / "straight", 3), checkpoint(tmp_path / "split", 3)
    for key in straight:
        assert torch.equal(straight[key], split[key]), key
    build(tmp_path, "--resume", "split", "--steps", 4)  # a 2-process run goes on in one process
    assert RunDir(tmp_path / "split").checkpoint_steps()[0] == 4


def test_a_global_batch_that_does_not_split_is_one_line():
    ranks = Distributed(rank=1, world=3)
    assert torch.equal(ranks.shard(torch.arange(6)), torch.tensor([2, 3]))
    with pytest.raises(GanforgeError, match="global batch of 8 does not split over 3 processes"):
        ranks.shard(torch.arange(8))
    single = Distributed()
    assert not single.active and single.is_main and single.any(True) and single.mean(torch.tensor(2.0)) == [2.0]
