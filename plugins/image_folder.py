"""Real data: a folder of PNG/JPEG (8- or 16-bit) or DICOM images, with optional labels.

Labels come from one of two layouts real chest X-ray datasets use:

- one sub-folder per class (COVID-19 Radiography Database: ``COVID/images/COVID-1.png``);
  ``classes = ["COVID"]`` keeps only that class (SAMGAN trained on its 3,616 COVID images);
- a CSV with an image column and a ``|``-separated finding column (ChestX-ray14's
  ``Data_Entry_2017.csv``: ``Image Index``, ``Finding Labels``, ``No Finding``).

Every image is decoded, cropped to a centred square, resized with an antialiasing bicubic filter
to the model resolution and quantised to 8 bits once. With ``cache = true`` (the default) the result
is written to an on-disk uint8 array (``$GANFORGE_CACHE/datasets/<key>.npy``, keyed by the files'
names, sizes and modification times and the decoding settings) and memory-mapped: the second epoch
and the second run decode nothing, a dataset larger than memory streams from disk page by page,
and a changed, added or removed file gives a new key. ``cache = false`` keeps the set in memory.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import random
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field

from ganforge import hookimpl
from ganforge.cache import cache_root, store, used
from ganforge.checkpoint import replacing
from ganforge.errors import DataError
from ganforge.kinds import ImageSet
from ganforge.progress import progress

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".dcm", ".dicom"}
DECODER_VERSION = 1  # bump when read_image changes what it produces: old caches are then not used


def _read_dicom(path: Path) -> np.ndarray:
    """DICOM → float [0, 1], display orientation: rescale and VOI window applied, MONOCHROME1 inverted."""
    import pydicom
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    ds = pydicom.dcmread(path)
    pixels = apply_modality_lut(ds.pixel_array, ds)
    pixels = apply_voi_lut(pixels, ds).astype(np.float64)
    lo, hi = pixels.min(), pixels.max()
    pixels = (pixels - lo) / (hi - lo) if hi > lo else np.zeros_like(pixels)
    if ds.get("PhotometricInterpretation") == "MONOCHROME1":  # high values are dark on MONOCHROME1
        pixels = 1.0 - pixels
    return pixels.astype(np.float32)


def _read_raster(path: Path, channels: int) -> np.ndarray:
    """PNG/JPEG → float [0, 1]; 16-bit grayscale keeps its full range."""
    with Image.open(path) as img:
        if img.mode in ("I;16", "I;16B", "I;16L", "I"):
            array = np.asarray(img, dtype=np.float32) / 65535.0
            return np.clip(array, 0, 1)
        converted = img.convert("L" if channels == 1 else "RGB")
        return np.asarray(converted, dtype=np.float32) / 255.0


def read_image(path: Path, resolution: int, channels: int, fit: str = "center_crop") -> np.ndarray:
    """Decode one file into ``uint8 [channels, resolution, resolution]``."""
    try:
        if path.suffix.lower() in (".dcm", ".dicom"):
            array = _read_dicom(path)
        else:
            array = _read_raster(path, channels)
    except Exception as exc:  # PIL/pydicom raise many types; the user needs the path
        raise DataError(f"{path}: cannot read image ({exc})") from exc
    return fit_array(array, resolution, channels, fit)


def fit_array(array: np.ndarray, resolution: int, channels: int, fit: str = "center_crop") -> np.ndarray:
    """A float ``[H, W]`` or ``[H, W, 3]`` image in [0, 1] → ``uint8 [channels, resolution, resolution]``:
    centre-cropped (or stretched) to a square, resized with an antialiasing bicubic filter, quantised."""
    if array.ndim == 3 and channels == 1:
        array = array @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    planes = [array] if array.ndim == 2 else [array[..., c] for c in range(array.shape[-1])]
    out = []
    for plane in planes:
        h, w = plane.shape
        if fit == "center_crop" and h != w:
            side = min(h, w)
            top, left = (h - side) // 2, (w - side) // 2
            plane = plane[top : top + side, left : left + side]
        resized = Image.fromarray(plane, mode="F").resize((resolution, resolution), Image.Resampling.BICUBIC)
        out.append(np.asarray(resized))
    if channels == 3 and len(out) == 1:
        out = out * 3
    stacked = np.stack(out[:channels])
    return np.round(np.clip(stacked, 0, 1) * 255).astype(np.uint8)


def _images_under(folder: Path, exclude: set[str]) -> list[Path]:
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if d not in exclude)
        found += [Path(dirpath) / f for f in sorted(filenames) if Path(f).suffix.lower() in IMAGE_SUFFIXES]
    return found


def _from_csv(root: Path, csv_path: Path, p: dict) -> tuple[list[Path], list[list[str]]]:
    if not csv_path.is_file():
        raise DataError(f"{csv_path}: labels CSV not found")
    by_name = {path.name: path for path in _images_under(root, set(p["exclude"]))}
    try:
        with csv_path.open(newline="", encoding="utf-8") as handle:
            return _read_csv_rows(csv.DictReader(handle), csv_path, root, by_name, p)
    except UnicodeDecodeError as exc:
        raise DataError(f"{csv_path}: not UTF-8 text (byte {exc.start}); save the CSV as UTF-8") from exc
    except csv.Error as exc:
        raise DataError(f"{csv_path}: not a readable CSV ({exc})") from exc


def _read_csv_rows(
    reader: csv.DictReader, csv_path: Path, root: Path, by_name: dict[str, Path], p: dict
) -> tuple[list[Path], list[list[str]]]:
    for column in (p["image_column"], p["label_column"]):
        if column not in (reader.fieldnames or []):
            raise DataError(f"{csv_path}: no column {column!r} (columns: {', '.join(reader.fieldnames or [])})")
    files, findings = [], []
    for row in reader:
        name, text = row[p["image_column"]], row[p["label_column"]]
        if name is None or text is None:
            raise DataError(f"{csv_path}: line {reader.line_num} has fewer columns than the header")
        if name not in by_name:
            raise DataError(f"{csv_path}: image {name!r} is listed but not found under {root}")
        labels = [x.strip() for x in text.split(p["separator"]) if x.strip()]
        files.append(by_name[name])
        findings.append([x for x in labels if x != p["no_finding"]])
    return files, findings


def _from_folders(root: Path, p: dict) -> tuple[list[Path], list[list[str]]]:
    exclude = set(p["exclude"])
    class_dirs = sorted(d.name for d in root.iterdir() if d.is_dir() and d.name not in exclude)
    if not class_dirs:
        return _images_under(root, exclude), []
    files, findings = [], []
    for name in class_dirs:
        for path in _images_under(root / name, exclude):
            files.append(path)
            findings.append([name])
    return files, findings


class ImageFolderParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    root: str = Field(description="folder of images (relative paths are relative to the working directory)")
    labels_csv: str = Field(
        "", description="CSV with image names and '|'-separated findings; '' = use class sub-folders"
    )
    image_column: str = "Image Index"
    label_column: str = "Finding Labels"
    separator: str = "|"
    no_finding: str = Field("No Finding", description="the CSV's label for an image without findings")
    classes: list[str] = Field(default_factory=list, description="keep only these classes/findings, in this order")
    exclude: list[str] = Field(default_factory=lambda: ["masks"], description="sub-folder names to skip")
    fit: Literal["center_crop", "stretch"] = "center_crop"
    limit: int = Field(0, ge=0, description="use at most this many images (0 = all)")
    sample: int = Field(0, ge=0, description="a random subset of this many images, only these decoded (0 = all)")
    seed: int = Field(0, description="the seed of `sample`'s subset")
    cache: bool = Field(True, description="decode once into a memory-mapped array on disk (streams large sets)")


def image_folder(*, resolution: int, image_channels: int, **params) -> ImageSet:
    """PNG/JPEG/DICOM folder; labels from class sub-folders or a ChestX-ray14-style CSV."""
    p = ImageFolderParams(**params).model_dump()
    root = Path(p["root"]).expanduser()
    if not root.is_dir():
        raise DataError(f"{root}: dataset folder not found")
    if p["labels_csv"]:
        csv_path = Path(p["labels_csv"]).expanduser()
        files, findings = _from_csv(root, csv_path if csv_path.is_absolute() else root / csv_path, p)
    else:
        files, findings = _from_folders(root, p)
    names = p["classes"] or sorted({f for fs in findings for f in fs})
    if p["classes"] and findings and not p["labels_csv"]:  # class folders: keep the chosen ones
        found = {fs[0] for fs in findings}
        missing = [c for c in names if c not in found]
        if missing:
            raise DataError(f"{root}: no class folder {missing}; found {sorted(found)}")
        keep = [i for i, fs in enumerate(findings) if fs[0] in names]
        files, findings = [files[i] for i in keep], [findings[i] for i in keep]
    if p["limit"]:
        files, findings = files[: p["limit"]], findings[: p["limit"]]
    if 0 < p["sample"] < len(files):
        keep = sorted(random.Random(p["seed"]).sample(range(len(files)), p["sample"]))
        files, findings = [files[i] for i in keep], [findings[i] for i in keep] if findings else []
    if not files:
        raise DataError(f"{root}: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) found")

    decode = partial(read_image, resolution=resolution, channels=image_channels, fit=p["fit"])
    shape = (len(files), image_channels, resolution, resolution)
    if p["cache"]:
        images = _cached(files, shape, p["fit"], decode, root.name)
    else:
        images = torch.empty(shape, dtype=torch.uint8)
        _decode_into(images.numpy(), files, decode, root.name)
    labels = None
    if findings:
        labels = torch.tensor([[float(n in fs) for n in names] for fs in findings])
    description = f"image folder {root}: {len(files)} images, {resolution}×{resolution}"
    file_names = [path.relative_to(root).as_posix() for path in files]
    return ImageSet(images, labels, names if findings else [], description, file_names)


def _decode_into(out: np.ndarray, files: list[Path], decode: Callable[[Path], np.ndarray], name: str) -> None:
    """Decode ``files`` into the rows of ``out`` (threads: PIL and pydicom release the GIL)."""
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        jobs = pool.map(decode, files)
        for index, array in enumerate(progress(jobs, f"decoding {name}", total=len(files))):
            out[index] = array


def cache_key(files: list[Path], shape: tuple[int, ...], fit: str) -> str:
    """Names, sizes and modification times of the files plus the decoding settings."""
    digest = hashlib.sha256(json.dumps([list(shape), fit, DECODER_VERSION]).encode())
    for path in files:
        stat = path.stat()
        digest.update(f"{path.resolve()}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:24]


def _cached(files: list[Path], shape: tuple[int, ...], fit: str, decode, name: str) -> torch.Tensor:
    """The decoded set as a memory-mapped uint8 tensor, decoding (straight to disk) only on a miss."""
    path = cache_root() / "datasets" / f"{cache_key(files, shape, fit)}.npy"
    if path.is_file():
        used(path)
    else:
        with replacing(path) as tmp:  # a killed decode never leaves a half-filled cache under the final name
            array = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=shape)
            _decode_into(array, files, decode, name)
            array.flush()
            del array
        store(path)  # older arrays beyond the cache's size cap go, least recently used first
    array = np.load(path, mmap_mode="c")  # copy-on-write: writable for torch, the file never changes
    if array.shape != shape or array.dtype != np.uint8:
        path.unlink(missing_ok=True)
        raise DataError(f"{path}: a damaged dataset cache ({array.shape}, {array.dtype}); it was removed, run again")
    return torch.from_numpy(array)


@hookimpl
def ganforge_register(registry):
    registry.register("dataset", "image_folder", image_folder, ImageFolderParams)
