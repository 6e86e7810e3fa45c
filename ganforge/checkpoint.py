"""Safetensors weights with JSON metadata, optimizer state without pickle, atomic writes.

A weights file carries its resolved config in the metadata (``ganforge.config``), so
``ganforge sample`` needs nothing but the file. Nothing is ever pickled.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save as safetensors_bytes
from torch import nn

from .errors import CheckpointError

FORMAT = "ganforge-1"


def atomic_write(path: str | Path, data: bytes | str) -> None:
    """Write to a temporary file beside ``path`` and rename it over ``path``: never half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_tensors(path: str | Path, tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, Any]) -> None:
    """Safetensors file; metadata values that are not strings are stored as JSON."""
    meta = {"format": FORMAT}
    meta.update({k: v if isinstance(v, str) else json.dumps(v) for k, v in metadata.items()})
    plain = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    atomic_write(path, safetensors_bytes(plain, metadata=meta))


def load_tensors(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: weights file not found")
    try:
        with safe_open(str(path), framework="pt") as handle:
            return {k: handle.get_tensor(k) for k in handle.keys()}, dict(handle.metadata() or {})
    except CheckpointError:
        raise
    except Exception as exc:  # safetensors raises its own error types for truncated/foreign files
        raise CheckpointError(f"{path}: not a readable safetensors file ({exc})") from exc


def read_metadata(path: str | Path, key: str) -> Any:
    """One JSON metadata entry of a ganforge weights file."""
    _, meta = load_tensors(path)
    if key not in meta:
        raise CheckpointError(f"{path}: no '{key}' in its metadata; was it written by ganforge?")
    return json.loads(meta[key])


def save_module(path: str | Path, module: nn.Module, metadata: Mapping[str, Any]) -> None:
    save_tensors(path, module.state_dict(), metadata)


def load_module(path: str | Path, module: nn.Module) -> dict[str, str]:
    """Load weights into ``module`` (strict) and return the file's metadata."""
    tensors, meta = load_tensors(path)
    try:
        module.load_state_dict(tensors)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: weights do not fit the model built from its config ({exc})") from exc
    return meta


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
        head, index, name = key.split(".", 2)
        if head == prefix:
            state.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": structure["param_groups"]})
