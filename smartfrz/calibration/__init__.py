"""Freeze probes and label-threshold calibration: needs collection (to replay runs) and the runtime mechanism."""
