"""Check segbench's clock: the same model timed by segbench.profiling and by torch.utils.benchmark.Timer.

Both time the same call in the same process, interleaved over ``--rounds``
rounds, each going first in turn, so that a change of machine load hits both
alike: the "model" scope
(the network on a preprocessed batch) and the "end_to_end" scope
(adapter.predict on uint8 images). Timer.blocked_autorange runs for as long
as the profiler's measurement took. Compared: the profiler's
``latency_ms_p50`` with Timer's median (robust to a busy machine's
preemptions), and ``latency_ms_mean`` with Timer's mean. The ratios printed
are medians over rounds of profiler / Timer; target: within 5 % (0.95 to
1.05) on a CPU.

On CUDA the profiler brackets each call with CUDA events after a synchronize;
Timer synchronizes only at the ends of its block, so its calls may overlap
the launch of the next: a ratio a little above 1 is that launch latency.

    PYTHONPATH=. python benchmarks/latency_check.py [--model '{type: builtin, arch: deeplabv3}']
        [--height 512] [--width 1024] [--device cpu] [--batch-size 1] [--iters 20] [--warmup 3]
        [--rounds 3] [--threads N] [--num-classes 19]

``--model`` is a suite's model entry (YAML); an mmseg model works where mmseg
is installed, e.g. ``{type: mmseg, config: deeplabv3_r50-d8_4xb2-40k_cityscapes-512x1024}``.
"""

from __future__ import annotations

import argparse
import statistics
from typing import Any

import numpy as np
import torch
import yaml
from torch.utils.benchmark import Timer

from segbench.types import DatasetInfo
from segbench.environment import device_name, resolve_device
from segbench.models.base import ModelAdapter
from segbench.profiling import Profiler
from segbench.registry import MODELS, load_plugins
from segbench.profiling import EfficiencyConfig


def build_adapter(entry: str, num_classes: int, device: torch.device) -> ModelAdapter:
    load_plugins()
    entry = {"name": "model", **yaml.safe_load(entry)}
    source = MODELS[entry.get("type")]
    config = source.config.model_validate(entry)
    info = DatasetInfo("latency_check", num_classes, [f"class_{i}" for i in range(num_classes)])
    return source.build(config, info, device)


def timer_ms(scope: str, adapter: ModelAdapter, images: list[np.ndarray], seconds: float) -> tuple[float, float]:
    """Timer's (median, mean) in ms of the same call the profiler times, over ``seconds`` of calls."""
    if scope == "model":
        module, args = adapter.forward_inputs(images)
        timer = Timer("module(*args)", globals={"module": module, "args": args},
                      num_threads=torch.get_num_threads())
    else:
        timer = Timer("adapter.predict(images, ids)",
                      globals={"adapter": adapter, "images": images, "ids": [str(i) for i in range(len(images))]},
                      num_threads=torch.get_num_threads())
    with torch.inference_mode():
        measurement = timer.blocked_autorange(min_run_time=seconds)
    return measurement.median * 1000, measurement.mean * 1000


def profiler_row(scope: str, adapter: ModelAdapter, image: np.ndarray, args: argparse.Namespace,
                 device: torch.device) -> dict[str, Any]:
    config = EfficiencyConfig(batch_sizes=[args.batch_size], warmup=args.warmup, iters=args.iters, scopes=[scope])
    [row] = Profiler(config, device).profile(adapter, image)
    if row["status"] != "ok":
        raise SystemExit(f"profiler: {row['status']}: {row['note']}")
    return row


def check(args: argparse.Namespace) -> list[dict[str, Any]]:
    device = resolve_device(args.device)
    adapter = build_adapter(args.model, args.num_classes, device)
    image = np.random.default_rng(0).integers(0, 256, (args.height, args.width, 3), dtype=np.uint8)
    results = []
    for scope in ("model", "end_to_end"):
        rounds = []
        for i in range(args.rounds):
            timer_first = i % 2 == 1  # alternate, so that neither always runs right after the other
            if timer_first:  # for as long as the profiler's previous measurement
                median, mean = timer_ms(scope, adapter, [image] * args.batch_size, seconds)
            row = profiler_row(scope, adapter, image, args, device)
            seconds = row["latency_ms_mean"] * row["iterations"] / 1000
            if not timer_first:
                median, mean = timer_ms(scope, adapter, [image] * args.batch_size, seconds)
            rounds.append({"p50": row["latency_ms_p50"], "median": median, "mean": row["latency_ms_mean"],
                           "timer_mean": mean})
        results.append({"scope": scope, "rounds": rounds, "gflops_per_image": row["gflops_per_image"],
                        "median_ratio": statistics.median(r["p50"] / r["median"] for r in rounds),
                        "mean_ratio": statistics.median(r["mean"] / r["timer_mean"] for r in rounds)})
    return results


def report(args: argparse.Namespace, results: list[dict[str, Any]]) -> str:
    device = resolve_device(args.device)
    name = device_name(device)
    lines = [f"device: {device} ({name}), torch {torch.__version__}, "
             f"CUDA {torch.version.cuda}, threads {torch.get_num_threads()}",
             f"model: {args.model}, input {args.height}x{args.width}, batch {args.batch_size}, "
             f"{args.iters} calls per measurement after {args.warmup} warm-up, {args.rounds} rounds",
             "| scope | profiler p50 ms | Timer median ms | ratio | profiler mean ms | Timer mean ms | ratio "
             "| GFLOPs/image |", "|---|---|---|---|---|---|---|---|"]

    def values(r: dict, key: str) -> str:
        return ", ".join(f"{round_[key]:.2f}" for round_ in r["rounds"])
    for r in results:
        lines.append(f"| {r['scope']} | {values(r, 'p50')} | {values(r, 'median')} | {r['median_ratio']:.3f} | "
                     f"{values(r, 'mean')} | {values(r, 'timer_mean')} | {r['mean_ratio']:.3f} | "
                     f"{r['gflops_per_image']:.2f} |")
    within = all(0.95 <= r["median_ratio"] <= 1.05 for r in results)
    lines.append(f"p50 / Timer median within 5 % for both scopes: {'yes' if within else 'NO'} "
                 f"(ratios are medians over rounds; values per round)")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="{type: builtin, arch: deeplabv3}")
    parser.add_argument("--num-classes", type=int, default=19)
    parser.add_argument("--height", type=int, default=512)
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(report(args, check(args)))


if __name__ == "__main__":
    main()
