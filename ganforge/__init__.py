"""ganforge: a plugin-based, declarative GAN toolkit for medical image synthesis research."""

from .hookspecs import hookimpl
from .registry import Component, NoParams, PluginRegistrar, Registry

__version__ = "0.1.0"

__all__ = ["Component", "NoParams", "PluginRegistrar", "Registry", "__version__", "hookimpl"]
