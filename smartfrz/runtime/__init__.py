"""The runtime users import: a Freezer over freezing policies, the freezing mechanism and the activation cache.

The Lightning and Hugging Face Trainer callbacks live in :mod:`smartfrz.runtime.lightning_callback`
and :mod:`smartfrz.runtime.hf_callback`, which import those libraries only when imported themselves.
"""

from smartfrz.runtime.cache import CacheConfig
from smartfrz.runtime.data import IndexedDataset, with_index
from smartfrz.runtime.events import FreezeEvent
from smartfrz.runtime.freezer import Freezer
from smartfrz.runtime.policies import AutoFreeze, FreezeOut, NoFreeze, Policy, PolicyContext
from smartfrz.runtime.protocols import IncrementalPredictorProtocol, PredictorProtocol
from smartfrz.runtime.smartfrz_policy import SmartFRZ
from smartfrz.runtime.summary import FreezerSummary

__all__ = [
    "AutoFreeze",
    "CacheConfig",
    "FreezeEvent",
    "FreezeOut",
    "Freezer",
    "FreezerSummary",
    "IncrementalPredictorProtocol",
    "IndexedDataset",
    "NoFreeze",
    "Policy",
    "PolicyContext",
    "PredictorProtocol",
    "SmartFRZ",
    "with_index",
]
