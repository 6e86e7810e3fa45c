"""Data-parallel training through torchrun with gloo on CPU: two processes compute what one does."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from conftest import write_tiny
from pool_features import POOL

from ganforge.checkpoint import load_tensors
from ganforge.config import load_config
from ganforge.distributed import Distributed
from ganforge.errors import GanforgeError
from ganforge.evaluation import EvalContext
from ganforge.plugins import load_registry
from ganforge.rundir import METRICS, RunDir
from ganforge.training import Trainer

# Batch statistics (minibatch std-dev groups, the relativistic loss's means) are per rank in any
# data-parallel GAN; with them off the global batch's gradient is exactly the mean of the shards'.
DECOMPOSABLE = ["--set", "loss.name=hinge", "--set", "model.discriminator.block.minibatch_std=false", "--no-eval"]


def build(tmp_path: Path, *args, config: Path | None = None, eval_: bool = False) -> subprocess.CompletedProcess:
    config = config or write_tiny(tmp_path)
    command = [sys.executable, "-m", "ganforge", "build", str(config), *map(str, args), *DECOMPOSABLE]
    command = command if not eval_ else command[:-1]
    tests = str(Path(__file__).parent)
    env = {**os.environ, "COLUMNS": "200", "PYTHONPATH": os.pathsep.join([tests, os.environ.get("PYTHONPATH", "")])}
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


def _gather_on_two_ranks(rank: int, port: int, cache: str) -> None:
    os.environ["GANFORGE_CACHE"] = cache
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        ranks = Distributed(rank=rank, world=2)
        rows = torch.arange(15).reshape(5, 3)
        assert ranks.span(5) == (slice(0, 2) if rank == 0 else slice(2, 5))
        assert torch.equal(ranks.gather(rows[ranks.span(5)]), rows)  # uneven shares, rank order
        mine = rows[:1] if rank == 1 else torch.empty(0, 0, dtype=rows.dtype)  # rank 0 has nothing
        assert torch.equal(ranks.gather(mine), rows[:1])
        assert ranks.all(True) and not ranks.all(rank == 0) and ranks.any(rank == 0)
        real, fake = (
            torch.randint(0, 256, (7, 1, 16, 16), generator=torch.Generator().manual_seed(s), dtype=torch.uint8)
            for s in (0, 1)
        )
        shared = EvalContext(real, fake, dist=ranks)
        alone = EvalContext(real, fake, cache=False)
        for side in ("real", "fake"):  # each rank extracts 3 or 4 images; all ranks get all 7
            torch.testing.assert_close(shared.features(side, **POOL), alone.features(side, **POOL))
        dist.barrier()  # rank 0 has written the real features' cache: both ranks now read it
        again = EvalContext(real, fake, dist=ranks)
        torch.testing.assert_close(again.features("real", **POOL), alone.features("real", **POOL))
        assert again.cache_hits == ["real"]
    finally:
        dist.destroy_process_group()


def test_evaluation_is_shared_between_ranks_and_gathered_in_order(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_gather_on_two_ranks, args=(port, str(tmp_path / "cache")), nprocs=2)


@pytest.mark.slow
def test_a_two_process_evaluation_equals_one_process(tmp_path, monkeypatch):
    monkeypatch.setenv("GANFORGE_CACHE", str(tmp_path / "cache"))
    metrics = f'[{{ name = "fid", extractor = "{POOL["extractor"]}", layer = "48" }}, "ms_ssim"]'
    config = write_tiny(tmp_path, extra=f"\n[eval]\nmetrics = {metrics}\nn = 11\n")
    config.write_text('plugins = ["pool_features"]\n' + config.read_text())
    build(tmp_path, "--out", "two", "--steps", 2, "--nproc", 2, config=config, eval_=True)
    records = [json.loads(line) for line in (tmp_path / "two" / METRICS).read_text().splitlines()]
    shared = [r["eval"] for r in records if "eval" in r]
    assert len(shared) == 1 and shared[0]["n_fake"] == 11  # one record, 11 images from 5 + 6
    overrides = ["loss.name=hinge", "model.discriminator.block.minibatch_std=false"]
    trainer = Trainer(*load_config(config, load_registry, overrides), tmp_path / "one")
    trainer.resume(tmp_path / "two")
    alone = trainer.evaluate()  # the same EMA weights, evaluated by one process
    assert alone["metrics"]["fid"]["fid"] == pytest.approx(shared[0]["metrics"]["fid"]["fid"], rel=1e-5)
    assert alone["metrics"]["ms_ssim"] == pytest.approx(shared[0]["metrics"]["ms_ssim"], rel=1e-6)
