"""hwbench: measure where each model should run, and what it costs there."""

__version__ = "0.2.0"
