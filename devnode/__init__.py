"""NodeODX-compatible development node: simulated processing with real, georeferenced outputs."""
