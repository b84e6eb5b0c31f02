"""smartfrz: automatic layer freezing for PyTorch training (SmartFRZ, ICLR 2023, and beyond)."""

from smartfrz._version import __version__

__all__ = ["__version__"]
