"""The GPU checks of benchmarks/gpu_check.sh, written as one Markdown report.

Sections (each one runs even when another failed; a failure is written into
the report with its error):

1. environment: device, driver, torch, CUDA, cuDNN;
2. the demo suite on the device with an efficiency section, and its accuracy
   checked against the committed CPU baseline (results/baselines/demo);
3. the clock: benchmarks/latency_check.py (CUDA events against
   torch.utils.benchmark.Timer), with the built-in DeepLabV3 at Cityscapes
   size, and an mmseg model too where mmseg is installed;
4. peak memory: the profiler's figure against a bare
   torch.cuda.max_memory_allocated around one forward pass, and the weights'
   figure against the allocator's growth when the model moves to the device;
5. where time goes: the accuracy metric's update against the forward pass,
   and the boundary and distance groups' (on the device's tensors);
6. the boundary and distance groups fed device tensors against CPU tensors:
   equal values;
7. benchmarks/harness_overhead.py on the device;
8. the demo suite under torchrun on 2 GPUs (NCCL) against one process, column by column;
9. benchmarks/boundary_speed.py with ``--device``: the boundary and distance
   groups on device tensors, next to the model's forward time there;
10. benchmarks/exported_speed.py with ``--device``: the same net as eager torch,
    TorchScript and ONNX Runtime (CUDA provider) on the device.

    PYTHONPATH=. python benchmarks/gpu_check.py [--device cuda] [--height 1024] [--width 2048]
        [--out benchmarks/results] [--quick]

``--quick`` shrinks every size and count (a dry run of the script, e.g. on a CPU).
"""

from __future__ import annotations

import argparse
import itertools
import platform
import re
import subprocess
import sys
import traceback
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml

from segbench.api import execute
from segbench.check import check
from segbench.types import DatasetInfo
from segbench.environment import cpu_name, device_name, resolve_device
from segbench.metrics.boundary import BoundaryMetric
from segbench.metrics.confusion import AccuracyMetric
from segbench.metrics.distance import DistanceMetric
from segbench.models.nets import load_demo_weights
from segbench.models.torch_adapter import build_builtin
from segbench.profiling import MIB, PeakMemory, Profiler, time_call
from segbench.store import load
from segbench.models.torch_adapter import BuiltinModelConfig
from segbench.profiling import EfficiencyConfig

ROOT = Path(__file__).resolve().parent.parent
MMSEG_MODEL = "{type: mmseg, config: deeplabv3_r50-d8_4xb2-40k_cityscapes-512x1024}"


def section(title: str, body: Callable[[], str]) -> str:
    try:
        text = body()
    except Exception:  # noqa: BLE001  (the report says what failed; the other sections still run)
        text = "FAILED:\n\n```\n" + traceback.format_exc() + "```"
    return f"## {title}\n\n{text}\n"


def fenced(text: str) -> str:
    return f"```\n{text.rstrip()}\n```"


def table(frame: pd.DataFrame) -> str:
    """A Markdown table (pandas' to_markdown needs tabulate, which the GPU machine may lack)."""
    def cell(value: object) -> str:
        return f"{value:.4g}" if isinstance(value, float) else str(value)
    lines = ["| " + " | ".join(map(str, frame.columns)) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines)


def script(name: str, *args: str) -> str:
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / name), *args], capture_output=True,
                            text=True, cwd=ROOT)
    text = result.stdout + (f"\n(exit {result.returncode})\n{result.stderr[-3000:]}" if result.returncode else "")
    return f"`python benchmarks/{name} {' '.join(args)}`\n\n" + fenced(text)


def environment(device: torch.device) -> str:
    lines = [f"- device: {device} — {device_name(device)}",
             f"- CPU: {cpu_name()}, Python {platform.python_version()}",
             f"- torch {torch.__version__}, CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}"]
    try:
        smi = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30).stdout.strip()
        lines.append(f"- nvidia-smi: {smi}")
    except (OSError, subprocess.SubprocessError):
        lines.append("- nvidia-smi: not available")
    return "\n".join(lines)


