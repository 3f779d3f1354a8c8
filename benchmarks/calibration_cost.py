"""What the calibration group costs beside the accuracy group, and that its memory stays flat.

Speed: one 1024x2048 image with 19 classes (Cityscapes-sized) on the CPU. The
calibration group's work per image is the softmax of the logits and its
maximum (what TorchAdapter.predict_with_confidence adds to the argmax) and
the group's update; the accuracy group's is its update. Both are timed in the
same process, interleaved, medians over repeats, the machine's load printed
beside them.

Memory: the calibration state after 50, 100, ..., 500 small images, measured
as the size of its pickle (what torchrun ranks exchange): a histogram plus one
ECE per image, so it grows by a few dozen bytes per image, not with pixels.

    PYTHONPATH=. python benchmarks/calibration_cost.py [--repeats N] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import pickle
import statistics
import time

import torch

from segbench.metrics.calibration import CalibrationMetric
from segbench.metrics.confusion import AccuracyMetric

NUM_CLASSES = 19
HEIGHT, WIDTH = 1024, 2048


def make_case(seed: int, height: int = HEIGHT, width: int = WIDTH) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(1, NUM_CLASSES, height // 8, width // 8, generator=generator) * 3
    logits = torch.nn.functional.interpolate(logits, size=(height, width), mode="bilinear", align_corners=False)
    label = logits.argmax(dim=1)[0]
    flip = torch.rand(label.shape, generator=generator) < 0.2
    label[flip] = torch.randint(0, NUM_CLASSES, (int(flip.sum()),), generator=generator)
    return logits, label


def time_calibration(logits: torch.Tensor, label: torch.Tensor) -> float:
    metric = CalibrationMetric(NUM_CLASSES)
    started = time.perf_counter()
    confidence, pred = logits.softmax(dim=1).max(dim=1)
    metric.update(pred[0], label, "image", confidence=confidence[0])
    return time.perf_counter() - started


def time_accuracy(logits: torch.Tensor, label: torch.Tensor) -> float:
    metric = AccuracyMetric(NUM_CLASSES)
    pred = logits.argmax(dim=1)[0]
    started = time.perf_counter()
    metric.update(pred, label, "image")
    return time.perf_counter() - started


def state_bytes(images: int) -> int:
    metric = CalibrationMetric(NUM_CLASSES)
    logits, label = make_case(0, 64, 128)
    confidence, pred = logits.softmax(dim=1).max(dim=1)
    for i in range(images):
        metric.update(pred[0], label, f"image_{i:05d}", confidence=confidence[0])
    return len(pickle.dumps(metric))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    logits, label = make_case(0)
    time_calibration(logits, label), time_accuracy(logits, label)  # warm-up
    calibration, accuracy = [], []
    print(f"load before: {os.getloadavg()}")
    for _ in range(args.repeats):
        calibration.append(time_calibration(logits, label))
        accuracy.append(time_accuracy(logits, label))
    print(f"load after: {os.getloadavg()}")
    cal, acc = statistics.median(calibration) * 1000, statistics.median(accuracy) * 1000
    print(f"{HEIGHT}x{WIDTH}, {NUM_CLASSES} classes, {args.threads} threads, median of {args.repeats}: "
          f"calibration (softmax + max + update) {cal:.1f} ms, accuracy update {acc:.1f} ms, ratio {cal / acc:.1f}x")
    for images in (50, 100, 250, 500):
        print(f"calibration state after {images} images: {state_bytes(images)} bytes")


if __name__ == "__main__":
    main()
