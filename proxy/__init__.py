"""ODX Relay: one NodeODX endpoint in front of many NodeODX nodes."""
__version__ = "0.1.0"
