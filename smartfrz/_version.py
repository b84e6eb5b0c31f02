"""Package version (single source of truth for setup.py and the trace files)."""

__version__ = "0.1.0"
