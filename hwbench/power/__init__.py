"""Power meters: measure energy over a window, and say how (counter, sampled, estimate)."""