def demo_suite(device: torch.device, run_dir: Path, quick: bool) -> str:
    suite = yaml.safe_load((ROOT / "suites" / "demo.yaml").read_text())
    suite |= {"device": str(device), "efficiency": {"batch_sizes": [1, 8], "precision": ["fp32", "fp16"],
                                                    "warmup": 2 if quick else 10, "iters": 5 if quick else 50}}
    outcome = execute(suite, run_dir=run_dir, resume=False)
    results = load(run_dir)
    columns = ["model", "mIoU", "aAcc", "latency_ms_p50", "model_latency_ms_p50", "throughput_images_per_sec",
               "peak_memory_mib", "params", "gflops_per_image", "eval_seconds"]
    efficiency = results.efficiency[["model", "scope", "precision", "batch_size", "status", "latency_ms_p50",
                                     "latency_ms_p99", "throughput_images_per_sec", "peak_memory_allocated_mib",
                                     "peak_memory_reserved_mib", "peak_memory_rss_mib"]]
    verdict = check(load(ROOT / "results" / "baselines" / "demo"), results, tolerance=0.5)
    accuracy = verdict.table[verdict.table["metric"].isin(["mIoU", "aAcc", "mAcc", "mBF"])]
    return "\n\n".join([
        f"Run folder: `{run_dir}`; cells: {outcome.statuses}",
        table(results.summary[[c for c in columns if c in results.summary]]),
        "Efficiency rows:", table(efficiency),
        "Accuracy against the committed CPU baseline (tolerance 0.5 points):",
        table(accuracy[["model", "dataset", "metric", "baseline", "candidate", "change", "regressed"]])
        if {"model", "metric"} <= set(accuracy.columns) else table(accuracy)])


def sharded(device: torch.device, run_dir: Path) -> str:
    """The demo suite under torchrun, 2 ranks (NCCL on 2 GPUs), against 1 process on the same device type.

    With fewer than 2 GPUs it says so: the demo section already compares one
    GPU with the CPU baseline. On a CPU (a dry run) the ranks use gloo.
    """
    ranks = 2
    gpus = torch.cuda.device_count() if device.type == "cuda" else 0
    if device.type == "cuda" and gpus < ranks:
        return (f"{gpus} GPU here: the 2-rank NCCL run needs 2. The 1-process CUDA run against the CPU "
                "baseline is in the demo section.")
    suite = ROOT / "suites" / "demo.yaml"
    runs = {}
    for name, launcher in (("1 process", [sys.executable, "-m", "segbench"]),
                           (f"{ranks} ranks", [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                               "--nproc-per-node", str(ranks), "-m", "segbench"])):
        target = run_dir.parent / f"{run_dir.name}-{name.replace(' ', '-')}"
        result = subprocess.run([*launcher, "run", str(suite), "--device", device.type, "--run-dir", str(target),
                                 "--no-resume"], capture_output=True, text=True, cwd=ROOT)
        if result.returncode != 0:
            return f"{name}: exit {result.returncode}\n\n" + fenced(result.stderr[-3000:])
        runs[name] = load(target)
    one, many = runs.values()
    lines = [f"world_size in the manifests: {one.manifest['world_size']}, {many.manifest['world_size']}"]
    for table_name in ("summary", "per_class", "per_image"):
        a_table, b_table = getattr(one, table_name), getattr(many, table_name)
        columns = [c for c in a_table.columns if c != "eval_seconds"]
        numeric = [c for c in columns if pd.api.types.is_numeric_dtype(a_table[c])]
        differ = [c for c in columns if not a_table[c].equals(b_table[c])]
        largest = max((float((a_table[c] - b_table[c]).abs().max()) for c in numeric if c in differ), default=0.0)
        lines.append(f"- {table_name}: {len(columns)} columns, {len(differ)} differ"
                     + (f" ({', '.join(differ[:8])}; largest difference {largest:.3g})" if differ else ""))
    return "\n".join(lines)


