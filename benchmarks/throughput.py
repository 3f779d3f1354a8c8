"""Throughput: does a fast device wait for segbench? Images per second against 1/T (issue #19).

A stand-in for a GPU: a ``type: python`` model whose forward sleeps (wall
time, no CPU, as a GPU leaves the CPU free), then computes cheap logits at a
quarter of the resolution (a 1x1 "nearest palette colour" layer after 4x4
average pooling, so that its predictions are blobby like a real net's and
segbench's bilinear resize to the image's size runs as it would).
Data: ``--images`` Cityscapes-like street scenes at ``--height`` x
``--width`` (1024x2048 by default), 19 classes, written once as PNG files in
Cityscapes' layout (leftImg8bit, gtFine labelTrainIds and instanceIds), so
decoding is real and the ``cityscapes`` group applies. Metric groups: every
default group (accuracy, boundary, distance, fine_grained, cityscapes), and
``calibration`` with ``--calibration`` (then the adapter also computes the
top-label confidence).

First, in this process on one thread, the per-image CPU work of segbench
is measured part by part on the first ``--probe-images`` images (each part
the least of 3 passes after a warm-up one, then the median over the images):
decoding (image, label, instance ids), the adapter's
normalisation, resize of the logits and finite check and argmax, the
label's tensor and ``validate_pair``, and each metric group's update.
W = their sum; T = ``--fraction`` (0.75) x W is the time per image of the
"device": the forward plus the adapter's work around it (normalisation,
resize, checks, argmax; on a GPU these run on the device), so the model
sleeps T - a per image, a being the adapter's measured CPU time (its
``predict`` on one thread with a model that does not sleep); where a >= T
the script says so and stops. On two cores, W can hide behind a device that
takes T = 0.75 W per image only if it uses both.

Then ``segbench run``'s evaluation, in this process (torch's default
threads), ``--repeats`` times after one warm-up run: images per second =
images / the cell's ``eval_seconds`` (from the adapter's build to the last
metric's update: the pipeline's filling and draining included), against
1/T; target >= 0.9 of 1/T. Beside it, the steady state: the images of every
batch but the last over the time from the first forward pass's start to the
last one's (what a run of many images tends to; the cell's setup, the first
batch's decoding and the last batch's metrics are a fixed cost). Also printed: the evaluating thread's time per
image split into the forward, its waits to hand batches to the metric
groups, its waits for decoded batches, and the rest (the adapter's work, the
cell's setup); and the load average before and after each repeat: other
work on the machine takes the cores this needs.

    PYTHONPATH=. python benchmarks/throughput.py [--images 96] [--height 1024] [--width 2048]
        [--batch-size 2] [--num-workers auto] [--metric-workers auto] [--repeats 3] [--fraction 0.75]
        [--probe-images 3] [--calibration]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import numpy as np
import torch
from PIL import Image
from pydantic import BaseModel

from torch.utils.data.dataloader import _BaseDataLoaderIter

from benchmarks.pipeline_overlap import WAITS, _timed, device_module, machine_line, time_handoffs
from segbench.api import execute, resolve_suite
from segbench.config import InferenceConfig
from segbench.data.base import Sample
from segbench.data.cityscapes import ID_TO_TRAIN_ID, CityscapesDataset
from segbench.data.classes import CITYSCAPES_PALETTE
from segbench.images import write_label
from segbench.metrics.checks import validate_pair
from segbench.models.base import require_finite, top_probability
from segbench.models.inference import _resize
from segbench.models.torch_adapter import TorchAdapter
from segbench.registry import METRICS
from segbench.runner import loader_workers, metric_workers

NUM_CLASSES = 19
MEAN, STD = (0.0, 0.0, 0.0), (255.0, 255.0, 255.0)  # the stand-in's inputs: colours in [0, 1]
TRAIN_TO_LABEL_ID = {train: label for label, train in ID_TO_TRAIN_ID.items()}
EGO_VEHICLE = 1  # Cityscapes' label id of the ego vehicle (train id: ignore)
PASSES = 3  # timed passes per probed image, after a warm-up one
LOADER_WAITS = []  # seconds the evaluating thread waited for each decoded batch

MODULE = '''
import time

import torch
import torch.nn.functional as F
from torch import nn

from segbench.data.classes import CITYSCAPES_PALETTE

BUSY = []  # (start, end) of each forward pass


class Device(nn.Module):
    """Sleeps, then scores each class by closeness of the 4x4-pooled colour to the class's palette colour."""

    def __init__(self, seconds_per_image):
        super().__init__()
        palette = torch.tensor(CITYSCAPES_PALETTE, dtype=torch.float32) / 255
        self.seconds = seconds_per_image
        self.register_buffer("weight", 2 * palette[:, :, None, None])
        self.register_buffer("bias", -(palette ** 2).sum(dim=1))

    def forward(self, x):
        start = time.perf_counter()
        time.sleep(self.seconds * x.shape[0])
        out = F.conv2d(F.avg_pool2d(x, 4), self.weight, self.bias)
        BUSY.append((start, time.perf_counter()))
        return out


