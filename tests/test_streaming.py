"""Decoded datasets cached on disk and memory-mapped: same images, reused, invalidated, large recipes start."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from ganforge_plugins import image_folder as folder_plugin
from PIL import Image

from ganforge import datasource
from ganforge.checkpoint import load_tensors
from ganforge.config import load_config
from ganforge.plugins import load_registry
from ganforge.training import Trainer

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def write_pngs(folder: Path, n: int, size: int = 24) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        paths.append(folder / f"img_{i:04d}.png")
        Image.fromarray(rng.integers(0, 256, (size, size + 4), dtype=np.uint8)).save(paths[-1])
    return paths


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GANFORGE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "datasets"


def load(root: Path, **params):
    return folder_plugin.image_folder(root=str(root), resolution=16, image_channels=1, **params)


def test_the_cached_set_equals_the_in_memory_one_and_is_memory_mapped(tmp_path, cache):
    write_pngs(tmp_path / "data", 12)
    memory = load(tmp_path / "data", cache=False)
    streamed = load(tmp_path / "data")
    assert torch.equal(memory.images, streamed.images) and streamed.images.dtype == torch.uint8
    (array,) = cache.glob("*.npy")
    assert np.load(array, mmap_mode="r").shape == (12, 1, 16, 16)
    assert not list(cache.glob(".*.tmp"))  # written to a temporary name, then renamed


def test_the_cache_is_reused_and_a_changed_file_invalidates_it(tmp_path, cache, monkeypatch):
    paths = write_pngs(tmp_path / "data", 6)
    first = load(tmp_path / "data")
    decoded = []
    real_read = folder_plugin.read_image
    monkeypatch.setattr(folder_plugin, "read_image", lambda *a, **k: decoded.append(a[0]) or real_read(*a, **k))
    again = load(tmp_path / "data")
    assert decoded == [] and torch.equal(first.images, again.images)  # the second run decodes nothing

    Image.fromarray(np.full((24, 28), 255, dtype=np.uint8)).save(paths[2])
    os.utime(paths[2], ns=(1, 10**18))  # a new modification time, whatever the file system's resolution
    changed = load(tmp_path / "data")
    assert len(decoded) == 6 and len(list(cache.glob("*.npy"))) == 2
    assert torch.equal(changed.images[2], torch.full((1, 16, 16), 255, dtype=torch.uint8))
    assert torch.equal(changed.images[:2], first.images[:2])


@pytest.mark.slow
def test_the_1024_pggan_recipe_starts_training_from_a_folder(tmp_path, cache):
    """The ChestX-ray14 recipe at 1024² (full width), on 64 generated images through the streaming path."""
    write_pngs(tmp_path / "images", 64, size=32)
    overrides = [
        f"data.root={tmp_path / 'images'}",
        "data.labels_csv=''",
        "data.classes=[]",
        "model.image_channels=1",
        "train.log_every=1",
    ]
    config, registry = load_config(EXAMPLES / "pggan_cxr14_1024.toml", load_registry, overrides)
    trainer = Trainer(config, registry, tmp_path / "run", device="cpu")
    assert trainer.data.images.shape == (64, 1, 1024, 1024)
    assert trainer.source.images is trainer.data.images  # the memory-mapped set itself: no copy in memory
    (array,) = cache.glob("*.npy")
    assert np.load(array, mmap_mode="r").shape == (64, 1, 1024, 1024)
    trainer.fit(2, evaluate=False)
    assert trainer.step == 2 and trainer.run.checkpoint_steps() == [2]


def test_batches_read_ahead_by_workers_equal_the_in_memory_ones(tiny, tmp_path, monkeypatch):
    config, registry = tiny  # 48 images, batch 8: step 6 starts the second epoch
    in_memory = Trainer(config, registry, tmp_path / "a", device="cpu")
    expected = [in_memory.source.batch(step) for step in range(9)]  # loads the set: it stays in memory
    monkeypatch.setattr(datasource, "DEVICE_DATA_LIMIT", 0)  # every set loaded from now on streams
    streamed = Trainer(config, registry, tmp_path / "b", device="cpu")
    assert streamed.source.batch(0).shape == (8, 1, 16, 16) and streamed.source.reader.workers == 2
    assert in_memory.source.reader is None
    for step in [1, 2, 3, 4, 5, 6, 7, 2, 3, 8]:  # in order, then back (a resume restarts the readers)
        assert torch.equal(streamed.source.batch(step), expected[step]), step
    assert not torch.equal(expected[0], expected[6])  # a new epoch, a new order
    streamed.source.close()

    streamed.fit(3, evaluate=False)
    in_memory.fit(3, evaluate=False)
    ours, theirs = (load_tensors(t.run.checkpoint_path(3))[0] for t in (streamed, in_memory))
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs)  # the same training, bit for bit


def test_the_cache_keeps_to_its_size_cap_least_recently_used_first(tmp_path, cache, monkeypatch):
    from click.testing import CliRunner

    from ganforge.cache import entries
    from ganforge.cli import main

    paths = write_pngs(tmp_path / "data", 6)
    load(tmp_path / "data")
    (first,) = cache.glob("*.npy")
    one = first.stat().st_size
    monkeypatch.setenv("GANFORGE_CACHE_LIMIT", str(2 * one))  # room for two arrays
    for n, path in enumerate(paths[:3], 1):  # three edits: three new arrays, at most two kept
        Image.fromarray(np.full((24, 28), n, dtype=np.uint8)).save(path)
        os.utime(path, ns=(1, 10**18 + n))
        os.utime(first, ns=(1, time.time_ns() + 10**10))  # the first array stays the most recently used ...
        load(tmp_path / "data")
    kept = sorted(p.name for p in cache.glob("*.npy"))
    assert len(kept) == 2 and first.name in kept  # ... so it survives; the older edits went
    assert sum(e.size for e in entries(cache.parent)) <= 2 * one

    listing = CliRunner().invoke(main, ["cache", "list"])
    assert listing.exit_code == 0 and first.name in listing.output and "datasets" in listing.output
    pruned = CliRunner().invoke(main, ["cache", "prune", "--max-size", "0"])
    assert pruned.exit_code == 0 and "removed 2 entries" in pruned.output
    assert list(cache.glob("*.npy")) == []
    bad = CliRunner().invoke(main, ["cache", "prune", "--max-size", "lots"])
    assert bad.exit_code == 2 and "--max-size 'lots': give a size such as 8G" in bad.output
