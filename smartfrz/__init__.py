"""smartfrz: automatic layer freezing for PyTorch training (SmartFRZ, ICLR 2023, and beyond).

The core import is light: the runtime, predictor and ops load on first use, e.g.
``smartfrz.Freezer`` or ``smartfrz.load_predictor``.
"""

from __future__ import annotations

import importlib
from typing import Any

from smartfrz._version import __version__

_LAZY = {
    "Freezer": "smartfrz.runtime",
    "CacheConfig": "smartfrz.runtime",
    "FreezeOut": "smartfrz.runtime",
    "AutoFreeze": "smartfrz.runtime",
    "NoFreeze": "smartfrz.runtime",
    "SmartFRZ": "smartfrz.runtime",
    "load_predictor": "smartfrz.predictor",
    "discover_blocks": "smartfrz.blocks",
    "Block": "smartfrz.blocks",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    """Import the public names on first use, so `import smartfrz` stays cheap."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'smartfrz' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
