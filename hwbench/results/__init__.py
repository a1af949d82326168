"""The results layer: the versioned record schema and the run folders that store records."""
