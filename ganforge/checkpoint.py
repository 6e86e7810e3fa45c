"""Safetensors files with JSON metadata and a checksum of their tensors; atomic writes; no pickle.

A weights file carries its resolved config in the metadata (``ganforge.config``), so
``ganforge sample`` needs nothing but the file, and a SHA-256 of its tensors and metadata
(``ganforge.checksum``), so a bit flipped on disk or a file cut short is noticed on load instead
of producing silently wrong images. Nothing is ever pickled.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from . import jsontext
from .errors import CheckpointError

FORMAT = "ganforge-1"
CHECKSUM = "ganforge.checksum"
TEMP_SUFFIX = ".tmp"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()  # what open() would give a new file: mkstemp's 0600 hides results from the group


def fsync_dir(folder: Path) -> None:
    """Make a rename inside ``folder`` durable (a crash after it cannot bring the old name back)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # platforms without directory file descriptors
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def replacing(path: Path) -> Iterator[str]:
    """Yield a temporary name beside ``path`` to write; then fsync it, give it the umask's mode, rename it
    over ``path`` and fsync the folder. On any error (or a signal) the temporary file is removed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, _FILE_MODE)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def atomic_write(path: str | Path, data: bytes | str) -> None:
    """Write ``data`` to ``path`` so that a reader sees the old file or the new one, never half a file."""
    with replacing(Path(path)) as tmp:
        Path(tmp).write_bytes(data.encode("utf-8") if isinstance(data, str) else data)


def remove_temporaries(folder: Path) -> list[Path]:
    """Delete the temporary files a killed process left in ``folder`` (not recursive); return them."""
    found = sorted(folder.glob(f".*{TEMP_SUFFIX}")) if folder.is_dir() else []
    for path in found:
        path.unlink(missing_ok=True)
    return found


def _tensor_bytes(tensor: torch.Tensor) -> memoryview:
    flat = tensor.detach().to("cpu").contiguous().reshape(-1)
    return flat.view(torch.uint8).numpy().data


def checksum(tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str]) -> str:
    """SHA-256 over every tensor (name, dtype, shape, bytes) and every metadata entry but the checksum."""
    digest = hashlib.sha256()
    meta = {k: v for k, v in metadata.items() if k != CHECKSUM}
    digest.update(json.dumps(meta, sort_keys=True).encode("utf-8"))
    for name in sorted(tensors):
        tensor = tensors[name]
        digest.update(json.dumps([name, str(tensor.dtype), list(tensor.shape)]).encode("utf-8"))
        digest.update(_tensor_bytes(tensor))
    return digest.hexdigest()


def save_tensors(path: str | Path, tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, Any]) -> None:
    """Atomic, checksummed safetensors file; metadata values that are not strings are stored as JSON."""
    meta = {"format": FORMAT}
    meta.update({k: v if isinstance(v, str) else json.dumps(v) for k, v in metadata.items()})
    plain = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    meta[CHECKSUM] = checksum(plain, meta)
    with replacing(Path(path)) as tmp:
        try:
            save_file(plain, tmp, metadata=meta)
        except SafetensorError as exc:  # a full disk arrives as this, which is no OSError
            raise _os_error(exc, Path(path)) from exc


def _os_error(exc: SafetensorError, path: Path) -> OSError:
    """The OSError inside a safetensors write error ("... (os error 28)"), naming ``path``."""
    found = re.search(r"os error (\d+)", str(exc))
    code = int(found.group(1)) if found else errno.EIO
    return OSError(code, os.strerror(code) if found else str(exc), str(path))


@dataclass(frozen=True)
class Header:
    """What a safetensors file declares, read without loading a tensor: shapes and metadata."""

    shapes: dict[str, tuple[int, ...]]
    metadata: dict[str, str]

    def json(self, path: str | Path, key: str) -> Any:
        """One JSON metadata entry; a missing or malformed entry names the file and the key."""
        if key not in self.metadata:
            raise CheckpointError(f"{path}: no '{key}' in its metadata; was it written by ganforge?")
        try:
            return jsontext.loads(self.metadata[key])
        except ValueError as exc:
            raise CheckpointError(f"{path}: metadata '{key}' is not valid JSON ({exc})") from exc


@contextmanager
def _opened(path: Path) -> Iterator[Any]:
    """``safe_open(path)``; a missing, unreadable, truncated or foreign file is a :class:`CheckpointError`."""
    if not path.is_file():
        raise CheckpointError(f"{path}: weights file not found")
    try:
        with safe_open(str(path), framework="pt") as handle:
            yield handle
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    except CheckpointError:
        raise
    except Exception as exc:  # safetensors raises its own error types for truncated/foreign files
        raise CheckpointError(f"{path}: not a readable safetensors file ({exc})") from exc


def read_header(path: str | Path) -> Header:
    """The header of a safetensors file (safetensors validates offsets against the file size)."""
    path = Path(path)
    with _opened(path) as handle:
        shapes = {key: tuple(handle.get_slice(key).get_shape()) for key in handle.keys()}
        return Header(shapes, dict(handle.metadata() or {}))


def load_tensors(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Every tensor and the metadata; a file whose checksum does not match is refused.

    Files without a checksum (written before ganforge recorded one) load unverified.
    """
    path = Path(path)
    with _opened(path) as handle:
        tensors, meta = {k: handle.get_tensor(k) for k in handle.keys()}, dict(handle.metadata() or {})
    if CHECKSUM in meta and checksum(tensors, meta) != meta[CHECKSUM]:
        raise CheckpointError(f"{path}: checksum mismatch (the file is damaged or was modified)")
    return tensors, meta


def read_metadata(path: str | Path, key: str) -> Any:
    """One JSON metadata entry of a ganforge weights file (no tensor is loaded)."""
    return read_header(path).json(path, key)


def save_module(path: str | Path, module: nn.Module, metadata: Mapping[str, Any]) -> None:
    save_tensors(path, module.state_dict(), metadata)


def load_state(path: str | Path, module: nn.Module, tensors: Mapping[str, torch.Tensor]) -> None:
    """``module.load_state_dict(tensors)`` (strict), a mismatch reported against ``path``."""
    try:
        module.load_state_dict(tensors)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        raise CheckpointError(
            f"{path}: weights do not fit the model built from its config ({' '.join(first[:3])})"
        ) from exc


def optimizer_tensors(prefix: str, optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split an optimizer state dict into tensors (for safetensors) and JSON-able structure."""
    state = optimizer.state_dict()
    tensors, scalars = {}, {}
    for index, entries in state["state"].items():
        for name, value in entries.items():
            key = f"{prefix}.{index}.{name}"
            if torch.is_tensor(value):
                tensors[key] = value
            else:
                scalars[key] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def restore_optimizer(
    prefix: str, optimizer: torch.optim.Optimizer, tensors: Mapping[str, torch.Tensor], structure: Mapping[str, Any]
) -> None:
    state: dict[int, dict[str, Any]] = {}
    for key, value in list(tensors.items()) + list(structure["scalars"].items()):
        if key.startswith(f"{prefix}."):  # the networks' tensors share the file: "generator.weight", ...
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": structure["param_groups"]})
