"""The analysis layer: prices, the performance/cost matrix, Pareto frontiers, run comparison and plots.
It reads stored records; it never runs an adapter or a measurement."""
