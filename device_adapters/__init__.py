"""One module per device adapter. Each depends on the core (hwbench), never the reverse,
and imports its vendor library only inside its own functions."""
