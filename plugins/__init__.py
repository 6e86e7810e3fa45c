"""ganforge's bundled plugins, importable as ``ganforge_plugins``.

Each module is a plugin registered through the ``ganforge`` entry-point group in pyproject.toml,
exactly as a third-party plugin would be; the core never imports them by name.
"""
