"""Where a study's images come from: a folder of images (real, or generated ones written earlier) or a generator.

A folder is read by the ``image_folder`` dataset exactly as training reads it (centre crop, bicubic
resize to the study's resolution, 8 bits), so real images reach the study the way generated ones
do. Only the drawn subset is decoded: a study can draw 50 images from ChestX-ray14's 112,120.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import DataError, GanforgeError
from ..registry import Registry
from .study import NO_FINDING, Pool, Settings, Study, create_study


def folder_params(folder: Path) -> dict[str, str]:
    """``image_folder`` parameters for FOLDER, FOLDER/images + FOLDER/labels.csv (what ``ganforge phantom`` and
    LCO sampling write), or FOLDER + FOLDER/labels.csv."""
    if not folder.is_dir():
        raise DataError(f"{folder}: folder not found")
    labels = folder / "labels.csv"
    if labels.is_file():
        images = folder / "images"
        return {"root": str(images if images.is_dir() else folder), "labels_csv": str(labels.resolve())}
    return {"root": str(folder)}


def folder_pool(folder: Path, count: int, resolution: int, seed: int, registry: Registry) -> tuple[Pool, list[str]]:
    """``count`` images drawn at random (``seed``) from ``folder``, with their findings when it has labels.

    Returns the pool and the finding names the folder's labels use ([] without labels).
    """
    params = {**folder_params(folder), "sample": count, "seed": seed, "cache": False}
    data = registry.build("dataset", "image_folder", params, resolution=resolution, image_channels=1)
    if len(data.images) < count:
        raise DataError(f"{folder}: has {len(data.images)} images; the study needs {count} from it")
    findings: list[list[str] | None]
    if data.labels is None:
        findings = [None] * count
    else:
        findings = [[n for n, on in zip(data.label_names, row) if on] for row in data.labels.tolist()]
    return Pool(data.images, list(data.names), findings), [n for n in data.label_names if n != NO_FINDING]


def generator_pool(weights: Path, count: int, seed: int, registry: Registry, device: torch.device) -> tuple[Pool, int]:
    """``count`` images of the generator in ``weights`` from latents of ``seed``; returns the pool and resolution."""
    from ..sampling import load_generator, sample_stream

    generator, config = load_generator(weights, registry)
    resolution = config.model.resolution
    batches = list(sample_stream(generator, count, seed, device=device))
    images = torch.cat(batches) if batches else torch.empty(0, 1, resolution, resolution, dtype=torch.uint8)
    origins = [f"{weights.name}: seed {seed}, latent {i}" for i in range(count)]
    return Pool(images, origins, [None] * count), resolution


def first_image_size(folder: Path) -> int:
    """The side of the first image in ``folder`` (a study from two folders takes the generated images' size)."""
    from PIL import Image

    root = Path(folder_params(folder)["root"])
    for path in sorted(root.rglob("*")):
        if path.suffix.lower() in (".png", ".jpg", ".jpeg"):
            with Image.open(path) as image:
                return min(image.size)
    raise DataError(f"{root}: no PNG or JPEG images found (give the resolution)")


def create_from_sources(
    out: Path,
    real_dir: Path,
    count: int,
    *,
    weights: Path | None,
    fake_dir: Path | None,
    generated_fraction: float,
    resolution: int | None,
    seed: int,
    title: str,
    settings: Settings,
    registry: Registry,
    device: torch.device,
) -> Study:
    """Draw ``count`` images (``generated_fraction`` of them generated) and write the study to ``out``."""
    if (weights is None) == (fake_dir is None):
        raise GanforgeError("give either weights (a generator) or fake (a folder of generated images)")
    if out.exists():
        raise GanforgeError(f"{out}: already exists (a study is never overwritten; choose another folder)")
    n_generated = round(count * generated_fraction)
    if weights is not None:
        generated, size = generator_pool(weights, n_generated, seed, registry, device)
        if resolution not in (None, size):
            raise GanforgeError(f"resolution {resolution}: the generator makes {size}×{size} images")
        generated_names: list[str] = []
    else:
        assert fake_dir is not None  # checked above: one of the two is given
        size = resolution or first_image_size(fake_dir)
        generated, generated_names = folder_pool(fake_dir, n_generated, size, seed + 1, registry)
    real, real_names = folder_pool(real_dir, count - n_generated, size, seed, registry)
    return create_study(
        out,
        real,
        generated,
        seed=seed,
        title=title,
        settings=settings,
        finding_names=sorted(set(real_names) | set(generated_names)),
    )
