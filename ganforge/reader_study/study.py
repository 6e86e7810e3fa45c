"""A reader study on disk: shuffled images encoded identically, a public manifest, and the key kept apart.

Layout of a study folder (``ganforge reader-study create``)::

    STUDY/study.json       what the server may use: item ids, image checksums, questions, settings
    STUDY/key.json         the answer key (source, origin file or latent, findings): never served
    STUDY/images/<id>.png  every image 8-bit grayscale, same size, uncompressed: identical file sizes
    STUDY/answers.sqlite   readers, their codes' hashes and their answers (``store.py``)

Nothing about an image's file says where it came from: names are random ids, every PNG has only
the IHDR, IDAT and IEND chunks (no text, time or physical-size metadata), one mode ('L'), one
resolution, and ``compress_level=0`` makes every file exactly the same number of bytes (a smooth
generated image would otherwise compress better than a noisy radiograph).
"""

from __future__ import annotations

import hashlib
import io
import os
import random
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

import torch
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field

from .. import jsontext
from ..checkpoint import atomic_write, fsync_dir
from ..config import validated
from ..errors import DataError, GanforgeError
from ..progress import progress

STUDY_FILE = "study.json"
KEY_FILE = "key.json"
IMAGES = "images"
ANSWERS = "answers.sqlite"
NO_FINDING = "No Finding"
FORMAT = 1
Source = Literal["real", "generated"]


class Settings(BaseModel):
    """How readers answer (fixed when the study is created, so every reader gets the same questions)."""

    model_config = ConfigDict(extra="forbid")
    allow_changes: bool = Field(False, description="a reader may go back and change earlier answers")
    ask_finding: bool = Field(False, description="also ask which finding the reader sees")
    confidence_levels: int = Field(5, ge=2, le=9, description="confidence scale 1..N (keys 1–9)")