def device(seconds_per_image):
    return Device(seconds_per_image)
'''


def _ellipse(yy: np.ndarray, xx: np.ndarray, cy: float, cx: float, ry: float, rx: float) -> np.ndarray:
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1


def street_scene(rng: np.random.Generator, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """(train ids uint8 with 255 for ignore, Cityscapes instance ids): sky, a skyline of buildings and
    walls, road and sidewalk, vegetation, poles and signs, and cars, persons and other instances."""
    yy, xx = np.mgrid[:height, :width]
    label = np.full((height, width), 2, dtype=np.uint8)  # building
    edges = np.sort(rng.choice(np.arange(1, width), size=12, replace=False))
    tops = np.repeat(rng.uniform(0.05, 0.35, 13) * height, np.diff(np.r_[0, edges, width]))
    label[yy < tops[None, :]] = 10  # sky
    horizon = int(height * rng.uniform(0.45, 0.55))
    label[yy > horizon + (xx - width / 2) * rng.uniform(-0.05, 0.05)] = 1  # sidewalk
    curb = horizon + 0.1 * height
    label[(yy > curb) & (np.abs(xx - width / 2) < (yy - horizon) * 3)] = 0  # road
    for cls, count in ((8, 5), (9, 3), (3, 2), (4, 3)):  # vegetation, terrain, wall, fence
        for _ in range(count):
            cy, cx = rng.uniform(0.2, 0.7) * height, rng.uniform(0, width)
            ry, rx = rng.uniform(0.03, 0.12) * height, rng.uniform(0.03, 0.15) * width
            label[_ellipse(yy, xx, cy, cx, ry, rx)] = cls
    for _ in range(8):  # poles with a sign or a light on top
        x0, y1 = rng.integers(0, width - 12), int(rng.uniform(0.55, 0.8) * height)
        y0 = int(rng.uniform(0.15, 0.35) * height)
        label[y0:y1, x0:x0 + rng.integers(4, 12)] = 5
        label[y0 - 30:y0, x0 - 10:x0 + 20] = rng.choice([6, 7])
    instances = np.zeros((height, width), dtype=np.int64)
    for k in range(30):  # instances, nearer ones larger
        cls = int(rng.choice([11, 12, 13, 13, 13, 14, 15, 16, 17, 18]))
        cy = rng.uniform(0.5, 0.9) * height
        scale = (cy / height - 0.4) * rng.uniform(0.15, 0.35) * height
        tall = cls in (11, 12)
        ry, rx = scale * (1.2 if tall else 0.5), scale * (0.3 if tall else 1)
        mask = _ellipse(yy, xx, cy, rng.uniform(0, width), ry, rx)
        label[mask] = cls
        instances[mask] = TRAIN_TO_LABEL_ID[cls] * 1000 + k
    label[yy > height * 0.92] = 255  # the ego vehicle
    label_ids = np.vectorize(lambda t: TRAIN_TO_LABEL_ID.get(t, EGO_VEHICLE))(np.arange(256))[label]
    return label, np.where(instances > 0, instances, label_ids)


def write_cityscapes_scenes(root: Path, images: int, height: int, width: int) -> None:
    """Street scenes in Cityscapes' layout: colours of the classes' palette with noise, as PNGs."""
    palette = np.array(CITYSCAPES_PALETTE + [(0, 0, 0)] * (256 - NUM_CLASSES), dtype=np.float32)
    for i in range(images):
        rng = np.random.default_rng([0, i])
        label, instances = street_scene(rng, height, width)
        stem = f"bench_{i:06d}_000019"
        image = palette[label] + rng.normal(0, 12, (height, width, 3)).astype(np.float32)
        folder = root / "leftImg8bit" / "val" / "bench"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image.clip(0, 255).astype(np.uint8)).save(folder / f"{stem}_leftImg8bit.png")
        labels = root / "gtFine" / "val" / "bench"
        write_label(labels / f"{stem}_gtFine_labelTrainIds.png", label)
        write_label(labels / f"{stem}_gtFine_instanceIds.png", instances)


def _seconds(function: Callable[[], object]) -> tuple[float, object]:
    started = time.perf_counter()
    result = function()
    return time.perf_counter() - started, result


def groups(args: argparse.Namespace) -> dict[str, BaseModel]:
    """The metric groups the run scores, with their options, in the cell's order."""
    [cell] = resolve_suite(suite(args, 0.0))[0].cells()
    return {name: options for name, options in cell.metrics if options is not None}


def probe(root: Path, args: argparse.Namespace, device_module: ModuleType) -> tuple[dict[str, float], float]:
    """Per part, seconds per image on one thread; and the adapter's CPU time per image (a). Each image is
    probed ``PASSES`` times after a warm-up pass, and each part's least time kept (other work on the machine
    only adds to it); the figures are medians over the images."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        dataset = CityscapesDataset("scenes", root)
        adapter = TorchAdapter("probe", device_module.device(0.0), NUM_CLASSES, list(MEAN), list(STD),
                               InferenceConfig(), torch.device("cpu"), {})
        predict = adapter.predict_with_confidence if args.calibration else adapter.predict
        parts: dict[str, list[float]] = {}
        adapter_seconds = []
        for index in range(min(args.probe_images, len(dataset))):
            metrics = {name: METRICS[name].state(NUM_CLASSES, 255, "cpu", **options.model_dump())
                       for name, options in groups(args).items()}
            _probe_image(dataset, adapter, index, metrics, args.calibration)  # numba's search, allocations
            passes = [_probe_image(dataset, adapter, index, metrics, args.calibration) for _ in range(PASSES)]
            for part in passes[0][0]:
                parts.setdefault(part, []).append(min(times[part] for times, _ in passes))
            sample = passes[0][1]
            adapter_seconds.append(min(_seconds(lambda: predict([sample.image], [sample.id]))[0]
                                       for _ in range(PASSES)))
        medians = {part: statistics.median(values) for part, values in parts.items()}
        return medians, statistics.median(adapter_seconds)
    finally:
        torch.set_num_threads(threads)


@torch.inference_mode()
def _probe_image(dataset: CityscapesDataset, adapter: TorchAdapter, index: int, metrics: dict,
                 calibration: bool) -> tuple[dict[str, float], Sample]:
    times = {}
    times["decode (image, label, instance ids)"], sample = _seconds(lambda: dataset.load(index))
    times["normalisation"], batch = _seconds(lambda: adapter.preprocess([sample.image]))
    logits = adapter.net(batch)
    times["resize of the logits"], scores = _seconds(lambda: _resize(logits, batch.shape[-2:]))
    times["finite check"], _ = _seconds(lambda: require_finite(scores, [sample.id], "probe"))
    times["argmax"], prediction = _seconds(lambda: scores.argmax(dim=1)[0])
    confidence = None
    if calibration:
        times["top-label confidence"], confidence = _seconds(lambda: top_probability(scores)[0])
    times["label to tensor, validate_pair"], (label, _) = _seconds(lambda: validate_pair(
        prediction, torch.from_numpy(sample.label), NUM_CLASSES, 255, sample.id))
    inputs = {**sample.extras, "confidence": confidence}
    for name, metric in metrics.items():
        extra = {need: inputs.get(need) for need in METRICS[name].needs}
        times[f"group {name}"], _ = _seconds(lambda: metric.update(prediction, label, sample.id, **extra))
    return times, sample


def suite(args: argparse.Namespace, sleep: float) -> dict:
    def setting(value: str) -> int | str:
        return value if value == "auto" else int(value)

    return {"name": "throughput", "device": "cpu", "batch_size": args.batch_size,
            "num_workers": setting(args.num_workers), "metric_workers": setting(args.metric_workers),
            "datasets": [{"name": "scenes", "type": "cityscapes", "root": str(args.data)}],
            "models": [{"name": "sleeper", "type": "python", "factory": "throughput_device:device",
                        "kwargs": {"seconds_per_image": sleep}, "num_classes": NUM_CLASSES,
                        "mean": list(MEAN), "std": list(STD)}],
            "metrics": {"calibration": {}} if args.calibration else {}}


def measure(args: argparse.Namespace, sleep: float, run_dir: Path,
            busy: list) -> tuple[float, float, float, float]:
    """(images per second; seconds per image inside the forward (its sleep and pooled logits), and handing
    batches to the metric groups (waits on a full queue, and for the last batches after the loop); images
    per second in the steady state: the images of every batch but the last over the time from the first
    forward pass's start to the last one's, so neither the cell's setup and first decoding nor the last
    batch's metrics count)."""
    busy.clear()
    WAITS.clear()
    LOADER_WAITS.clear()
    outcome = execute(suite(args, sleep), run_dir=run_dir, resume=False)
    if not outcome.ok:
        raise SystemExit(f"the run failed: {outcome.errors}")
    record = json.loads((run_dir / "cells" / "sleeper__scenes" / "cell.json").read_text())
    inapplicable = [name for name, options in record["metric_options"].items()
                    if isinstance(options, dict) and options.get("applicable") is False]
    if inapplicable:
        raise SystemExit(f"metric groups not applicable: {inapplicable}: {record['metric_options']}")
    seconds = record["eval_seconds"]
    forward = sum(end - start for start, end in busy)
    last_batch = args.images - args.batch_size * (len(busy) - 1)
    steady = (args.images - last_batch) / (busy[-1][0] - busy[0][0])
    return (args.images / seconds, forward / args.images, sum(WAITS) / args.images, steady,
            sum(LOADER_WAITS) / args.images)


def report_probe(parts: dict[str, float], adapter: float, work: float, period: float, args) -> None:
    print(f"per-image CPU work of segbench, one thread, the least of {PASSES} passes, median of "
          f"{args.probe_images} images {args.height}x{args.width}, {NUM_CLASSES} classes:")
    for part, seconds in parts.items():
        print(f"  {part:<36} {seconds * 1000:7.1f} ms")
    print(f"  {'W (sum)':<36} {work * 1000:7.1f} ms")
    print(f"T = {args.fraction} x W = {period * 1000:.1f} ms per image (1/T = {1 / period:.2f} images/s); the "
          f"adapter's CPU time a = {adapter * 1000:.1f} ms (its predict, the stand-in's own pooled logits "
          f"included), so the model sleeps T - a = {(period - adapter) * 1000:.1f} ms per image")


def timed_runs(args: argparse.Namespace, sleep: float, folder: Path, busy: list) -> tuple[list, list]:
    """One warm-up run, then ``--repeats`` measured ones: (load averages before and after each, figures)."""
    measure(args, sleep, folder / "warm", busy)  # imports, numba's compiled search
    loads, runs = [os.getloadavg()[0]], []
    for repeat in range(args.repeats):
        runs.append(measure(args, sleep, folder / f"run-{repeat}", busy))
        loads.append(os.getloadavg()[0])
    return loads, runs


def report_runs(args: argparse.Namespace, period: float, sleep: float, loads: list, runs: list) -> None:
    names = list(groups(args))
    setting = args.metric_workers if args.metric_workers == "auto" else int(args.metric_workers)
    workers = args.num_workers if args.num_workers == "auto" else int(args.num_workers)
    print(machine_line(loads))
    print(f"{args.images} images, batch {args.batch_size}, DataLoader workers {loader_workers(workers)}, "
          f"metric_workers {args.metric_workers} ({metric_workers(setting, len(names))}), groups: "
          f"{', '.join(names)}{'' if args.calibration else ' (calibration off: --calibration)'}; "
          f"{args.repeats} repeats (median)")
    rates, forward, waits, steady, loading = (statistics.median(v) for v in zip(*runs))
    print(f"images/s {rates:.2f} ({', '.join(f'{v[0]:.2f}' for v in runs)}) against 1/T = {1 / period:.2f}: "
          f"{rates * period:.2f} of 1/T (target >= 0.9: {'met' if rates * period >= 0.9 else 'NOT met'})")
    print(f"steady state, first to last forward pass: {steady:.2f} images/s "
          f"({', '.join(f'{v[3]:.2f}' for v in runs)}), {steady * period:.2f} of 1/T")
    print(f"per image, the evaluating thread: {1000 / rates:.1f} ms = forward {forward * 1000:.1f} (sleeps "
          f"{sleep * 1000:.1f}) + waits for the metric groups {waits * 1000:.1f} + waits for decoded images "
          f"{loading * 1000:.1f} + the rest {(1 / rates - forward - waits - loading) * 1000:.1f} (the adapter's "
          f"normalisation, resize, checks and argmax; the cell's setup)")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    time_handoffs()
    _BaseDataLoaderIter.__next__ = _timed(_BaseDataLoaderIter.__next__, LOADER_WAITS)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        throughput_device = device_module(tmp, MODULE, "throughput_device")
        args.data = tmp / "data"
        write_cityscapes_scenes(args.data, args.images, args.height, args.width)
        parts, adapter = probe(args.data, args, throughput_device)
        work = sum(parts.values())
        period = args.fraction * work
        report_probe(parts, adapter, work, period, args)
        if adapter >= period:
            raise SystemExit(f"the adapter's CPU time a ({adapter * 1000:.0f} ms) exceeds T "
                             f"({period * 1000:.0f} ms): the forward has nothing left to sleep")
        loads, runs = timed_runs(args, period - adapter, tmp, throughput_device.BUSY)
    report_runs(args, period, period - adapter, loads, runs)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--images", type=int, default=96, help="images in the dataset (one cell)")
    parser.add_argument("--height", type=int, default=1024, help="image height")
    parser.add_argument("--width", type=int, default=2048, help="image width")
    parser.add_argument("--batch-size", type=int, default=2, help="images per forward pass")
    parser.add_argument("--num-workers", default="auto", help="DataLoader processes decoding images")
    parser.add_argument("--metric-workers", default="auto", help="threads scoring the metric groups")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs after one warm-up run; medians")
    parser.add_argument("--fraction", type=float, default=0.75, help="T = fraction x W, per image")
    parser.add_argument("--probe-images", type=int, default=3, help="images W is measured on")
    parser.add_argument("--calibration", action="store_true", help="also the calibration group (opt-in)")
    return parser.parse_args(argv)


if __name__ == "__main__":
    main()
