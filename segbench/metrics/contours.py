"""Class boundaries of a (prediction, label) pair, and the exact distances between them.

The boundary (BF) and distance (HD, HD95) groups share this module
(DESIGN.md, "Boundary family"). For class c the masks are P = (pred == c) and
G = (label == c), both without the pixels whose label is the ignore index. A
mask's boundary is its pixels with a 4-neighbour outside the mask, the image
frame counting as outside. Every pixel has one class, so the boundaries of all
classes come out of one pass over each map: a pixel is on the boundary of its
own class when a 4-neighbour has another value or is off the image.

Distances are Euclidean, in pixels, between pixel centres: from each
boundary pixel of P to the nearest boundary pixel of G of the same class, and
the other way round, exact (:mod:`segbench.metrics.nearest`).

Where the tensors are (:func:`class_maps`), the maps and their boundaries are
found: with numpy for CPU tensors (faster there than torch's CPU kernels),
with torch on the tensors' device otherwise, in the same code
(:func:`namespace`). Only the boundary pixels' coordinates move to the CPU for
the distances. The two maps, and the two directions, are worked on at once
when torch may use two threads (:func:`for_both`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from types import ModuleType

import numpy as np
import torch
from torch import Tensor

NOT_A_CLASS = -1
# What both groups record with their options: the definitions they share.
CONVENTIONS = {
    "masks": "P = pred == c, G = label == c, without the pixels whose label is ignore_index",
    "boundary": "mask pixels with a 4-neighbour outside the mask; the image frame is outside",
    "distance": "Euclidean, in pixels, between pixel centres; exact",
}
Array = np.ndarray | Tensor  # numpy on the CPU, torch on another device (or on the CPU, see torch_on_cpu)
_torch_on_cpu = False


@contextmanager
def torch_on_cpu() -> Iterator[None]:
    """Within it, CPU tensors take the torch path too: tests and benchmarks compare the two paths."""
    global _torch_on_cpu
    _torch_on_cpu = True
    try:
        yield
    finally:
        _torch_on_cpu = False


def namespace(array: Array) -> ModuleType:
    """numpy or torch, whichever ``array`` belongs to: the boundary family's array code is written once.

    It keeps to what the two spell alike (numpy 2 has ``device=``, ``concat``,
    ``argsort(stable=...)``), and :func:`astype` and :func:`to_numpy` for the rest.
    """
    return torch if isinstance(array, Tensor) else np


def astype(array: Array, dtype: np.dtype | torch.dtype) -> Array:
    """A copy of ``array`` in ``dtype`` (always a copy, as numpy's astype)."""
    return array.to(dtype, copy=True) if isinstance(array, Tensor) else array.astype(dtype)


def to_numpy(array: Array) -> np.ndarray:
    return array.cpu().numpy() if isinstance(array, Tensor) else array


def for_both(function: Callable[..., object], *arguments: tuple) -> list:
    """``function`` on each tuple of arguments (the two maps, or the two directions), results in order.

    In two threads when torch may use two or more (``torch.get_num_threads()``,
    the budget torch's own operations keep to): numpy's array loops and the
    compiled distance search release the GIL, so the two halves overlap on two
    free cores, and merely take turns on a busy machine.
    """
    if torch.get_num_threads() < 2:
        return [function(*args) for args in arguments]
    return list(_two_threads().map(lambda args: function(*args), arguments))


@cache
def _two_threads() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(2, thread_name_prefix="segbench-boundary")


def mean_of_defined(values: np.ndarray) -> float:
    """Mean of the non-NaN values (NaN if none), summed exactly (math.fsum): no order of images changes it."""
    defined = values[~np.isnan(values)]
    return math.fsum(defined.tolist()) / defined.size if defined.size else math.nan


def column_means(matrix: np.ndarray) -> np.ndarray:
    """Per column of an (images, classes) matrix: :func:`mean_of_defined` (float64)."""
    return np.array([mean_of_defined(column) for column in matrix.T], dtype=np.float64)


def image_diagonal(shape: tuple[int, ...]) -> float:
    """sqrt(H^2 + W^2): the unit of the BF tolerance and the BIoU width, and the one-sided HD value."""
    height, width = shape
    return math.hypot(height, width)


def class_maps(pred: Tensor, label: Tensor, num_classes: int, ignore_index: int) -> tuple[Array, Array]:
    """Prediction and label maps, -1 wherever the label is the ignore index: numpy arrays for CPU tensors
    (outside :func:`torch_on_cpu`), tensors on the same device otherwise.

    -1 rather than the ignore index, so that an ignore index inside [0, K)
    cannot put ignore pixels in a mask. The values must be valid
    (``checks.validate_pair``); int16 holds them unless K is huge.
    """
    small = num_classes < 2**15
    if pred.device.type != "cpu" or _torch_on_cpu:
        ignored = label == ignore_index
        dtype = torch.int16 if small else torch.int32
        return (pred.to(dtype).masked_fill(ignored, NOT_A_CLASS),
                label.to(dtype).masked_fill(ignored, NOT_A_CLASS))
    label_np = label.cpu().numpy()
    dtype = np.int16 if small else np.int32
    pred_map = pred.cpu().numpy().astype(dtype)
    label_map = label_np.astype(dtype)
    limits = np.iinfo(dtype)
    # the valid classes keep their value in dtype, so does an ignore index in its range; comparing
    # the small copy reads a quarter of the memory
    ignored = (label_map if limits.min <= ignore_index <= limits.max else label_np) == ignore_index
    np.copyto(pred_map, NOT_A_CLASS, where=ignored)
    np.copyto(label_map, NOT_A_CLASS, where=ignored)
    return pred_map, label_map


def boundary_mask(classes: Array) -> Array:
    """True at the pixels on the boundary of their own class's mask (never at -1 pixels)."""
    xp = namespace(classes)
    mask = xp.zeros(classes.shape, dtype=xp.bool, device=classes.device)
    if 0 in mask.shape:
        return mask
    mask[0, :] = mask[-1, :] = mask[:, 0] = mask[:, -1] = True
    changes = classes[1:, :] != classes[:-1, :]
    mask[1:, :] |= changes
    mask[:-1, :] |= changes
    changes = classes[:, 1:] != classes[:, :-1]
    mask[:, 1:] |= changes
    mask[:, :-1] |= changes
    mask &= classes != NOT_A_CLASS
    return mask


@dataclass(frozen=True)
class ClassBoundaries:
    """The boundary pixels of every class mask of one map, by class, in raster order within a class."""

    rows: Array     # (n,)
    cols: Array     # (n,)
    classes: Array  # (n,), non-decreasing
    starts: Array   # (K + 1,): class c's pixels are [starts[c], starts[c + 1])

    def counts(self) -> Array:
        """Boundary pixels per class; 0 exactly when the class is absent from the map."""
        return namespace(self.starts).diff(self.starts)

    def numpy(self) -> ClassBoundaries:
        """The same, as numpy arrays on the CPU."""
        return ClassBoundaries(*(to_numpy(a) for a in (self.rows, self.cols, self.classes, self.starts)))


def class_boundaries(classes: Array, num_classes: int) -> ClassBoundaries:
    """Every class's boundary pixels in one pass."""
    xp = namespace(classes)
    flat = xp.where(boundary_mask(classes).ravel())[0]
    values = classes.ravel()[flat]
    order = xp.argsort(values, stable=True)
    flat, values = flat[order], values[order]
    width = classes.shape[1]
    every_class = xp.arange(num_classes + 1, dtype=values.dtype, device=values.device)
    return ClassBoundaries(flat // width, flat % width, values, xp.searchsorted(values, every_class))


@dataclass(frozen=True)
class BoundaryPair:
    """One image's class maps, class boundaries, and the exact distances between the boundaries.

    The maps stay where :func:`class_maps` put them; the boundaries and
    distances are numpy arrays. ``pred_to_label[i]``: from the prediction's
    boundary pixel i to the label's boundary of its class (inf where the
    label lacks the class); ``label_to_pred`` the other way.
    """

    pred_map: Array
    label_map: Array
    pred: ClassBoundaries
    label: ClassBoundaries
    pred_to_label: np.ndarray
    label_to_pred: np.ndarray

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.label_map.shape)


def compute_boundary_pair(pred_map: Array, label_map: Array, num_classes: int) -> BoundaryPair:
    """Everything the boundary and distance groups need from one image's class maps (:func:`class_maps`)."""
    from segbench.metrics.nearest import nearest_distances  # numba takes 0.5 s to import: only when used

    pred, label = (b.numpy() for b in for_both(class_boundaries, (pred_map, num_classes),
                                               (label_map, num_classes)))
    pred_to_label, label_to_pred = for_both(nearest_distances, (pred, label), (label, pred))
    return BoundaryPair(pred_map, label_map, pred, label, pred_to_label, label_to_pred)


def _same(a: Array, b: Array) -> bool:
    """Equal maps of the same kind: numpy arrays, or tensors on the same device."""
    if isinstance(a, Tensor) and isinstance(b, Tensor):
        return a.device == b.device and torch.equal(a, b)
    return isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and np.array_equal(a, b)


class _LastPair:
    """The last pair computed, reused when the next image's class maps are the same.

    The runner hands each image to the boundary group and then to the
    distance group; the distances are most of both groups' work, and
    comparing the class maps costs little next to them.
    """

    def __init__(self) -> None:
        self.num_classes: int | None = None
        self.pair: BoundaryPair | None = None

    def get(self, pred: Tensor, label: Tensor, num_classes: int, ignore_index: int) -> BoundaryPair:
        pred_map, label_map = class_maps(pred, label, num_classes, ignore_index)
        pair = self.pair
        if (pair is None or self.num_classes != num_classes or not _same(pair.pred_map, pred_map)
                or not _same(pair.label_map, label_map)):
            pair = compute_boundary_pair(pred_map, label_map, num_classes)
            self.num_classes, self.pair = num_classes, pair
        return pair


_last_pair = _LastPair()


def boundary_pair(pred: Tensor, label: Tensor, num_classes: int, ignore_index: int) -> BoundaryPair:
    """The boundaries and distances of one (prediction, label) pair of valid values (checks.validate_pair)."""
    return _last_pair.get(pred, label, num_classes, ignore_index)
