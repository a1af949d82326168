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
    """An adapter whose runtime, driver or device is missing here. Exit code 4 when nothing asked for can run."""

    exit_code = 4


class UnsupportedPoint(HwbenchError):
    """A (model, precision, batch, scenario) point an adapter cannot run; becomes status=unsupported."""


class ResultsError(HwbenchError):
    """Results that cannot be read: missing, truncated, foreign or from a newer schema."""


class StorageError(HwbenchError):
    """The run folder cannot be written (full disk, quota, I/O error): the message names the path and how
    to finish the run once there is room. Exit code 1: nothing the user typed was wrong."""

    exit_code = 1


class RunLocked(HwbenchError):
    """A run folder another live hwbench process is writing (its lock names the PID)."""


class ConfigError(UsageError):
    """A sweep, price or config file with problems; the message lists every one."""
