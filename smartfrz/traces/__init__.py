"""HDF5 traces of training runs: schema and run record, atomic writer, validating reader, merge."""

from smartfrz.traces.merge import merge_traces
from smartfrz.traces.reader import (
    RunInfo,
    TraceFormatError,
    TraceSet,
    open_traces,
    validate_file,
)
from smartfrz.traces.schema import SCHEMA_VERSION, STAT_NAMES, STATUS_FLAGGED, STATUS_OK, RunRecord
from smartfrz.traces.writer import atomic_h5, write_run_file

__all__ = [
    "SCHEMA_VERSION",
    "STATUS_FLAGGED",
    "STATUS_OK",
    "STAT_NAMES",
    "RunInfo",
    "RunRecord",
    "TraceFormatError",
    "TraceSet",
    "atomic_h5",
    "merge_traces",
    "open_traces",
    "validate_file",
    "write_run_file",
]
