"""Real images from MedMNIST (Yang et al., Scientific Data 2023; CC BY 4.0): its 2-D ``.npz`` files.

PneumoniaMNIST (paediatric chest X-rays, normal/pneumonia), ChestMNIST (ChestX-ray14's 14
findings, multi-label) and the other 2-D sets, at every size MedMNIST publishes (28, 64, 128,
224). A file holds ``{split}_images`` (``uint8 [N, H, W]`` or ``[N, H, W, 3]``) and
``{split}_labels`` (``[N, 1]`` class index, or ``[N, K]`` 0/1 for multi-label sets) per split
``train``, ``val``, ``test``; every array is checked before it is used.

Offline, ``path`` names the file. With ``path = ""`` the ``medmnist`` package (``pip install
medmnist``) downloads ``flag`` at ``size`` into ``root`` (default ``$GANFORGE_CACHE/medmnist``).
Images are resized to the model resolution with the same antialiasing bicubic filter as
``image_folder`` (28² → 64² blurs: MedMNIST's 64/128/224 files are sharper). Labels follow
ganforge's multi-hot convention: a binary set keeps one label (its positive class; all-zero is the
negative one, as "No Finding" is for the phantom), a multi-class set one column per class, a
multi-label set its columns.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from ganforge import hookimpl
from ganforge.cache import cache_root
from ganforge.errors import DataError
from ganforge.kinds import ImageSet

from .image_folder import fit_array

SPLITS = ("train", "val", "test")
SIZES = (28, 64, 128, 224)
# The classes of the chest sets, in MedMNIST's order (its INFO table, used instead when the package is installed).
LABELS = {
    "pneumoniamnist": ["normal", "pneumonia"],
    "chestmnist": [
        "atelectasis",
        "cardiomegaly",
        "effusion",
        "infiltration",
        "mass",
        "nodule",
        "pneumonia",
        "pneumothorax",
        "consolidation",
        "edema",
        "emphysema",
        "fibrosis",
        "pleural",
        "hernia",
    ],
}
TITLES = {"pneumoniamnist": "PneumoniaMNIST", "chestmnist": "ChestMNIST"}


class MedMNISTParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: str = Field("", description="a MedMNIST .npz file; '' = download flag at size with the medmnist package")
    flag: str = Field("pneumoniamnist", description="which MedMNIST 2-D set (label names; what to download)")
    size: Literal[28, 64, 128, 224] = Field(28, description="image size of the file to download (path: read from it)")
    split: Literal["train", "val", "test", "all"] = Field("train", description="which split; all = train+val+test")
    limit: int = Field(0, ge=0, description="use at most this many images, the first ones (0 = all)")
    sample: int = Field(
        0, ge=0, description="a seeded random subset of this many images (0 = all); unlike limit, fair to sorted files"
    )
    seed: int = Field(0, description="the seed of sample's subset")
    root: str = Field("", description="download folder ('' = $GANFORGE_CACHE/medmnist)")


def _download(flag: str, size: int, root: Path) -> Path:
    """The file of ``flag`` at ``size`` in ``root``, downloaded by the medmnist package when it is not there."""
    name = f"{flag}.npz" if size == 28 else f"{flag}_{size}.npz"
    if (root / name).is_file():
        return root / name
    try:
        import medmnist
    except ImportError as exc:
        raise DataError(
            f"data.path is empty and the medmnist package is not installed: `pip install medmnist` to download "
            f"{flag} ({size}×{size}), or download {name} from https://zenodo.org/records/10519652 and set data.path"
        ) from exc
    if flag not in medmnist.INFO:
        raise DataError(f"data.flag {flag!r}: not a MedMNIST set; known: {', '.join(sorted(medmnist.INFO))}")
    root.mkdir(parents=True, exist_ok=True)
    getattr(medmnist, medmnist.INFO[flag]["python_class"])(split="train", download=True, size=size, root=str(root))
    if not (root / name).is_file():
        raise DataError(f"{root / name}: the medmnist package did not write it")
    return root / name


def label_names(flag: str, classes: int) -> list[str]:
    """The class names of ``flag``: from the medmnist package when installed, else the table above, else numbered."""
    try:
        import medmnist

        info = medmnist.INFO.get(flag)
        if info is not None:
            return [info["label"][str(k)] for k in range(len(info["label"]))]
    except ImportError:
        pass
    return LABELS.get(flag, [f"class_{k}" for k in range(classes)])


def read_split(path: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """``(images uint8 [N, H, W(, 3)], labels int [N, K])`` of one split, checked."""
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: not a readable .npz file ({exc})") from exc
    with archive:
        images_key, labels_key = f"{split}_images", f"{split}_labels"
        missing = [key for key in (images_key, labels_key) if key not in archive.files]
        if missing:
            raise DataError(f"{path}: no {', '.join(missing)} (a MedMNIST file has {', '.join(sorted(archive.files))})")
        images, labels = archive[images_key], archive[labels_key]
    square = images.ndim in (3, 4) and images.shape[1] == images.shape[2] and (images.ndim == 3 or images.shape[3] == 3)
    if images.dtype != np.uint8 or not square or images.shape[1] not in SIZES:
        raise DataError(
            f"{path}: {images_key} is {images.dtype} {images.shape}, "
            f"not uint8 [N, S, S] or [N, S, S, 3] with S in {SIZES}"
        )
    if labels.ndim != 2 or len(labels) != len(images) or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{path}: {labels_key} is {labels.dtype} {labels.shape}, not integers [{len(images)}, K]")
    if labels.min(initial=0) < 0:
        raise DataError(f"{path}: {labels_key} has negative class indices")
    return images, labels


def multi_hot(labels: np.ndarray, names: list[str]) -> tuple[torch.Tensor, list[str]]:
    """MedMNIST labels as ganforge's multi-hot ``float [N, K]`` and their names (see the module docstring)."""
    if labels.shape[1] > 1:  # multi-label: one 0/1 column per finding
        return torch.from_numpy((labels > 0).astype(np.float32)), names[: labels.shape[1]]
    index = labels[:, 0]
    classes = max(len(names), int(index.max(initial=0)) + 1)
    names = names + [f"class_{k}" for k in range(len(names), classes)]
    if classes == 2:  # binary: the positive class, all-zero for the negative one
        return torch.from_numpy((index == 1).astype(np.float32)[:, None]), [names[1]]
    return torch.nn.functional.one_hot(torch.from_numpy(index).long(), classes).float(), names


