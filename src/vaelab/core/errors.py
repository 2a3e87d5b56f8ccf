"""The exceptions vaelab raises on bad input. Each message names the field or file and the fix."""


class VaelabError(Exception):
    """Base class: the CLI prints these as one clear line instead of a traceback.

    `exit_code` is the CLI's: 2 when the input is wrong (the command line, the config, or a file or folder
    they name: fix it and rerun), 1 when something fails while running valid input (training diverges, the
    run folder is in use by another process)."""

    exit_code = 2


class ConfigError(VaelabError, ValueError):
    """A config value, key or override that cannot be used."""


class ModelError(VaelabError, ValueError):
    """An architecture that cannot be built or whose shapes do not chain."""


class ArgumentError(VaelabError, ValueError):
    """A command option or function argument outside its valid range (e.g. `--k 0`); the message gives the range."""


class DataError(VaelabError, ValueError):
    """A data file that is missing, unreadable or malformed."""


class CheckpointError(VaelabError, ValueError):
    """A run folder or checkpoint that is missing, corrupt or of another architecture."""


class TrainingError(VaelabError, RuntimeError):
    """Training that cannot go on, e.g. a non-finite loss."""

    exit_code = 1


class RunFolderError(ConfigError):
    """A run folder that cannot be used: a file, not empty and not vaelab's, already holding a run, or unwritable."""


class RunFolderBusyError(RunFolderError):
    """A run folder another vaelab process is writing (its lock is held)."""

    exit_code = 1


class VaelabWarning(UserWarning):
    """Something that works but deserves the user's attention; the CLI prints it as one `warning:` line."""


class DeprecatedKeyWarning(VaelabWarning):
    """A config key that still works under an old name; the message names the new key."""
