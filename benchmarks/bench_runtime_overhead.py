"""Overhead of the freezer on a small CNN: never-freeze wall-clock vs plain PyTorch, and SmartFRZ's own cost.

Trains the zoo's VGG-style CNN on Fashion-MNIST (28x28) in three modes, interleaved and repeated
so that machine noise hits all of them alike:

* ``plain``:    the loop without smartfrz;
* ``nofreeze``: the same loop through ``Freezer(..., policy=None)`` (forward + ``step()``);
* ``smartfrz``: the SmartFRZ policy with a predictor (recording every ``steps // 40`` steps, a
  freezing stage at each recording) and threshold 1.0, so that nothing freezes and every stage
  judges every layer (the worst case); its recording + prediction time is the time spent inside
  ``Freezer.step()``, reported as a fraction of the run's wall-clock.

Prints median wall-clock and process CPU seconds per mode and the ratios (CPU time is less
disturbed by other processes on a shared machine), plus SmartFRZ's cost per recording and per
stage, so its overhead can be read off for any cadence. Timing on CUDA is host wall-clock with a
synchronisation at the end of each run (CPU time is then not meaningful).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from tqdm import tqdm

from smartfrz.runtime import Freezer
from smartfrz.zoo.data import fashion_mnist_root, read_fashion_mnist
from smartfrz.zoo.models import vgg_cnn


def _predictor(name: str) -> tuple[object, str]:
    """The named predictor, or (``random``) an untrained one of the default architecture: same cost."""
    from smartfrz.predictor import AttentionPredictorNet, FreezePredictor, LabelRule, ModelConfig, load_predictor

    if name != "random":
        return load_predictor(name), name
    torch.manual_seed(0)
    return FreezePredictor(AttentionPredictorNet(ModelConfig()), 0.5, LabelRule(), {}), "random (untrained)"


def _data(n: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    x, y, _, _ = read_fashion_mnist(fashion_mnist_root(None))
    x = (x[:n].float() / 255.0 - 0.286) / 0.353
    return x[:, None].to(device), y[:n].to(device)


def _timed(fn: Callable, acc: dict[str, float], key: str) -> Callable:
    """Wrap ``fn`` so that its calls and their wall seconds add up in ``acc``."""

    def inner(*a: object) -> object:
        t = time.perf_counter()
        out = fn(*a)
        acc[key] += time.perf_counter() - t
        acc[key + "_n"] += 1
        return out

    return inner


def _run(mode: str, args: argparse.Namespace, data: tuple[torch.Tensor, torch.Tensor], predictor: object) -> dict:
    """Train ``args.steps`` steps in one mode; returns wall and CPU seconds (after warm-up) and policy timings."""
    x, y = data
    device = x.device
    torch.manual_seed(0)
    model = vgg_cnn(10).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    total = args.steps + args.warmup
    freezer = None
    forward: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = lambda xb, idx: model(xb)  # noqa: E731
    if mode == "nofreeze":
        freezer = Freezer(model, opt, None)
    elif mode == "smartfrz":
        # threshold 1 and no backstop: nothing freezes, so every stage judges every layer (the worst case)
        freezer = Freezer(model, opt, predictor, total_steps=total, threshold=1.0, backstop=None)  # type: ignore[arg-type]
    calls = {"observe": 0.0, "observe_n": 0, "decide": 0.0, "decide_n": 0}
    if freezer is not None:
        forward = freezer
        freezer.policy.observe = _timed(freezer.policy.observe, calls, "observe")  # type: ignore[method-assign]
        freezer.policy.decide = _timed(freezer.policy.decide, calls, "decide")  # type: ignore[method-assign]
    gen = torch.Generator().manual_seed(1)
    start = 0.0
    for step in range(total):
        if step == args.warmup:
            if device.type == "cuda":
                torch.cuda.synchronize()
            start, cpu_start = time.perf_counter(), time.process_time()
            if freezer is not None:
                freezer.overhead_s = freezer.policy_s = 0.0
            calls.update({k: 0 for k in calls})
        idx = torch.randperm(x.shape[0], generator=gen)[: args.batch].to(device)  # distinct dataset indices
        loss = F.cross_entropy(forward(x[idx], idx), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        if freezer is not None:
            freezer.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    return {"wall": wall, "cpu": cpu, "calls": calls, "summary": None if freezer is None else freezer.summary()}


def main(argv: list[str] | None = None) -> None:
    """Parse arguments, run the interleaved repeats, print the table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=200, help="timed optimizer steps per run (default 200)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps at the start of each run (default 5)")
    parser.add_argument("--batch", type=int, default=128, help="batch size (default 128)")
    parser.add_argument("--samples", type=int, default=10000, help="Fashion-MNIST training images used (default 10000)")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repeats of every mode (default 3)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="cpu or cuda")
    parser.add_argument(
        "--predictor", default="default", help="predictor name/path for the smartfrz mode, or 'random' (untrained)"
    )
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    predictor, predictor_name = _predictor(args.predictor)
    data = _data(args.samples, torch.device(args.device))
    modes = ("plain", "nofreeze", "smartfrz")
    results: dict[str, list[dict]] = {m: [] for m in modes}
    with tqdm(total=args.repeats * len(modes), desc="runs") as bar:
        for _ in range(args.repeats):
            for mode in modes:
                results[mode].append(_run(mode, args, data, predictor))
                bar.update()
    med = {(m, k): statistics.median(r[k] for r in results[m]) for m in modes for k in ("wall", "cpu")}
    print(f"device {args.device}, threads {torch.get_num_threads()}, {args.steps} timed steps x batch {args.batch}")
    print(f"predictor for smartfrz mode: {predictor_name}")
    for m in modes:
        runs = ", ".join(f"{r['wall']:.2f}/{r['cpu']:.2f}" for r in results[m])
        print(f"  {m:9s} median wall {med[m, 'wall']:.2f} s, cpu {med[m, 'cpu']:.2f} s  (runs wall/cpu: {runs})")
    for k in ("wall", "cpu"):
        paired = [n[k] / p[k] for n, p in zip(results["nofreeze"], results["plain"], strict=True)]
        print(
            f"nofreeze / plain {k} ratio: of medians {med['nofreeze', k] / med['plain', k]:.4f}, "
            f"paired per repeat: median {statistics.median(paired):.4f} (runs: {', '.join(f'{r:.3f}' for r in paired)})"
        )
    nf_step = statistics.median(r["summary"]["overhead_s"] for r in results["nofreeze"]) / args.steps
    print(f"nofreeze time inside Freezer.step: {nf_step * 1e6:.1f} us per step")
    sf = results["smartfrz"]
    step_s = med["plain", "wall"] / args.steps
    rec = sum(r["calls"]["observe"] for r in sf) / max(1, sum(r["calls"]["observe_n"] for r in sf))
    stage = sum(r["calls"]["decide"] for r in sf) / max(1, sum(r["calls"]["decide_n"] for r in sf))
    every = sf[0]["summary"]["policy"]["record_every"]
    print(
        f"smartfrz: record_every={every}, stage_every={sf[0]['summary']['policy']['stage_every']}; "
        f"per-step observe (recording on every {every}th) {rec * 1e3:.3f} ms, per stage {stage * 1e3:.3f} ms, "
        f"plain training step {step_s * 1e3:.1f} ms"
    )
    fraction = [r["summary"]["overhead_s"] / r["wall"] for r in sf]
    print(
        f"smartfrz time inside Freezer.step / wall: median {statistics.median(fraction):.4%} "
        f"(runs: {', '.join(f'{o:.3%}' for o in fraction)}); blocks frozen per run: "
        f"{[r['summary']['blocks_frozen'] for r in sf]}"
    )
    for cadence in (every, 10, 50):
        implied = (rec * every + stage) / (cadence * step_s)
        print(f"  implied recording+prediction overhead at record_every=stage_every={cadence}: {implied:.4%}")


if __name__ == "__main__":
    main()
