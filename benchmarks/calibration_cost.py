"""What the calibration group costs beside the accuracy group, and that its memory stays flat.

Speed: one 1024x2048 image with 19 classes (Cityscapes-sized) on the CPU. The
calibration group's work per image is what the adapter adds to the argmax,
``segbench.models.base.top_probability(logits)`` (the path of
TorchAdapter.predict_with_confidence without TTA), and the group's update; the
accuracy group's is its update. Both are timed in the same process,
interleaved, medians over repeats, the machine's load printed beside them.

Memory: the calibration group's updates (top_probability of the logits, then
the update) over N = 50, 250, 500 images (one synthetic 128x256 image N
times, new probabilities each time), each N in a fresh subprocess:
its peak resident set after the first image and after the last, and the size
of the state's pickle (what torchrun ranks exchange). The peak is the
process's VmHWM (Linux), not ru_maxrss: Linux carries ru_maxrss over fork and
exec, so a child's would start at the parent's peak. The peak should not grow
with N.

    PYTHONPATH=. python benchmarks/calibration_cost.py [--repeats N] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import pickle
import statistics
import subprocess
import sys
import time

import torch

from segbench.metrics.calibration import CalibrationMetric
from segbench.metrics.confusion import AccuracyMetric
from segbench.models.base import top_probability

NUM_CLASSES = 19
HEIGHT, WIDTH = 1024, 2048
SMALL = 128, 256
MEMORY_RUNS = (50, 250, 500)


def make_case(seed: int, height: int = HEIGHT, width: int = WIDTH) -> tuple[torch.Tensor, torch.Tensor]:
    """1xKxHxW smooth logits and an HxW label that agrees with their argmax on about 80 % of the pixels."""
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(1, NUM_CLASSES, height // 8, width // 8, generator=generator) * 3
    logits = torch.nn.functional.interpolate(logits, size=(height, width), mode="bilinear", align_corners=False)
    label = logits.argmax(dim=1)[0]
    flip = torch.rand(label.shape, generator=generator) < 0.2
    label[flip] = torch.randint(0, NUM_CLASSES, (int(flip.sum()),), generator=generator)
    return logits, label


def time_calibration(logits: torch.Tensor, pred: torch.Tensor, label: torch.Tensor) -> tuple[float, float]:
    """Seconds of the adapter's top probability and of the group's update: what the group adds per image."""
    metric = CalibrationMetric(NUM_CLASSES)
    started = time.perf_counter()
    confidence = top_probability(logits)[0]
    middle = time.perf_counter()
    metric.update(pred, label, "image", confidence=confidence)
    return middle - started, time.perf_counter() - middle


def time_accuracy(pred: torch.Tensor, label: torch.Tensor) -> float:
    metric = AccuracyMetric(NUM_CLASSES)
    started = time.perf_counter()
    metric.update(pred, label, "image")
    return time.perf_counter() - started


def peak_rss_mib() -> float:
    """This process's peak resident set (VmHWM of /proc/self/status), in MiB."""
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024


def memory_run(images: int) -> None:
    """Print the peak RSS (MiB) after the first and the last of ``images`` small images, and the state's pickle
    size (bytes)."""
    metric = CalibrationMetric(NUM_CLASSES)
    logits, label = make_case(0, *SMALL)
    pred = logits.argmax(dim=1)[0]
    peaks = []
    for i in range(images):
        metric.update(pred, label, f"image_{i:05d}", confidence=top_probability(logits)[0])
        peaks.append(peak_rss_mib())
    print(peaks[0], peaks[-1], len(pickle.dumps(metric)))


def memory_in_subprocess(images: int, threads: int) -> tuple[float, float, int]:
    command = [sys.executable, __file__, "--threads", str(threads), "--memory-run", str(images)]
    first, last, size = subprocess.run(command, check=True, capture_output=True, text=True).stdout.split()
    return float(first), float(last), int(size)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--memory-run", type=int, help="(used by the script itself) one memory measurement")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.memory_run is not None:
        memory_run(args.memory_run)
        return
    logits, label = make_case(0)
    pred = logits.argmax(dim=1)[0]  # both groups need it: not timed
    time_calibration(logits, pred, label), time_accuracy(pred, label)  # warm-up
    repeats = []  # (top_probability, calibration update, both, accuracy update) seconds
    print(f"load before: {os.getloadavg()}")
    for _ in range(args.repeats):
        probability, update = time_calibration(logits, pred, label)
        repeats.append((probability, update, probability + update, time_accuracy(pred, label)))
    print(f"load after: {os.getloadavg()}")
    prob, upd, cal, acc = (statistics.median(times) * 1000 for times in zip(*repeats))
    print(f"{HEIGHT}x{WIDTH}, {NUM_CLASSES} classes, {args.threads} threads, medians of {args.repeats}: "
          f"calibration {cal:.1f} ms (top_probability {prob:.1f}, update {upd:.1f}), "
          f"accuracy update {acc:.1f} ms, ratio {cal / acc:.1f}x")
    for images in MEMORY_RUNS:
        first, last, size = memory_in_subprocess(images, args.threads)
        print(f"{images} images of {SMALL[0]}x{SMALL[1]}: peak RSS {first:.1f} MiB after the first, "
              f"{last:.1f} MiB after the last; state pickle {size} bytes")
    print(f"load at the end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