def latency(device: torch.device, height: int, width: int, quick: bool) -> str:
    common = ["--device", str(device), "--height", str(height), "--width", str(width)]
    common += ["--iters", "5", "--rounds", "2", "--warmup", "1"] if quick else ["--iters", "50", "--rounds", "3"]
    parts = [script("latency_check.py", *common, "--model", "{type: builtin, arch: deeplabv3}")]
    try:
        import mmseg.models  # noqa: F401
    except ImportError as error:
        parts.append(f"mmseg model not timed: mmseg is not importable here ({error}).")
    else:
        parts.append("mmseg model not timed in a quick run." if quick
                     else script("latency_check.py", *common, "--model", MMSEG_MODEL))
    return "\n\n".join(parts)


def peak_memory(device: torch.device, height: int, width: int, quick: bool) -> str:
    if device.type != "cuda":
        return "Skipped: needs a CUDA device."
    torch.cuda.empty_cache()
    before = torch.cuda.memory_allocated(device)
    adapter = build_builtin(BuiltinModelConfig(name="m", type="builtin", arch="deeplabv3"),
                            DatasetInfo("x", 6, [str(i) for i in range(6)]), device)
    weights_allocated = (torch.cuda.memory_allocated(device) - before) / MIB
    image = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    rows = []
    for batch in (1, 2) if quick else (1, 4):
        config = EfficiencyConfig(batch_sizes=[batch], warmup=1, iters=3, scopes=["model"])
        [row] = Profiler(config, device).profile(adapter, image)
        module, args = adapter.forward_inputs([image] * batch)
        memory = PeakMemory(device)
        memory.reset()
        with torch.inference_mode():
            module(*args)
        bare = memory.read()["peak_memory_allocated_mib"]
        rows.append({"batch_size": batch, "profiler_peak_allocated_mib": row["peak_memory_allocated_mib"],
                     "bare_max_memory_allocated_mib": bare,
                     "ratio": row["peak_memory_allocated_mib"] / bare,
                     "profiler_weights_mib": row["weights_memory_mib"],
                     "allocator_growth_on_load_mib": weights_allocated})
        del module, args
    note = ("The bare figure holds the input batch too (it is allocated before the reset, as in the profiler), "
            "so the two should agree within a few MiB; the weights within the allocator's 512-byte rounding.")
    return table(pd.DataFrame(rows)) + "\n\n" + note


def metric_time(device: torch.device, height: int, width: int, quick: bool) -> str:
    net, _ = load_demo_weights("deeplabv3")
    net = net.to(device).eval()
    x = torch.randn(1, 3, height, width, device=device)
    pairs = [random_pair(height, width, 19, device, seed) for seed in range(3)]
    pred, label = pairs[0]
    repeats = 3 if quick else 20
    calls = itertools.count()

    def median_ms(call: Callable[[], object]) -> float:
        call()
        return float(np.median([time_call(call, device) for _ in range(repeats)]))

    with torch.inference_mode():
        forward = median_ms(lambda: net(x))
    accuracy = AccuracyMetric(19, 255, device)
    boundary, distance = BoundaryMetric(19, 255, device), DistanceMetric(19, 255, device)

    def boundary_family() -> None:
        """Both groups on the next of the distinct pairs, as the runner calls them (they share the work)."""
        pair = pairs[next(calls) % len(pairs)]
        boundary.update(*pair, "x")
        distance.update(*pair, "x")

    rows = [("forward (built-in deeplabv3, batch 1)", forward),
            ("accuracy update", median_ms(lambda: accuracy.update(pred, label, "x"))),
            ("boundary + distance updates (distinct images)", median_ms(boundary_family))]
    frame = pd.DataFrame(rows, columns=["what", "median_ms"])
    frame["share_of_forward"] = frame["median_ms"] / forward
    return f"One {height}x{width} image, 19 classes, {repeats} timed calls each.\n\n" + table(frame)


