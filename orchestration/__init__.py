"""Running calls: the CLI, the run directory, and the fleet."""
