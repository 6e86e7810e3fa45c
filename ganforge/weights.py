"""Loading weights files someone else wrote: no code runs, nothing is allocated before it is checked.

A ganforge weights file describes its model in its metadata. Building that model naively would let
the file import modules (its config's ``plugins``) and size an allocation (a 72 KB file asking for
width 2048). So, in order:

1. the registry comes from the caller (installed entry points, ``--plugin``, ``$GANFORGE_PLUGINS``);
   the file's own plugin list is only read, to name what is missing;
2. the model is built on PyTorch's meta device (shapes, no storage) and its state-dict shapes are
   compared with the tensor shapes the file's header declares, which safetensors has already
   checked against the file's size;
3. only then is the model built for real and the checksum-verified tensors loaded into it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .checkpoint import Header, load_state, load_tensors, read_header
from .config import Schema, as_recorded, validate_config
from .errors import CheckpointError, ConfigError, MissingPlugins
from .registry import Registry

PLUGINS_KEY = "ganforge.plugins"


@contextmanager
def shapes_only() -> Iterator[None]:
    """Build modules on the meta device: shapes, no storage. (The bundled spectral norm skips its power
    iterations there, ``ganforge_plugins.norms``: they would compute nothing and cost seconds.)"""
    with torch.device("meta"):
        yield


def _missing_plugins(path: Path, header: Header, registry: Registry) -> list[str]:
    """ "name version" of each plugin the file was written with that is not loaded here."""
    recorded = header.json(path, PLUGINS_KEY) if PLUGINS_KEY in header.metadata else {}
    if not isinstance(recorded, dict):
        return []
    loaded = {component.plugin for component in registry}
    return [f"{name} {version}" for name, version in sorted(recorded.items()) if name not in loaded]


def _compare_shapes(path: Path, expected: dict[str, tuple[int, ...]], header: Header) -> None:
    declared = header.shapes
    problems = [f"{k} missing" for k in sorted(expected.keys() - declared.keys())]
    problems += [f"unexpected {k}" for k in sorted(declared.keys() - expected.keys())]
    problems += [
        f"{k}: model {list(expected[k])}, file {list(declared[k])}"
        for k in sorted(expected.keys() & declared.keys())
        if expected[k] != declared[k]
    ]
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise CheckpointError(
            f"{path}: the model its metadata describes does not match its tensors: {'; '.join(problems[:3])}{more}"
        )


def load_model(
    path: str | Path,
    registry: Registry,
    config_key: str,
    build: Callable[[Any], nn.Module],
    schema: Schema | None = None,
) -> tuple[nn.Module, Any, Header]:
    """Validate the config stored under ``config_key``, check ``build(config)``'s shapes, then load.

    Returns the model (eval mode, no gradients), its validated config and the file's header.
    """
    path = Path(path)
    header = read_header(path)
    raw = header.json(path, config_key)
    if not isinstance(raw, dict):
        raise CheckpointError(f"{path}: metadata '{config_key}' is not a config table")
    try:
        config = validate_config(as_recorded(raw), registry, f"{path} (metadata)", schema)
    except ConfigError as exc:
        missing = _missing_plugins(path, header, registry)
        raise (MissingPlugins(str(exc), missing) if missing else CheckpointError(str(exc))) from exc
    try:
        with shapes_only():
            expected = {k: tuple(v.shape) for k, v in build(config).state_dict().items()}
    except CheckpointError:
        raise
    except Exception as exc:  # a plugin's factory refusing the parameters it was given
        raise CheckpointError(f"{path}: cannot build the model its metadata describes ({exc})") from exc
    _compare_shapes(path, expected, header)
    model = build(config)
    tensors, _ = load_tensors(path)
    load_state(path, model, tensors)
    return model.eval().requires_grad_(False), config, header
