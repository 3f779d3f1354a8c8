"""Check segbench's clock: the same model timed by segbench.profiling and by torch.utils.benchmark.Timer.

Both time the same call in the same process, interleaved over ``--rounds``
rounds so that a change of machine load hits both alike: the "model" scope
(the network on a preprocessed batch) and the "end_to_end" scope
(adapter.predict on uint8 images). The figure compared is the mean time of a
call: the profiler's ``latency_ms_mean`` and Timer.timeit's mean. The
printed ratio is the median over rounds of profiler / Timer; target: within
5 % (0.95 to 1.05) on a CPU.

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
from pydantic import TypeAdapter
from torch.utils.benchmark import Timer

from segbench.data.base import DatasetInfo
from segbench.environment import device_name, resolve_device
from segbench.models.base import ModelAdapter
from segbench.profiling import Profiler, cpu_name
from segbench.registry import MODELS, load_plugins
from segbench.suite import EfficiencyConfig, ModelConfig


def build_adapter(entry: str, num_classes: int, device: torch.device) -> ModelAdapter:
    load_plugins()
    config = TypeAdapter(ModelConfig).validate_python({"name": "model", **yaml.safe_load(entry)})
    info = DatasetInfo("latency_check", num_classes, [f"class_{i}" for i in range(num_classes)])
    return MODELS[config.type](config, info, device)


def timer_mean_ms(scope: str, adapter: ModelAdapter, images: list[np.ndarray], iters: int) -> float:
    """Timer.timeit's mean over ``iters`` calls of the same thing the profiler times, in ms."""
    if scope == "model":
        module, args = adapter.forward_inputs(images)
        timer = Timer("module(*args)", globals={"module": module, "args": args},
                      num_threads=torch.get_num_threads())
    else:
        timer = Timer("adapter.predict(images, ids)",
                      globals={"adapter": adapter, "images": images, "ids": [str(i) for i in range(len(images))]},
                      num_threads=torch.get_num_threads())
    with torch.inference_mode():
        return timer.timeit(iters).mean * 1000


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
        ratios, ours, theirs = [], [], []
        for _ in range(args.rounds):
            row = profiler_row(scope, adapter, image, args, device)
            reference = timer_mean_ms(scope, adapter, [image] * args.batch_size, args.iters)
            ours.append(row["latency_ms_mean"])
            theirs.append(reference)
            ratios.append(row["latency_ms_mean"] / reference)
        results.append({"scope": scope, "profiler_ms": ours, "timer_ms": theirs, "ratios": ratios,
                        "ratio": statistics.median(ratios), "p50_ms": row["latency_ms_p50"],
                        "p99_ms": row["latency_ms_p99"], "gflops_per_image": row["gflops_per_image"]})
    return results


def report(args: argparse.Namespace, results: list[dict[str, Any]]) -> str:
    device = resolve_device(args.device)
    name = device_name(device) if device.type == "cuda" else cpu_name()
    lines = [f"device: {device} ({name}), torch {torch.__version__}, "
             f"CUDA {torch.version.cuda}, threads {torch.get_num_threads()}",
             f"model: {args.model}, input {args.height}x{args.width}, batch {args.batch_size}, "
             f"{args.iters} calls per measurement after {args.warmup} warm-up, {args.rounds} rounds",
             "| scope | profiler mean ms (per round) | Timer mean ms (per round) | ratio (median) | GFLOPs/image |",
             "|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['scope']} | {', '.join(f'{v:.2f}' for v in r['profiler_ms'])} | "
                     f"{', '.join(f'{v:.2f}' for v in r['timer_ms'])} | {r['ratio']:.3f} "
                     f"({', '.join(f'{v:.3f}' for v in r['ratios'])}) | {r['gflops_per_image']:.2f} |")
    verdict = all(0.95 <= r["ratio"] <= 1.05 for r in results)
    lines.append(f"within 5 %: {'yes' if verdict else 'NO'}")
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
