"""Does the forward pass wait for the metrics? Metric workers 0 (inline) against ``auto``.

A stand-in for a GPU: a ``type: python`` model whose forward sleeps
``--sleep`` seconds per image (releasing the GIL, as a GPU kernel leaves the
CPU free) and then runs a 1x1 convolution, so that its predictions are
blobby like a real net's. Data: ``--images`` synthetic scenes at
``--height`` x ``--width`` (512x1024 by default), written once as PNG files
and read as a ``folder`` dataset (drawing the scenes during the run would
cost more than the metrics), the default metric groups on (accuracy,
boundary, distance, fine_grained, cityscapes).

Per setting and repeat, in this process: seconds per image = the cell's
``eval_seconds`` / images; the device's idle share = 1 - (seconds inside
forward) / ``eval_seconds`` (it counts the adapter's preprocessing, the
finite check and the argmax around the forward, which a GPU would run, and
the cell's setup and final compute); and the time the loop waited to hand a
batch to the metric groups (inline: all their work; with threads: the
waits on a full queue, and for the last batches after the loop), per image. The settings run alternately ``--repeats``
times; the figures are medians. The machine's load average is printed next
to them: on a loaded machine the metric threads wait for a core too.

    PYTHONPATH=. python benchmarks/pipeline_overlap.py [--images 16] [--height 512] [--width 1024]
        [--batch-size 2] [--sleep 0.15] [--num-workers auto] [--repeats 3]
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType

import torch

from benchmarks.harness_overhead import write_folder_dataset
from segbench.api import execute
from segbench import runner
from segbench.runner import loader_workers, metric_workers

WAITS = []  # seconds the evaluating thread spent handing each batch to the metric groups


def _timed(method, waits: list = WAITS):
    """``method`` (``MetricLanes.submit`` or ``close``, by default), timed into ``waits``."""
    def timed(self, *args):
        started = time.perf_counter()
        try:
            return method(self, *args)
        finally:
            waits.append(time.perf_counter() - started)
    return timed


def time_handoffs() -> None:
    """Time each hand-off of a batch to the metric groups (``MetricLanes.submit`` and ``close``) into WAITS."""
    runner.MetricLanes.submit = _timed(runner.MetricLanes.submit)
    runner.MetricLanes.close = _timed(runner.MetricLanes.close)


def device_module(folder: Path, source: str, name: str) -> ModuleType:
    """The stand-in device's module: ``source`` written to ``folder`` as ``name``, imported from there (so a
    suite's ``python`` model names it)."""
    (folder / f"{name}.py").write_text(source)
    sys.path.insert(0, str(folder))
    return importlib.import_module(name)


def machine_line(loads: list[float]) -> str:
    """The torch build, its threads, the cores and the load averages measured beside the figures."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (f"cpu, torch {torch.__version__}, threads {torch.get_num_threads()}, {cores} cores; load average "
            f"(1 min) {', '.join(f'{v:.2f}' for v in loads)} (before, after each repeat)")

MODULE = '''
import time

import torch
from torch import nn

BUSY = []  # (start, end) of each forward pass


class Device(nn.Module):
    def __init__(self, num_classes, seconds_per_image):
        super().__init__()
        torch.manual_seed(0)
        self.inner = nn.Conv2d(3, num_classes, kernel_size=1)
        self.seconds = seconds_per_image

    def forward(self, x):
        start = time.perf_counter()
        time.sleep(self.seconds * x.shape[0])
        out = self.inner(x)
        BUSY.append((start, time.perf_counter()))
        return out


def device(num_classes, seconds_per_image):
    return Device(num_classes, seconds_per_image)
'''


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--height", type=int, default=512)
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--sleep", type=float, default=0.15, help="forward seconds per image")
    parser.add_argument("--num-workers", default="auto")
    parser.add_argument("--repeats", type=int, default=3)
    return parser.parse_args(argv)


def suite(args: argparse.Namespace, workers: int | str) -> dict:
    num_workers = args.num_workers if args.num_workers == "auto" else int(args.num_workers)
    return {"name": "overlap", "device": "cpu", "batch_size": args.batch_size, "num_workers": num_workers,
            "metric_workers": workers,
            "datasets": [{"name": "scenes", "type": "folder", "root": str(args.data), "num_classes": 6}],
            "models": [{"name": "sleeper", "type": "python", "factory": "overlap_device:device",
                        "kwargs": {"num_classes": 6, "seconds_per_image": args.sleep}, "num_classes": 6}]}


def measure(args: argparse.Namespace, workers: int | str, run_dir: Path, busy: list) -> tuple[float, ...]:
    """(seconds per image, the device's idle share, seconds per image the loop waited for the metrics)."""
    busy.clear()
    WAITS.clear()
    outcome = execute(suite(args, workers), run_dir=run_dir, resume=False)
    if not outcome.ok:
        raise SystemExit(f"the run failed: {outcome.errors}")
    seconds = json.loads((run_dir / "cells" / "sleeper__scenes" / "cell.json").read_text())["eval_seconds"]
    forward = sum(end - start for start, end in busy)
    return seconds / args.images, 1 - forward / seconds, sum(WAITS) / args.images


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    time_handoffs()
    loads = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        overlap_device = device_module(tmp, MODULE, "overlap_device")
        args.data = tmp / "data"
        write_folder_dataset(args.data, args.images, args.height, args.width)

        figures: dict[str, list[tuple[float, float]]] = {"0": [], "auto": []}
        measure(args, "auto", tmp / "warm", overlap_device.BUSY)  # imports, numba's compiled search
        for repeat in range(args.repeats):
            for workers in figures:
                figures[workers].append(measure(args, int(workers) if workers != "auto" else workers,
                                                tmp / f"run-{workers}-{repeat}", overlap_device.BUSY))
            loads.append(os.getloadavg()[0])
    groups = 5  # the default groups: accuracy, boundary, distance, fine_grained, cityscapes
    print(machine_line(loads))
    print(f"{args.images} images {args.height}x{args.width} (folder of PNGs), batch {args.batch_size}, forward "
          f"sleeps {args.sleep * 1000:.0f} ms per image, DataLoader workers "
          f"{loader_workers(args.num_workers if args.num_workers == 'auto' else int(args.num_workers))}, "
          f"default metric groups, {args.repeats} repeats (median)")
    for workers, runs in figures.items():
        resolved = metric_workers(workers if workers == "auto" else int(workers), groups)
        per_image, idle, waits = zip(*runs)
        print(f"metric_workers {workers:>4} ({resolved}): {statistics.median(per_image) * 1000:7.1f} ms per image "
              f"({', '.join(f'{v * 1000:.1f}' for v in per_image)}), device idle "
              f"{statistics.median(idle):6.1%} ({', '.join(f'{v:.1%}' for v in idle)}), loop waits for "
              f"metrics {statistics.median(waits) * 1000:5.1f} ms per image")
    inline, threaded = (statistics.median(v[0] for v in figures[w]) for w in ("0", "auto"))
    print(f"auto against inline: {inline / threaded:.2f}x the images per second; floor (the forward alone): "
          f"{args.sleep * 1000:.0f} ms per image")


if __name__ == "__main__":
    main()
