"""Error types that the CLI turns into one-line messages and exit codes.

Every error raised for bad user input is a :class:`DashError`; its message is a single line that
names the offending key/argument/tensor, the value found and what is allowed. The CLI prints
``error: <message>`` and exits with :attr:`DashError.exit_code` instead of a traceback.
"""
from __future__ import annotations

__all__ = ["DashError", "ConfigError", "DataError", "MissingExtraError", "NumericalError"]


class DashError(Exception):
    """Base class of the user-facing errors of nni_dash."""

    exit_code: int = 2

    def __str__(self) -> str:
        # one line, whatever user text (a YAML key, a file name) the message quotes
        return super().__str__().replace("\r", "\\r").replace("\n", "\\n")


class ConfigError(DashError, ValueError):
    """A configuration key, value or CLI argument is invalid."""


class DataError(DashError, ValueError):
    """Input data (arrays, files, labels) is malformed."""


class MissingExtraError(DashError, ImportError):
    """An optional dependency is missing; the message names the pip extra to install."""


class NumericalError(DashError, RuntimeError):
    """A NaN/inf appeared during training; the message names the step and the tensor."""

    exit_code = 3
