"""Errors a user can fix. The CLI prints each as one line and exits with its ``exit_code``."""

from __future__ import annotations


class GanforgeError(Exception):
    """Base class for every error caused by the user's input (config, files, names): exit code 2."""

    exit_code = 2


class ConfigError(GanforgeError):
    """A config file, key or value is wrong. The message names the file and the dotted key."""

    def __init__(self, message: str, *, file: str | None = None, key: str | None = None):
        self.file, self.key, self.reason = file, key, message
        where = ": ".join(part if part.isprintable() else repr(part) for part in (file, key) if part)
        super().__init__(f"{where}: {message}" if where else message)


class RegistryError(GanforgeError):
    """A component name is unknown, or two plugins claim the same name."""


class DataError(GanforgeError):
    """A dataset path or file cannot be read. The message names the path."""


class CheckpointError(GanforgeError):
    """A weights or run directory is missing, incomplete or does not match the config."""


class RunExists(GanforgeError):
    """``path`` already holds a run that would be written over (resume it, or overwrite it)."""

    def __init__(self, path: object):
        self.path = path
        super().__init__(f"{path}: already holds a run; resume it, or replace it with overwrite=True")


class MissingPlugins(CheckpointError):
    """A weights file that does not validate names plugins not loaded here (``missing``: "name version")."""

    def __init__(self, problem: str, missing: list[str]):
        self.problem, self.missing = problem, missing
        super().__init__(
            f"{problem}; it was written with plugin(s) not loaded here: {', '.join(missing)} "
            "(install them, or load their modules, if you trust them)"
        )


class ResumeRefused(CheckpointError):
    """A run cannot be resumed from ``path`` (``reason``); nothing was changed."""

    def __init__(self, path: object, reason: str, checkpoints: object):
        self.path, self.reason, self.checkpoints = path, reason, checkpoints
        super().__init__(
            f"cannot resume {path}: {reason}; nothing was changed; restore a checkpoint from a backup into "
            f"{checkpoints}, or start the run again with overwrite=True"
        )


class NothingAccepted(GanforgeError):
    """Latent class optimisation accepted no latent; ``tried`` says how many, with which settings."""

    BETTER = "or a better-trained generator (one whose samples the classifier already labels this way now and then)"

    def __init__(self, tried: str):
        self.tried = tried
        super().__init__(
            f"no latent was accepted ({tried}); try more steps, a higher max_tries or pool, a lower threshold, "
            f"fewer views, {self.BETTER}"
        )


class TrainingStopped(GanforgeError):
    """Training could not go on (a non-finite loss or gradient); the last good checkpoint is kept: exit code 1."""

    exit_code = 1


class Interrupted(BaseException):
    """SIGINT or SIGTERM stopped training at ``step``; ``checkpoint_step`` is the newest checkpoint on disk.

    A ``BaseException``, as ``KeyboardInterrupt`` is: raised from a signal handler it can land inside any
    ``except Exception`` (an import's optional dependency, a plugin loader, an image decoder), which must
    not swallow it; a signal while the command started was lost that way and the run went on.
    """

    def __init__(self, signum: int, step: int = -1, checkpoint_step: int | None = None):
        super().__init__(f"interrupted at step {step}")
        self.signum, self.step, self.checkpoint_step = signum, step, checkpoint_step

    @property
    def exit_code(self) -> int:
        return 128 + self.signum
