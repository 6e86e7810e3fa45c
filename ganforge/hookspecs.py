"""The single hook every ganforge plugin implements.

A plugin is a module (or object) with a function decorated ``@ganforge.hookimpl``::

    from ganforge import hookimpl

    @hookimpl
    def ganforge_register(registry):
        registry.register("attention", "my_attention", MyAttention, MyAttentionParams)

Bundled plugins are loaded exactly like third-party ones, from the ``ganforge`` entry-point group.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from .registry import PluginRegistrar

PROJECT = "ganforge"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def ganforge_register(registry: PluginRegistrar) -> None:
    """Register this plugin's components by calling ``registry.register(kind, name, factory, params)``.

    ``registry`` is bound to the calling plugin, so every component records which plugin supplied
    it; a name already taken by another plugin raises an error naming both.
    """
