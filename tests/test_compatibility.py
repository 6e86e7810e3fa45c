"""Runs and weights written before a change still work: tests/data/main-2026-12-01 was written by
commit 3de25c1 (its README says how). They load, sample the same images and resume to the same weights.

Compared within float tolerance, not bit for bit: CI's CPUs differ from the one that wrote them.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import ganforge.api as gf
from ganforge.checkpoint import load_tensors

OLD = Path(__file__).resolve().parent / "data" / "main-2026-12-01"


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image, dtype=np.int16)


def test_weights_written_by_the_old_main_sample_the_same_images(tmp_path):
    samples = gf.sample(OLD / "run" / "generator_ema.safetensors", n=4, out=tmp_path / "png", seed=5)
    expected = sorted((OLD / "expected").glob("sample_*.png"))
    assert [p.name for p in sorted(samples.out.glob("*.png"))] == [p.name for p in expected]
    for path in expected:
        assert np.abs(pixels(samples.out / path.name) - pixels(path)).max() <= 1, path.name


def test_a_run_written_by_the_old_main_resumes_to_the_weights_the_old_main_reached(tmp_path):
    run = shutil.copytree(OLD / "run", tmp_path / "run")
    resumed = gf.train(run / "config.toml", resume=run, steps=4, evaluate=False)
    assert resumed.step == 4
    ours, _ = load_tensors(resumed.generator_ema)
    theirs, _ = load_tensors(OLD / "expected" / "generator_ema_step4.safetensors")
    assert ours.keys() == theirs.keys()
    for key in theirs:
        torch.testing.assert_close(ours[key], theirs[key], rtol=1e-4, atol=1e-5, msg=key)