def random_pair(height: int, width: int, classes: int, device: torch.device,
                seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Blocky regions, ~5 % ignore, a prediction right on ~85 % of the pixels."""
    generator = torch.Generator().manual_seed(seed)
    cells = torch.randint(0, classes, (height // 32 + 1, width // 32 + 1), generator=generator)
    label = cells.repeat_interleave(32, 0).repeat_interleave(32, 1)[:height, :width].clone()
    label[torch.rand(label.shape, generator=generator) < 0.05] = 255
    noise = torch.randint(0, classes, label.shape, generator=generator)
    pred = torch.where((torch.rand(label.shape, generator=generator) < 0.85) & (label != 255), label, noise)
    return pred.to(device), label.to(device)


def boundary_paths(device: torch.device, height: int, width: int) -> str:
    pairs = [random_pair(height, width, 19, torch.device("cpu"), seed) for seed in range(2)]
    rows = []
    for group in (BoundaryMetric, DistanceMetric):
        on_device, on_cpu = group(19, 255, device), group(19, 255, "cpu")
        for i, (pred, label) in enumerate(pairs):
            on_device.update(pred.to(device), label.to(device), str(i))
            on_cpu.update(pred, label, str(i))
        a, b = on_device.compute().summary, on_cpu.compute().summary
        equal = all(np.isclose(a[k], b[k], rtol=0, atol=0, equal_nan=True) for k in a) and a.keys() == b.keys()
        rows.append({"group": group.name, "figures": len(a), "identical": equal})
    return table(pd.DataFrame(rows))


def harness(device: torch.device, quick: bool) -> str:
    args = ["--device", str(device)] + (["--images", "4", "--height", "128", "--width", "256", "--repeats", "1"]
                                        if quick else [])
    return script("harness_overhead.py", *args)


def boundary_speed(device: torch.device, quick: bool) -> str:
    """benchmarks/boundary_speed.py with the groups and the forward pass also timed on ``device``."""
    return script("boundary_speed.py", "--device", str(device), *(["--repeats", "2", "--images", "2"]
                                                                     if quick else []))


def exported_speed(device: torch.device, quick: bool) -> str:
    """benchmarks/exported_speed.py on ``device``: eager, TorchScript and ONNX Runtime, latency p50."""
    return script("exported_speed.py", "--device", str(device), *(["--repeats", "2", "--height", "64",
                                                                    "--width", "128"] if quick else []))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--height", type=int, default=1024)
    parser.add_argument("--width", type=int, default=2048)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.height, args.width = 128, 256
    device = resolve_device(args.device)
    name = device_name(device)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    slug = re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-").lower()
    run_dir = ROOT / "results" / "gpu_check" / stamp
    parts = [f"# segbench GPU check: {name}\n\n{stamp}, `{' '.join(sys.argv)}`" + (" (quick)" if args.quick else ""),
             section("Environment", lambda: environment(device)),
             section("Demo suite", lambda: demo_suite(device, run_dir, args.quick)),
             section("Sharded run (torchrun) against one process", lambda: sharded(device, run_dir)),
             section("Clock: profiler against torch.utils.benchmark",
                     lambda: latency(device, args.height, args.width, args.quick)),
             section("Peak memory", lambda: peak_memory(device, args.height, args.width, args.quick)),
             section("Metric time against forward time", lambda: metric_time(device, args.height, args.width,
                                                                              args.quick)),
             section("Boundary and distance: device tensors against CPU tensors",
                     lambda: boundary_paths(device, args.height, args.width)),
             section("Harness overhead", lambda: harness(device, args.quick)),
             section("Boundary family against its peers, on the device too",
                     lambda: boundary_speed(device, args.quick)),
             section("Eager, TorchScript and ONNX Runtime on the device",
                     lambda: exported_speed(device, args.quick))]
    args.out.mkdir(parents=True, exist_ok=True)
    report = args.out / f"gpu_check-{slug}-{stamp}.md"
    report.write_text("\n".join(parts))
    print(report)


if __name__ == "__main__":
    main()
