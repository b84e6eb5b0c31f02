"""Wall-clock saved against FLOPs saved by a frozen prefix, with and without the activation cache.

Trains a small MLP of ``--blocks`` blocks (``--blocks - 1`` Linear+ReLU blocks and a Linear head) in
three modes, the frozen ones with the first ``--frozen`` blocks frozen from the first step on:

* ``plain``:  the loop without smartfrz;
* ``frozen``: through a ``Freezer`` (no cache): the prefix still runs forward, but no backward;
* ``cached``: the same with the activation cache: after the first epoch the prefix is not run at all.

Modes run interleaved, ABC then CBA and so on, so that drift on a shared machine hits all of them
alike. Per repeat and mode it reports the FLOPs saved against ``plain`` twice: from the freezer's
own accounting (``smartfrz.runtime.accounting``: forward FLOPs counted per block, backward = twice
the forward) and counted with ``FlopCounterMode`` over one steady-state training step (forward +
backward), then the wall-clock saved over the timed epochs (paired with the same repeat's
``plain`` run) and the ratio wall-clock saved / FLOPs saved, as median, IQR and min..max.

    python benchmarks/bench_wallclock_vs_flops.py --repeats 5
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from smartfrz.runtime import CacheConfig, Freezer, Policy

MODES = ("plain", "frozen", "cached")


class FreezePrefix(Policy):
    """Freeze the first ``k`` blocks at the first step, and nothing more."""

    name = "freeze_prefix"

    def __init__(self, k: int) -> None:
        super().__init__()
        self.k = k

    def is_stage(self, step: int) -> bool:
        return step == 1

    def decide(self, step: int, num_frozen: int) -> int:
        return self.k


@dataclass
class Run:
    """One timed run of one mode."""

    wall_s: float
    flops_saved_accounted: float  # fraction of plain training's FLOPs over the timed steps (0 for plain)
    step_flops_counted: float  # FlopCounterMode's count for one steady-state step (forward + backward)


def _model(args: argparse.Namespace) -> nn.Sequential:
    torch.manual_seed(0)
    w = args.width
    body = [nn.Sequential(nn.Linear(w, w), nn.ReLU()) for _ in range(args.blocks - 1)]
    return nn.Sequential(*body, nn.Linear(w, 10)).to(args.device)


def _data(args: argparse.Namespace) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(args.samples, args.width, generator=g)
    return x.to(args.device), (x[:, 0] > 0).long().to(args.device)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _counted_step_flops(step: Callable[[Tensor], None], idx: Tensor) -> float:
    """FLOPs of one training step (forward + backward) as FlopCounterMode counts them."""
    counter = FlopCounterMode(display=False)
    with counter:
        step(idx)
    return float(counter.get_total_flops())


def run_mode(mode: str, args: argparse.Namespace, data: tuple[Tensor, Tensor]) -> Run:
    """Train ``args.warmup_epochs`` untimed then ``args.epochs`` timed epochs in one mode."""
    x, y = data
    model = _model(args)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    freezer = None
    if mode != "plain":
        cache = CacheConfig(dtype=args.cache_dtype) if mode == "cached" else None
        freezer = Freezer(model, opt, FreezePrefix(args.frozen), cache=cache, deterministic_inputs=True, verbose=False)

    def step(idx: Tensor) -> None:  # idx on the CPU, as a DataLoader gives it
        rows = idx.to(args.device)
        out = model(x[rows]) if freezer is None else freezer(x[rows], idx)
        loss = F.cross_entropy(out, y[rows])
        opt.zero_grad(set_to_none=True)
        loss.backward()

    def epoch(seed: int) -> None:
        order = torch.randperm(args.samples, generator=torch.Generator().manual_seed(seed))
        for batch in order.split(args.batch):
            step(batch)
            opt.step()
            if freezer is not None:
                freezer.step()

    for e in range(args.warmup_epochs):
        epoch(e)
    before = None if freezer is None else freezer.flops.summary()
    _sync(args.device)
    start = time.perf_counter()
    for e in range(args.warmup_epochs, args.warmup_epochs + args.epochs):
        epoch(e)
    _sync(args.device)
    wall = time.perf_counter() - start
    counted = _counted_step_flops(step, torch.arange(args.batch))
    if freezer is None or before is None:
        return Run(wall, 0.0, counted)
    after = freezer.flops.summary()
    full = after["flops_full"] - before["flops_full"]  # type: ignore[operator]
    saved = after["flops_saved"] - before["flops_saved"]  # type: ignore[operator]
    return Run(wall, saved / full if full else 0.0, counted)


def _spread(values: list[float]) -> tuple[float, float, float, float, float]:
    """Median, first and third quartile, min and max."""
    if len(values) < 2:
        v = values[0]
        return v, v, v, v, v
    q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return statistics.median(values), q1, q3, min(values), max(values)


def table(results: dict[str, list[Run]]) -> list[str]:
    """The printed table: FLOPs saved, wall-clock saved and their ratio per mode, with spreads."""
    lines = [
        "| mode | FLOPs saved (accounting) | FLOPs saved (counted) | wall-clock saved: median [IQR] (min..max) "
        "| wall saved / FLOPs saved: median [IQR] (min..max) |",
        "|---|---|---|---|---|",
    ]
    plain = results["plain"]
    for mode in MODES[1:]:
        runs = results[mode]
        wall_saved = [1.0 - r.wall_s / p.wall_s for r, p in zip(runs, plain, strict=True)]
        ratio = [w / r.flops_saved_accounted for w, r in zip(wall_saved, runs, strict=True)]
        flops = statistics.median(r.flops_saved_accounted for r in runs)
        counted = statistics.median(
            1.0 - r.step_flops_counted / p.step_flops_counted for r, p in zip(runs, plain, strict=True)
        )
        w, wq1, wq3, wmin, wmax = _spread(wall_saved)
        q, qq1, qq3, qmin, qmax = _spread(ratio)
        lines.append(
            f"| {mode} | {flops:.1%} | {counted:.1%} | {w:.1%} [{wq1:.1%}, {wq3:.1%}] ({wmin:.1%}..{wmax:.1%}) "
            f"| {q:.2f} [{qq1:.2f}, {qq3:.2f}] ({qmin:.2f}..{qmax:.2f}) |"
        )
    return lines


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="cpu or cuda")
    parser.add_argument("--blocks", type=int, default=8, help="blocks, head included (default 8)")
    parser.add_argument("--frozen", type=int, default=4, help="blocks frozen from the first step (default 4)")
    parser.add_argument("--width", type=int, default=512, help="features per layer (default 512)")
    parser.add_argument("--samples", type=int, default=2048, help="training samples (default 2048)")
    parser.add_argument("--batch", type=int, default=128, help="batch size (default 128)")
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs per run (default 2)")
    parser.add_argument("--warmup-epochs", type=int, default=1, help="untimed epochs first; fills the cache (1)")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved repeats of every mode (default 5)")
    parser.add_argument("--cache-dtype", default="float16", help="activation cache dtype (default float16)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args(argv)
    if not 0 < args.frozen < args.blocks:
        parser.error("--frozen must be between 1 and --blocks - 1 (the head never freezes)")
    return args


def main(argv: list[str] | None = None) -> dict[str, list[Run]]:
    """Run the interleaved repeats and print the table; returns the runs per mode."""
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    data = _data(args)
    results: dict[str, list[Run]] = {m: [] for m in MODES}
    for r in range(args.repeats):
        for mode in MODES if r % 2 == 0 else MODES[::-1]:
            results[mode].append(run_mode(mode, args, data))
    plain_wall = statistics.median(r.wall_s for r in results["plain"])
    steps = args.epochs * -(-args.samples // args.batch)
    print(
        f"device {args.device}, threads {torch.get_num_threads()}; MLP of {args.blocks} blocks x width {args.width}, "
        f"{args.frozen} frozen; {steps} timed steps x batch {args.batch} per run, {args.repeats} repeats "
        f"(ABC/CBA interleaved); plain median {plain_wall:.2f} s ({plain_wall / steps * 1e3:.2f} ms/step)"
    )
    for line in table(results):
        print(line)
    return results


if __name__ == "__main__":
    main()