def medmnist_dataset(*, resolution: int, image_channels: int, **params) -> ImageSet:
    """MedMNIST 2-D images (real patient data, CC BY 4.0) with their labels, one split or all."""
    p = MedMNISTParams(**params)
    root = Path(p.root) if p.root else cache_root() / "medmnist"
    path = Path(p.path).expanduser() if p.path else _download(p.flag, p.size, root)
    if not path.is_file():
        raise DataError(f"{path}: no such file (data.path)")
    parts = [read_split(path, split) for split in (SPLITS if p.split == "all" else (p.split,))]
    images = np.concatenate([images for images, _ in parts])
    labels = np.concatenate([labels for _, labels in parts])
    if p.limit:
        images, labels = images[: p.limit], labels[: p.limit]
    if p.sample and p.sample < len(images):  # the project's PneumoniaMNIST copy lists all pneumonia first
        keep = np.sort(np.random.default_rng(p.seed).permutation(len(images))[: p.sample])
        images, labels = images[keep], labels[keep]
    if len(images) == 0:
        raise DataError(f"{path}: the {p.split} split holds no images")
    names = label_names(p.flag, int(labels.max(initial=0)) + 1)
    multi, kept_names = multi_hot(labels, names)
    side = images.shape[1]
    pixels = images.astype(np.float32) / 255.0
    resized = np.stack([fit_array(image, resolution, image_channels) for image in pixels])
    title = TITLES.get(p.flag, p.flag)
    description = (
        f"{title} (MedMNIST v2, CC BY 4.0; real patient images), {p.split} split of {path.name}: "
        f"{len(images)} images, {side}×{side} resized to {resolution}×{resolution}"
    )
    return ImageSet(torch.from_numpy(resized), multi, kept_names, description)


@hookimpl
def ganforge_register(registry):
    registry.register("dataset", "medmnist", medmnist_dataset, MedMNISTParams)
