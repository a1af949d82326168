"""hwbench: measure where each model should run, and what it costs there."""

__version__ = "0.2.0"

from hwbench import _moved

_moved.install()  # old flat paths (hwbench.store, ...) still import, with a DeprecationWarning
