"""Load the native `smartfrz` op library, or define the ops from the PyTorch reference.

Order: nothing native when ``SMARTFRZ_NATIVE=0``; else the library named by ``SMARTFRZ_LIBRARY``
(a CMake build, loaded with ``torch.ops.load_library``), else the
``smartfrz._C`` module built by setup.py, else the pure
PyTorch reference with one warning. Devices a native build has no kernel for (a CPU-only build
used on CUDA) are served by the reference too, so every op works everywhere.
"""

from __future__ import annotations

import importlib
import os
import warnings

import torch

from smartfrz.ops import predictor, reference
from smartfrz.ops._fake import FAKE_KERNELS
from smartfrz.ops._schemas import NAMESPACE, SCHEMAS

DEVICE_KEYS = {"cpu": "CPU", "cuda": "CUDA"}
_REFERENCE_KERNELS = {
    "record_weights": reference.record_weights,
    "cache_store": reference.cache_store,
    "cache_gather": reference.cache_gather,
    "predictor_logits": predictor.predictor_logits,
}


class NativeLibraryError(RuntimeError):
    """The native library named by SMARTFRZ_LIBRARY could not be loaded."""


def _load_native() -> str | None:
    """Load the compiled ops; return a description of the source, or None when absent."""
    if os.environ.get("SMARTFRZ_NATIVE") == "0":
        return None
    path = os.environ.get("SMARTFRZ_LIBRARY")
    if path:
        try:
            torch.ops.load_library(path)
        except OSError as err:
            raise NativeLibraryError(f"SMARTFRZ_LIBRARY={path!r} could not be loaded: {err}") from err
        return f"cmake ({path})"
    try:
        importlib.import_module("smartfrz._C")
    except ImportError as err:
        if "No module named" not in str(err):
            warnings.warn(f"smartfrz._C exists but failed to load: {err}", RuntimeWarning, stacklevel=3)
        return None
    return "setup.py (smartfrz._C)"


def _has_kernel(op: str, key: str) -> bool:
    return torch._C._dispatch_has_kernel_for_dispatch_key(f"{NAMESPACE}::{op}", key)


def load() -> dict[str, dict[str, str]]:
    """Define the ops, load the native kernels, and serve the rest from the reference; return each backend."""
    # Kept alive for the life of the process: dropping a Library deregisters its schemas and kernels.
    library = torch.library.Library(NAMESPACE, "DEF")
    _LIBRARIES.append(library)
    for schema in SCHEMAS.values():
        library.define(schema)
    source = _load_native()
    if source is None:
        warnings.warn(
            "smartfrz: the compiled extension is not available, using the pure-PyTorch reference ops "
            "(slower). Build it with `pip install --no-build-isolation -e .`.",
            RuntimeWarning,
            stacklevel=3,
        )
    backends: dict[str, dict[str, str]] = {}
    for op in SCHEMAS:
        backends[op] = {}
        for device, key in DEVICE_KEYS.items():
            if _has_kernel(op, key):
                backends[op][device] = f"native: {source}"
            else:
                library.impl(op, _REFERENCE_KERNELS[op], key)
                backends[op][device] = "reference"
        torch.library.register_fake(f"{NAMESPACE}::{op}", FAKE_KERNELS[op], lib=library)
    # without an autograd kernel, backward through the op would silently give zero gradients
    torch.library.register_autograd(f"{NAMESPACE}::predictor_logits", _predictor_logits_backward, lib=library)
    return backends


def _predictor_logits_backward(ctx: object, grad: torch.Tensor) -> None:
    """The fused predictor forward is inference only: refuse a backward instead of returning zeros."""
    raise RuntimeError(
        "smartfrz.predictor_logits has no gradient (it is the inference path); "
        "train through smartfrz.ops.predictor.attention_logits (AttentionPredictorNet.forward_embedded)"
    )


_LIBRARIES: list[torch.library.Library] = []
