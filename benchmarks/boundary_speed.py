"""Time segbench's boundary and distance groups against two exact peers, in one run, with equal values.

Input: Cityscapes-sized 1024x2048 label maps with 19 classes: the argmax of
smooth random fields (organic regions, about 150k boundary pixels per map),
a few ignore blobs, and a prediction whose region borders wander by a few
pixels, with some regions wrong or missing (right on about 85 % of pixels).

- segbench: BoundaryMetric.update + DistanceMetric.update, as the runner
  calls them (the second reuses the first's distances); on CPU tensors its
  numpy path, with torch's thread count (two halves of the work overlap when
  it is 2 or more) and with one thread; also its torch path (what CUDA
  tensors take) forced on the CPU, which decides the CPU default;
- cKDTree: the straightforward exact way: the same one-pass boundary
  extraction, an unbounded scipy cKDTree query per class and direction, BIoU
  bands from scipy min/max filters over the class maps;
- per-class EDT: what MONAI and DeepMind's surface-distance do: per class,
  masks, boundaries by erosion, a Euclidean distance transform of the whole
  image per class and direction, and BIoU bands from a chessboard distance
  transform of each class mask.

All three give per class BF precision, recall and F, BIoU intersection and
union, HD and HD95, which must be identical. Images are cycled, so that no
call sees the image of the call before it (segbench would reuse its work).
Also timed: the accuracy group, and the built-in DeepLabV3's forward pass on
an image of that size. With ``--device cuda``: segbench on CUDA tensors (its
torch path on the GPU, values checked against the CPU's) and the forward pass
on that GPU as well.

    PYTHONPATH=. python benchmarks/boundary_speed.py [--images N] [--repeats N] [--edt-repeats N]
                                                     [--no-forward] [--device cuda]
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch
from scipy import ndimage as ndi
from scipy.spatial import cKDTree
from torch import Tensor

from segbench.metrics.boundary import BoundaryMetric, biou_width
from segbench.metrics.confusion import AccuracyMetric
from segbench.metrics.contours import ClassBoundaries, class_boundaries, class_maps, image_diagonal, torch_on_cpu
from segbench.metrics.distance import DistanceMetric

NUM_CLASSES = 19
IGNORE_INDEX = 255
HEIGHT, WIDTH = 1024, 2048
TOLERANCE = 0.0075
DILATION_RATIO = 0.02
PERCENTILE = 95
KEYS = ("BF_precision", "BF_recall", "BF", "BIoU_intersect", "BIoU_union", "HD", "HD95")
Figures = dict[str, np.ndarray]
Directed = tuple[np.ndarray, np.ndarray]  # d(P->G) and d(G->P) of one class


def _fields(generator: torch.Generator, channels: int, cell: int) -> Tensor:
    """Smooth random fields: noise on a grid of ``cell`` pixels, bilinearly upsampled."""
    coarse = torch.randn(1, channels, HEIGHT // cell + 1, WIDTH // cell + 1, generator=generator)
    return torch.nn.functional.interpolate(coarse, size=(HEIGHT, WIDTH), mode="bilinear")[0]


def make_pair(seed: int) -> tuple[Tensor, Tensor]:
    generator = torch.Generator().manual_seed(seed)
    scores = _fields(generator, NUM_CLASSES, 64)
    label = scores.argmax(0)
    pred = (scores + 0.15 * _fields(generator, NUM_CLASSES, 16)).argmax(0)
    label[_fields(generator, 1, 64)[0] > 1.3] = IGNORE_INDEX
    return pred, label


def segbench_figures(pred: Tensor, label: Tensor) -> Figures:
    boundary = BoundaryMetric(NUM_CLASSES, IGNORE_INDEX, tolerance=TOLERANCE, dilation_ratio=DILATION_RATIO)
    distance = DistanceMetric(NUM_CLASSES, IGNORE_INDEX, percentile=PERCENTILE)
    boundary.update(pred, label, "x")
    distance.update(pred, label, "x")
    record = boundary.records[0] | distance.records[0]
    return {key: np.array(record[key], dtype=np.float64) for key in KEYS}


def segbench_torch_figures(pred: Tensor, label: Tensor) -> Figures:
    with torch_on_cpu():
        return segbench_figures(pred, label)


def segbench_one_thread_figures(pred: Tensor, label: Tensor) -> Figures:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return segbench_figures(pred, label)
    finally:
        torch.set_num_threads(threads)


def _scores(directed: list[Directed | None], present: np.ndarray, shape: tuple[int, int]) -> Figures:
    """BF and HD per class from the directed distances of the classes in both maps."""
    tolerance = TOLERANCE * image_diagonal(shape)
    out = {key: np.full(NUM_CLASSES, np.nan) for key in ("BF_precision", "BF_recall", "BF", "HD", "HD95")}
    for c in np.flatnonzero(present):
        if directed[c] is None:  # in one map only
            out["BF_precision"][c] = out["BF_recall"][c] = out["BF"][c] = 0.0
            out["HD"][c] = out["HD95"][c] = image_diagonal(shape)
            continue
        a, b = directed[c]
        precision, recall = np.mean(a <= tolerance), np.mean(b <= tolerance)
        out["BF_precision"][c], out["BF_recall"][c] = precision, recall
        out["BF"][c] = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
        out["HD"][c] = max(a.max(), b.max())
        out["HD95"][c] = max(np.percentile(a, PERCENTILE), np.percentile(b, PERCENTILE))
    return out


def _band_counts(pred_map: np.ndarray, label_map: np.ndarray, pred_band: np.ndarray,
                 label_band: np.ndarray) -> Figures:
    both = pred_band & label_band & (pred_map == label_map)
    intersection = np.bincount(pred_map[both], minlength=NUM_CLASSES)
    union = (np.bincount(pred_map[pred_band], minlength=NUM_CLASSES)
             + np.bincount(label_map[label_band], minlength=NUM_CLASSES) - intersection)
    return {"BIoU_intersect": intersection.astype(np.float64), "BIoU_union": union.astype(np.float64)}


def points(boundaries: ClassBoundaries, c: int) -> np.ndarray:
    part = slice(boundaries.starts[c], boundaries.starts[c + 1])
    return np.stack([boundaries.rows[part], boundaries.cols[part]], axis=1)


def kd_tree_figures(pred: Tensor, label: Tensor) -> Figures:
    pred_map, label_map = class_maps(pred, label, NUM_CLASSES, IGNORE_INDEX)
    pred_b, label_b = class_boundaries(pred_map, NUM_CLASSES), class_boundaries(label_map, NUM_CLASSES)
    both = (pred_b.counts() > 0) & (label_b.counts() > 0)
    directed: list[Directed | None] = [None] * NUM_CLASSES
    for c in np.flatnonzero(both):
        p, g = points(pred_b, c), points(label_b, c)
        directed[c] = cKDTree(g).query(p)[0], cKDTree(p).query(g)[0]
    figures = _scores(directed, (pred_b.counts() > 0) | (label_b.counts() > 0), pred_map.shape)
    d = biou_width(pred_map.shape, DILATION_RATIO)
    window = 2 * d + 1  # a mask pixel is in the band when another value (or the frame) is in its window
    bands = [(ndi.maximum_filter(m, window, mode="constant", cval=-2)
              != ndi.minimum_filter(m, window, mode="constant", cval=-2)) & (m >= 0)
             for m in (pred_map, label_map)]
    return figures | _band_counts(pred_map, label_map, *bands)


def edt_figures(pred: Tensor, label: Tensor) -> Figures:
    pred_np, label_np = pred.numpy(), label.numpy()
    valid = label_np != IGNORE_INDEX
    d = biou_width(label_np.shape, DILATION_RATIO)
    directed: list[Directed | None] = [None] * NUM_CLASSES
    present = np.zeros(NUM_CLASSES, bool)
    intersection, union = np.zeros(NUM_CLASSES), np.zeros(NUM_CLASSES)
    for c in range(NUM_CLASSES):
        p, g = (pred_np == c) & valid, (label_np == c) & valid
        present[c] = p.any() or g.any()
        bp, bg = p & ~ndi.binary_erosion(p, border_value=0), g & ~ndi.binary_erosion(g, border_value=0)
        if p.any() and g.any():
            directed[c] = ndi.distance_transform_edt(~bg)[bp], ndi.distance_transform_edt(~bp)[bg]
        band_p, band_g = (m & (ndi.distance_transform_cdt(np.pad(m, 1), metric="chessboard")[1:-1, 1:-1] <= d)
                          for m in (p, g))
        intersection[c], union[c] = (band_p & band_g).sum(), (band_p | band_g).sum()
    return _scores(directed, present, label_np.shape) | {"BIoU_intersect": intersection, "BIoU_union": union}


def accuracy_update(pred: Tensor, label: Tensor) -> None:
    AccuracyMetric(NUM_CLASSES, IGNORE_INDEX).update(pred, label, "x")


def seconds(function: Callable[..., object], *args: object) -> float:
    """Wall time of one call; on a GPU, from a synchronized start to a synchronized end."""
    synchronize = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    synchronize()
    start = time.perf_counter()
    function(*args)
    synchronize()
    return time.perf_counter() - start


def forward_seconds(repeats: int, device: str) -> tuple[float, str]:
    from segbench.models.nets import ARCHS
    net = ARCHS["deeplabv3"](NUM_CLASSES).eval().to(device)
    image = torch.randn(1, 3, HEIGHT, WIDTH, device=device)
    with torch.inference_mode():
        net(image)  # warm-up
        times = [seconds(net, image) for _ in range(repeats)]
    threads = f"CPU, {torch.get_num_threads()} threads"
    where = threads if device == "cpu" else torch.cuda.get_device_name(device)
    return statistics.median(times), f"built-in deeplabv3, random weights, 1x3x1024x2048 float32, {where}"


def check_identical(images: list[tuple[Tensor, Tensor]], device: str) -> None:
    ways = {"cKDTree": kd_tree_figures, "per-class EDT": edt_figures,
            "segbench's torch path": segbench_torch_figures}
    for pred, label in images:
        ours = segbench_figures(pred, label)
        theirs = {name: way(pred, label) for name, way in ways.items()}
        if device != "cpu":
            theirs[f"segbench on {device}"] = segbench_figures(pred.to(device), label.to(device))
        for name, figures in theirs.items():
            for key in KEYS:
                assert np.array_equal(ours[key], figures[key], equal_nan=True), f"{key} differs from {name}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=3, help="distinct image pairs, cycled")
    parser.add_argument("--repeats", type=int, default=9, help="timed calls of segbench and cKDTree")
    parser.add_argument("--edt-repeats", type=int, default=1, help="timed calls of the per-class EDT way")
    parser.add_argument("--no-forward", action="store_true", help="skip timing DeepLabV3's forward pass")
    parser.add_argument("--device", default="cpu", help="also time segbench and the forward pass there")
    args = parser.parse_args()
    if args.images < 2:
        parser.error("--images must be at least 2: segbench reuses the work of an identical image")

    images = [make_pair(seed) for seed in range(args.images)]
    check_identical(images, args.device)

    ways = {"segbench": segbench_figures, "segbench one thread": segbench_one_thread_figures,
            "segbench torch path": segbench_torch_figures, "cKDTree": kd_tree_figures,
            "accuracy group": accuracy_update}
    times: dict[str, list[float]] = {name: [] for name in ways}
    calls = itertools.count()  # each call gets another image than the call before it
    for _ in range(args.repeats):  # interleaved, so that load on the machine hits all alike
        for name, way in ways.items():
            times[name].append(seconds(way, *images[next(calls) % len(images)]))
    times["per-class EDT"] = [seconds(edt_figures, *images[i % len(images)]) for i in range(args.edt_repeats)]
    if args.device != "cpu":
        on_device = [(pred.to(args.device), label.to(args.device)) for pred, label in images]
        segbench_figures(*on_device[-1])  # warm-up
        times["device"] = [seconds(segbench_figures, *on_device[i % len(on_device)])
                           for i in range(args.repeats)]
    ms = {name: statistics.median(t) * 1e3 for name, t in times.items()}

    pred_map, label_map = class_maps(*images[0], NUM_CLASSES, IGNORE_INDEX)
    sizes = [class_boundaries(m, NUM_CLASSES).rows.size for m in (pred_map, label_map)]
    print(f"input: {args.images} pairs of {HEIGHT}x{WIDTH} maps, {NUM_CLASSES} classes; first pair: "
          f"{sizes[0]} + {sizes[1]} "
          f"boundary pixels, {np.mean(label_map < 0):.1%} ignore, prediction right on "
          f"{np.mean(pred_map[label_map >= 0] == label_map[label_map >= 0]):.1%} of valid pixels")
    print(f"CPU, numpy {np.__version__}, torch {torch.__version__}, {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.2f} at the end; medians of {args.repeats} calls "
          f"({args.edt_repeats} for the per-class EDT)")
    print("values: identical (BF precision, recall, F, BIoU intersection and union, HD, HD95, every class)")
    print(f"segbench boundary + distance groups: {ms['segbench']:9.1f} ms/image   "
          f"({torch.get_num_threads()} torch threads)")
    print(f"  the same, one thread:              {ms['segbench one thread']:9.1f} ms/image")
    print(f"  the same, torch path on the CPU:   {ms['segbench torch path']:9.1f} ms/image")
    for name, label in (("cKDTree", "cKDTree per class, min/max filters: "),
                        ("per-class EDT", "per-class EDT (MONAI-style):        ")):
        print(f"{label} {ms[name]:9.1f} ms/image   ({ms[name] / ms['segbench']:.1f}x segbench's time, "
              f"{ms[name] / ms['segbench one thread']:.1f}x its one-thread time)")
    print(f"accuracy group:                      {ms['accuracy group']:9.1f} ms/image")
    if not args.no_forward:
        forward, what = forward_seconds(3, "cpu")
        total = ms["segbench"] + ms["accuracy group"]
        print(f"forward pass ({what}): {forward * 1e3:.0f} ms/image; all three metric groups: "
              f"{total:.0f} ms/image = {total / (forward * 1e3):.0%} of it")
        if args.device != "cpu":
            forward, what = forward_seconds(3, args.device)
            share = ms["device"] / (forward * 1e3)
            print(f"forward pass ({what}): {forward * 1e3:.1f} ms/image; boundary + distance groups on "
                  f"{args.device} tensors: {ms['device']:.1f} ms/image = {share:.0%} of it")


if __name__ == "__main__":
    main()
