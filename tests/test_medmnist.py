"""The medmnist dataset plugin: MedMNIST .npz files read, checked, resized and labelled as documented."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ganforge.errors import DataError
from ganforge.plugins import load_registry

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "pneumoniamnist.npz"
SHA256 = "f36c2b3e34de9d60c5c734118bc6daff281eaf76b67a57d26ad958da948274b0"  # ../shared/data/README.md


def write_npz(path: Path, side: int = 28, rgb: bool = False, labels: str = "binary", n: int = 6) -> Path:
    rng = np.random.default_rng(0)
    arrays = {}
    for k, split in enumerate(("train", "val", "test")):
        shape = (n + k, side, side, 3) if rgb else (n + k, side, side)
        arrays[f"{split}_images"] = rng.integers(0, 256, shape, dtype=np.uint8)
        if labels == "multi_label":
            arrays[f"{split}_labels"] = rng.integers(0, 2, (n + k, 14))
        else:
            arrays[f"{split}_labels"] = rng.integers(0, 2 if labels == "binary" else 5, (n + k, 1))
    np.savez(path, **arrays)
    return path


def load(resolution: int = 16, channels: int = 1, **params):
    return load_registry().build("dataset", "medmnist", params, resolution=resolution, image_channels=channels)


def bicubic(image: np.ndarray, resolution: int) -> np.ndarray:
    """What the plugin documents, computed directly: PIL's bicubic filter on [0, 1] floats, rounded to 8 bits."""
    plane = Image.fromarray(image.astype(np.float32) / 255.0, mode="F").resize((resolution, resolution), Image.BICUBIC)
    return np.round(np.clip(np.asarray(plane), 0, 1) * 255).astype(np.uint8)


def test_a_binary_set_is_resized_with_the_bicubic_filter_and_keeps_its_positive_class(tmp_path):
    path = write_npz(tmp_path / "pneumoniamnist.npz")
    data = load(path=str(path), flag="pneumoniamnist")
    raw = np.load(path)
    assert data.images.shape == (6, 1, 16, 16) and data.images.dtype == torch.uint8
    for i in range(6):
        assert np.array_equal(data.images[i, 0].numpy(), bicubic(raw["train_images"][i], 16))
    assert data.label_names == ["pneumonia"]
    assert torch.equal(data.labels[:, 0], torch.from_numpy(raw["train_labels"][:, 0] == 1).float())
    assert "PneumoniaMNIST" in data.description and "real patient images" in data.description


def test_splits_limit_multi_class_multi_label_and_colour(tmp_path):
    path = write_npz(tmp_path / "x.npz", labels="multi_class")
    everything = load(path=str(path), flag="someothermnist", split="all")
    assert len(everything.images) == 6 + 7 + 8
    assert everything.label_names == [f"class_{k}" for k in range(5)]
    raw = np.load(path)
    index = np.concatenate([raw[f"{s}_labels"][:, 0] for s in ("train", "val", "test")])
    assert torch.equal(everything.labels.argmax(1), torch.from_numpy(index)) and torch.all(
        everything.labels.sum(1) == 1
    )
    assert len(load(path=str(path), split="test", limit=3).images) == 3
    drawn = load(path=str(path), split="all", sample=5, seed=1)
    keep = np.sort(np.random.default_rng(1).permutation(21)[:5])
    assert torch.equal(drawn.images, everything.images[keep]) and torch.equal(drawn.labels, everything.labels[keep])
    chest = load(path=str(write_npz(tmp_path / "c.npz", labels="multi_label")), flag="chestmnist")
    assert chest.labels.shape == (6, 14) and chest.label_names[1] == "cardiomegaly"
    rgb = write_npz(tmp_path / "rgb.npz", side=64, rgb=True)
    colour, grey = load(path=str(rgb), channels=3), load(path=str(rgb), channels=1)
    assert colour.images.shape == (6, 3, 16, 16) and grey.images.shape == (6, 1, 16, 16)


def test_what_is_not_a_medmnist_file_is_refused_naming_the_file_and_key(tmp_path):
    good = write_npz(tmp_path / "good.npz")
    arrays = dict(np.load(good))
    np.savez(tmp_path / "nolabels.npz", **{k: v for k, v in arrays.items() if k != "val_labels"})
    with pytest.raises(DataError, match=r"nolabels.npz: no val_labels \(a MedMNIST file has"):
        load(path=str(tmp_path / "nolabels.npz"), split="val")
    np.savez(tmp_path / "float.npz", **{**arrays, "train_images": arrays["train_images"].astype(np.float32)})
    with pytest.raises(DataError, match=r"float.npz: train_images is float32"):
        load(path=str(tmp_path / "float.npz"))
    np.savez(tmp_path / "short.npz", **{**arrays, "train_labels": arrays["train_labels"][:2]})
    with pytest.raises(DataError, match=r"short.npz: train_labels is int64 \(2, 1\), not integers \[6, K\]"):
        load(path=str(tmp_path / "short.npz"))
    (tmp_path / "text.npz").write_text("not a zip")
    with pytest.raises(DataError, match=r"text.npz: not a readable .npz file"):
        load(path=str(tmp_path / "text.npz"))
    with pytest.raises(DataError, match=r"nowhere.npz: no such file \(data.path\)"):
        load(path=str(tmp_path / "nowhere.npz"))


def test_without_a_path_or_the_medmnist_package_it_says_how_to_get_the_file(tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_medmnist(name, *args, **kwargs):
        if name == "medmnist":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_medmnist)
    with pytest.raises(DataError, match=r"pip install medmnist.*pneumoniamnist_64.npz.*data.path"):
        load(flag="pneumoniamnist", size=64, root=str(tmp_path))
    cached = write_npz(tmp_path / "pneumoniamnist_64.npz", side=64)  # already downloaded: no package needed
    assert len(load(flag="pneumoniamnist", size=64, root=str(cached.parent)).images) == 6


@pytest.mark.skipif(
    not SHARED.is_file(), reason=f"the real X-rays are not here ({SHARED}; see ../shared/data/README.md)"
)
def test_the_real_pneumoniamnist_subset_loads_as_its_readme_describes():
    assert hashlib.sha256(SHARED.read_bytes()).hexdigest() == SHA256
    train = load(resolution=32, path=str(SHARED))
    assert train.images.shape == (2428, 1, 32, 32) and train.labels.sum() == 1214
    assert [len(load(path=str(SHARED), split=s).images) for s in ("val", "test")] == [270, 468]


@pytest.mark.skipif(
    not SHARED.is_file(), reason=f"the real X-rays are not here ({SHARED}; see ../shared/data/README.md)"
)
def test_the_pneumonia_example_trains_on_the_real_set(tmp_path):
    from click.testing import CliRunner

    from ganforge.cli import main
    from ganforge.config import read_toml
    from ganforge.rundir import RunDir

    example = Path(__file__).resolve().parents[1] / "examples" / "pneumonia.toml"
    args = ["build", str(example), "--steps", "2", "--no-eval", "--out", str(tmp_path / "run")]
    result = CliRunner().invoke(main, [*args, "--set", f"data.path={SHARED}"])
    assert result.exit_code == 0, result.output
    saved = read_toml(tmp_path / "run" / "config.toml")
    assert saved["data"]["name"] == "medmnist" and saved["model"]["resolution"] == 32
    assert [r["step"] for r in RunDir(tmp_path / "run").read_metrics()] == [2]
    assert "PneumoniaMNIST" in result.output and "real patient images" in result.output
