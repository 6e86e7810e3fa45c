"""ganforge: a plugin-based, declarative GAN toolkit for medical image synthesis research.

The names below are imported on first use, so that ``import ganforge`` costs nothing: the
``ganforge`` command installs its signal handlers before anything heavy loads (:mod:`ganforge.launch`).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY = {
    "hookimpl": ".hookspecs",
    "Component": ".registry",
    "NoParams": ".registry",
    "PluginRegistrar": ".registry",
    "Registry": ".registry",
}

__all__ = ["Component", "NoParams", "PluginRegistrar", "Registry", "__version__", "hookimpl"]

if TYPE_CHECKING:
    from .hookspecs import hookimpl
    from .registry import Component, NoParams, PluginRegistrar, Registry


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module 'ganforge' has no attribute {name!r}")
