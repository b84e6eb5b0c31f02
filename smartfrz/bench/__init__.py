"""`python -m smartfrz.bench`: SmartFRZ against FreezeOut, AutoFreeze and no freezing, paired by seed.

Importing this package registers the benchmark-only tasks (held out from the shipped predictor's
training data) in the zoo.
"""

from smartfrz.bench.policies import DEFAULT_POLICIES, PolicySpec, ScheduledFreeze
from smartfrz.bench.report import markdown, summarise
from smartfrz.bench.runner import BenchConfig, run_benchmark
from smartfrz.bench.tasks import BENCH_TASKS, register_bench_tasks

register_bench_tasks()

__all__ = [
    "BENCH_TASKS",
    "DEFAULT_POLICIES",
    "BenchConfig",
    "PolicySpec",
    "ScheduledFreeze",
    "markdown",
    "run_benchmark",
    "summarise",
]