class Item(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(pattern=r"^[0-9a-f]{16}$")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class Manifest(BaseModel):
    """``study.json``: everything the server needs, nothing that tells real from generated."""

    model_config = ConfigDict(extra="forbid")
    format: int = FORMAT
    title: str
    created: str
    resolution: int
    seed: int
    findings: list[str]  # the answer options when settings.ask_finding (NO_FINDING last)
    settings: Settings
    items: list[Item]


class KeyEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    source: Source
    origin: str  # the real file's name, or which latent of which generator
    findings: list[str] | None  # [] = no finding; None = not known (a generator without labels)


class Key(BaseModel):
    model_config = ConfigDict(extra="forbid")
    format: int = FORMAT
    items: dict[str, KeyEntry]


@dataclass
class Pool:
    """Images of one source before encoding: ``uint8 [N, C, R, R]``, with where each came from."""

    images: torch.Tensor
    origins: list[str]
    findings: list[list[str] | None]

    def __post_init__(self) -> None:
        if not len(self.images) == len(self.origins) == len(self.findings):
            raise ValueError("a pool needs one origin and one findings entry per image")


def encode(image: torch.Tensor) -> bytes:
    """``uint8 [C, H, W]`` → the study's PNG: grayscale, 8-bit, uncompressed, no metadata.

    Three channels become luma the way PIL converts RGB to 'L', for real and generated alike.
    """
    array = image.numpy()
    picture = Image.fromarray(array[0]) if array.shape[0] == 1 else Image.fromarray(array.transpose(1, 2, 0))
    buffer = io.BytesIO()
    picture.convert("L").save(buffer, format="PNG", compress_level=0)
    return buffer.getvalue()


def create_study(
    out: str | Path,
    real: Pool,
    generated: Pool,
    *,
    seed: int,
    title: str,
    settings: Settings,
    finding_names: Sequence[str] = (),
) -> Study:
    """Write a study of every image of ``real`` and ``generated``, shuffled by ``seed``, to ``out``.

    The folder is assembled under a temporary name and renamed into place: an interrupted create
    leaves nothing at ``out``. ``out`` must not exist.
    """
    out = Path(out)
    if out.exists():
        raise GanforgeError(f"{out}: already exists (a study is never overwritten; choose another folder)")
    resolutions = {tuple(pool.images.shape[-2:]) for pool in (real, generated) if len(pool.images)}
    if len(resolutions) != 1:
        raise GanforgeError(f"real and generated images differ in size ({sorted(resolutions)}); resize one side")
    ((height, width),) = resolutions
    if height != width:
        raise GanforgeError(f"images are {height}×{width}; a study needs square images")
    if settings.ask_finding and not finding_names:
        raise GanforgeError("asking for findings needs labels (a labels.csv beside the real images)")
    pools: dict[Source, Pool] = {"real": real, "generated": generated}
    order = [(source, index) for source, pool in pools.items() for index in range(len(pool.images))]
    rng = random.Random(seed)
    rng.shuffle(order)
    ids = _unique_ids(rng, len(order))

    partial = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(partial, ignore_errors=True)
    (partial / IMAGES).mkdir(parents=True)
    try:
        items, key = [], {}
        for item_id, (source, index) in progress(list(zip(ids, order)), "writing the study"):
            pool = pools[source]
            data = encode(pool.images[index])
            atomic_write(partial / IMAGES / f"{item_id}.png", data)  # fsynced: the study survives a crash
            items.append(Item(id=item_id, sha256=hashlib.sha256(data).hexdigest()))
            key[item_id] = KeyEntry(source=source, origin=pool.origins[index], findings=pool.findings[index])
        manifest = Manifest(
            title=title,
            created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            resolution=height,
            seed=seed,
            findings=[*sorted(set(finding_names) - {NO_FINDING}), NO_FINDING] if settings.ask_finding else [],
            settings=settings,
            items=items,
        )
        atomic_write(partial / KEY_FILE, Key(items=key).model_dump_json(indent=1))
        atomic_write(partial / STUDY_FILE, manifest.model_dump_json(indent=1))
        os.rename(partial, out)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    fsync_dir(out.parent)
    return Study(out, manifest)


def _unique_ids(rng: random.Random, n: int) -> list[str]:
    ids: list[str] = []
    seen = set()
    while len(ids) < n:
        item_id = f"{rng.getrandbits(64):016x}"
        if item_id not in seen:
            seen.add(item_id)
            ids.append(item_id)
    return ids


def _read_model(path: Path, model: type[BaseModel], what: str):
    if not path.is_file():
        raise DataError(f"{path}: not found; is {path.parent} a reader study (ganforge reader-study create)?")
    try:
        data = jsontext.loads(path.read_bytes())
    except ValueError as exc:
        raise DataError(f"{path}: not a valid {what} (not JSON: {exc})") from exc
    return validated(model, data, str(path))  # the file and key of the first problem, as for every config


@dataclass
class Study:
    """An opened study folder. ``Study.open`` checks the manifest and every image's checksum."""

    root: Path
    manifest: Manifest

    @classmethod
    def open(cls, root: str | Path, verify_images: bool = True) -> Study:
        root = Path(root)
        if not root.is_dir():
            raise DataError(f"{root}: study folder not found")
        manifest = _read_model(root / STUDY_FILE, Manifest, "study manifest")
        if manifest.format != FORMAT:
            raise DataError(f"{root / STUDY_FILE}: format {manifest.format}; this ganforge reads format {FORMAT}")
        study = cls(root, manifest)
        if verify_images:
            for item in manifest.items:
                path = study.image_path(item.id)
                if not path.is_file():
                    raise DataError(f"{path}: image missing from the study")
                if hashlib.sha256(path.read_bytes()).hexdigest() != item.sha256:
                    raise DataError(f"{path}: image changed since the study was created (checksum differs)")
        return study

    @property
    def item_ids(self) -> list[str]:
        return [item.id for item in self.manifest.items]

    @property
    def answers_path(self) -> Path:
        return self.root / ANSWERS

    def image_path(self, item_id: str) -> Path:
        """The PNG of a manifest id (the server passes only ids taken from the manifest, never request text)."""
        return self.root / IMAGES / f"{item_id}.png"

    def key(self) -> Key:
        """The answer key, checked to cover exactly the manifest's items."""
        key = _read_model(self.root / KEY_FILE, Key, "study key")
        if set(key.items) != set(self.item_ids):
            raise DataError(f"{self.root / KEY_FILE}: its items differ from {STUDY_FILE}'s")
        return key


def source_counts(key: Key) -> dict[str, int]:
    """How many images of each source the key holds."""
    counts = {"real": 0, "generated": 0}
    for entry in key.items.values():
        counts[entry.source] += 1
    return counts
