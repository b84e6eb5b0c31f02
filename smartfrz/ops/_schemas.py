"""Operator schemas of the `smartfrz` library, shared by the native build and the Python fallback.

`csrc/smartfrz.cpp` defines the same strings; a test checks that the two agree.
"""

from smartfrz.traces.schema import WEIGHT_STAT_NAMES

NAMESPACE = "smartfrz"

SCHEMAS: dict[str, str] = {
    "record_weights": "record_weights(Tensor[] weights, Tensor sample_idx, Tensor? prev) -> (Tensor, Tensor)",
    "cache_store": (
        "cache_store(Tensor(a!) cache, Tensor(b!) scales, Tensor(c!) valid, Tensor x, Tensor idx, "
        "bool check=True) -> ()"
    ),
    "cache_gather": (
        "cache_gather(Tensor cache, Tensor scales, Tensor valid, Tensor idx, ScalarType dtype, "
        "bool check=True) -> Tensor"
    ),
}

#: Columns of the per-layer statistics returned by ``record_weights`` (owned by the trace schema).
STAT_NAMES = WEIGHT_STAT_NAMES

#: Float dtypes a weight, an activation row or a gather output may have.
FLOAT_DTYPES = ("float32", "float16", "bfloat16", "float64")
#: Storage dtypes an activation cache may have.
CACHE_DTYPES = ("float32", "float16", "bfloat16", "int8")
