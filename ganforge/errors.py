"""Errors a user can fix. The CLI prints them as one line and exits with code 2."""

from __future__ import annotations


class GanforgeError(Exception):
    """Base class for every error caused by the user's input (config, files, names)."""


class ConfigError(GanforgeError):
    """A config file, key or value is wrong. The message names the file and the dotted key."""

    def __init__(self, message: str, *, file: str | None = None, key: str | None = None):
        self.file, self.key, self.reason = file, key, message
        where = ": ".join(part for part in (file, key) if part)
        super().__init__(f"{where}: {message}" if where else message)


class RegistryError(GanforgeError):
    """A component name is unknown, or two plugins claim the same name."""


class DataError(GanforgeError):
    """A dataset path or file cannot be read. The message names the path."""


class CheckpointError(GanforgeError):
    """A weights or run directory is missing, incomplete or does not match the config."""
