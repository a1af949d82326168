"""The one error family. Library code raises these; only the CLI prints and exits."""

from __future__ import annotations


class HwbenchError(Exception):
    """Base of every error hwbench expects and explains in one line."""

    exit_code = 2


class UsageError(HwbenchError):
    """Bad input from the user: a flag, a file, a name. Exit code 2."""


class ModelError(HwbenchError):
    """A model that cannot be found, read or exported."""


class AdapterUnavailable(HwbenchError):
    """An adapter whose runtime, driver or device is missing here."""


class UnsupportedPoint(HwbenchError):
    """A (model, precision, batch, scenario) point an adapter cannot run; becomes status=unsupported."""


class ResultsError(HwbenchError):
    """Results that cannot be read: missing, truncated, foreign or from a newer schema."""


class ConfigError(UsageError):
    """A sweep, price or config file with problems; the message lists every one."""
