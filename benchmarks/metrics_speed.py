"""Time segbench's confusion matrix against mmsegmentation's intersect_and_union.

One 1024x2048 label map with 19 classes and ignore pixels (Cityscapes-sized),
a prediction that agrees with it on about 80 % of the pixels, both on the CPU.
Both functions are timed in the same process, interleaved, after a warm-up;
the figure is the median over repeats. The four per-class counts must be
identical.

    PYTHONPATH=. python benchmarks/metrics_speed.py [--repeats N] [--threads N]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from torch import Tensor

from segbench.metrics.confusion import confusion_matrix, counts_from_confusion

NUM_CLASSES = 19
IGNORE_INDEX = 255
HEIGHT, WIDTH = 1024, 2048


def make_pair(seed: int = 0) -> tuple[Tensor, Tensor]:
    """Blocky label regions (16x16 cells), ~10 % ignore, a prediction right on ~80 % of pixels."""
    generator = torch.Generator().manual_seed(seed)
    cells = torch.randint(0, NUM_CLASSES, (HEIGHT // 16, WIDTH // 16), generator=generator)
    label = cells.repeat_interleave(16, 0).repeat_interleave(16, 1)
    label[torch.rand(label.shape, generator=generator) < 0.1] = IGNORE_INDEX
    noise = torch.randint(0, NUM_CLASSES, label.shape, generator=generator)
    keep = torch.rand(label.shape, generator=generator) < 0.8
    pred = torch.where(keep & (label != IGNORE_INDEX), label, noise)
    return pred, label


def mmseg_reimplementation(pred: Tensor, label: Tensor, num_classes: int,
                           ignore_index: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """mmsegmentation 1.x IoUMetric.intersect_and_union, without the mmseg dependency."""
    mask = label != ignore_index
    pred, label = pred[mask], label[mask]
    intersect = pred[pred == label]
    area_intersect = torch.histc(intersect.float(), bins=num_classes, min=0, max=num_classes - 1)
    area_pred_label = torch.histc(pred.float(), bins=num_classes, min=0, max=num_classes - 1)
    area_label = torch.histc(label.float(), bins=num_classes, min=0, max=num_classes - 1)
    area_union = area_pred_label + area_label - area_intersect
    return area_intersect, area_union, area_pred_label, area_label


def mmseg_function() -> tuple[Callable[..., tuple[Tensor, ...]], str]:
    try:
        from mmseg.evaluation.metrics import IoUMetric
    except ImportError:
        return (mmseg_reimplementation,
                "reimplementation of mmseg 1.x intersect_and_union (mmseg not installed)")
    import mmseg
    return (IoUMetric.intersect_and_union,
            f"mmseg {mmseg.__version__} IoUMetric.intersect_and_union")


def segbench_counts(pred: Tensor, label: Tensor, num_classes: int,
                    ignore_index: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    counts = counts_from_confusion(confusion_matrix(pred, label, num_classes, ignore_index))
    return (counts["area_intersect"], counts["area_union"], counts["area_pred_label"],
            counts["area_label"])


def seconds(function: Callable[..., object], *args: object) -> float:
    start = time.perf_counter()
    function(*args)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=21)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's own)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    pred, label = make_pair()
    mmseg, mmseg_name = mmseg_function()
    inputs = (pred, label, NUM_CLASSES, IGNORE_INDEX)

    ours = segbench_counts(*inputs)
    theirs = mmseg(*inputs)
    for name, a, b in zip(("intersect", "union", "pred_label", "label"), ours, theirs):
        assert torch.equal(a, b.to(torch.int64)), f"area_{name} differs"

    for _ in range(args.warmup):
        segbench_counts(*inputs)
        mmseg(*inputs)
    ours_s, theirs_s = [], []
    for _ in range(args.repeats):  # interleaved, so that load on the machine hits both alike
        ours_s.append(seconds(segbench_counts, *inputs))
        theirs_s.append(seconds(mmseg, *inputs))
    ours_ms = statistics.median(ours_s) * 1e3
    theirs_ms = statistics.median(theirs_s) * 1e3

    valid = int((label != IGNORE_INDEX).sum())
    agree = int(((pred == label) & (label != IGNORE_INDEX)).sum())
    print(f"input: {HEIGHT}x{WIDTH} label map, {NUM_CLASSES} classes, "
          f"{1 - valid / label.numel():.1%} ignore, "
          f"prediction right on {agree / valid:.1%} of valid pixels")
    print(f"torch {torch.__version__}, CPU, {torch.get_num_threads()} threads, "
          f"median of {args.repeats} after {args.warmup} warm-up")
    print(f"peer: {mmseg_name}")
    print("counts: identical (area_intersect, area_union, area_pred_label, area_label)")
    print(f"segbench confusion_matrix + counts_from_confusion: {ours_ms:8.2f} ms/image")
    print(f"mmseg intersect_and_union:                         {theirs_ms:8.2f} ms/image")
    print(f"speed-up: {theirs_ms / ours_ms:.1f}x")


if __name__ == "__main__":
    main()
