"""Class boundaries of a (prediction, label) pair, the exact distances between them, and exact means.

The boundary (BF) and distance (HD, HD95) groups share this module
(DESIGN.md, "Boundary family"). For class c the masks are P = (pred == c) and
G = (label == c), both without the pixels whose label is the ignore index. A
mask's boundary is its pixels with a 4-neighbour outside the mask, the image
frame counting as outside. Every pixel has one class, so the boundaries of all
classes come out of one pass over each map: a pixel is on the boundary of its
own class when a 4-neighbour has another value or is off the image.

Distances are Euclidean, in pixels, between pixel centres: from each
boundary pixel of P to the nearest boundary pixel of G of the same class, and
the other way round. The figures are those of the exact distances (square
roots of integers, correctly rounded, as scipy's distance transform gives
them), but few distances need computing exactly (:class:`Distances`). For a
boundary pixel x of class c and the other map (:func:`nearest_distances`):

- x on the other boundary of c: 0;
- x inside the other mask of c: every pixel closer to x than the nearest
  non-interior pixel of the other map is interior, hence (the digital disc
  being 4-connected) of class c, so that nearest non-interior pixel is on the
  boundary of c. This class-agnostic distance is sought row by row, as in a
  separable distance transform, up to ROWS rows each way: exact when near,
  bounded otherwise;
- x outside the other mask of c: the nearest boundary pixel of c is the
  nearest pixel of the mask of c (a nearer interior pixel would have a
  4-neighbour nearer still). Offsets of increasing length up to RING_RADIUS
  find it when near; further pixels get bounds from one exact KD-tree query
  per class and CELL x CELL cell.

Where the tensors are (:func:`class_maps`), the bulk of the work runs: with
numpy for CPU tensors (faster there than torch's CPU kernels), with torch on
the tensors' device otherwise, in the same code (:func:`namespace`). Only the
boundary pixels' coordinates and distance bounds move to the CPU, where
:class:`Distances` makes the few exact queries with KD-trees. The two maps,
and the two directions, are worked on at once when torch may use two threads
(:func:`for_both`).
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
from scipy.spatial import cKDTree
from torch import Tensor

NOT_A_CLASS = -1
# What both groups record with their options: the definitions they share.
CONVENTIONS = {
    "masks": "P = pred == c, G = label == c, without the pixels whose label is ignore_index",
    "boundary": "mask pixels with a 4-neighbour outside the mask; the image frame is outside",
    "distance": "Euclidean, in pixels, between pixel centres; exact",
}
# How far each cheap search goes before bounds take over; tuned on Cityscapes-sized maps
# (benchmarks/boundary_speed.py). They change the time, never the figures.
RING_RADIUS = 2   # outside the other mask: offsets up to this length
ROWS = 3          # inside the other mask: rows each way
CELL = 8          # further: one exact query per class and CELL x CELL cell
LEAF_SIZE = 64    # of the KD-trees; builds faster than scipy's 16, queries as fast


def _ring_offsets(radius: int) -> list[tuple[int, list[tuple[int, int]]]]:
    """The offsets (dy, dx) with 0 < dy^2 + dx^2 <= radius^2, grouped by squared length, shortest first."""
    groups: dict[int, list[tuple[int, int]]] = {}
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            if 0 < dy * dy + dx * dx <= radius * radius:
                groups.setdefault(dy * dy + dx * dx, []).append((dy, dx))
    return sorted(groups.items())


_RINGS = _ring_offsets(RING_RADIUS)

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
    the budget torch's own operations keep to): numpy's array loops and
    scipy's KD-trees release the GIL, so the two halves overlap on two free
    cores, and merely take turns on a busy machine.
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

    def points(self, c: int) -> np.ndarray:
        """(m, 2) float64 coordinates of class c's boundary pixels."""
        part = slice(self.starts[c], self.starts[c + 1])
        return np.stack([self.rows[part], self.cols[part]], axis=1).astype(np.float64)

    def coordinates(self) -> np.ndarray:
        """(n, 2) float64 coordinates of all the boundary pixels, C-contiguous: class c's rows are a
        C-contiguous slice, which cKDTree takes without a copy."""
        coordinates = np.empty((self.rows.shape[0], 2), dtype=np.float64)
        coordinates[:, 0], coordinates[:, 1] = self.rows, self.cols
        return coordinates


def class_boundaries(classes: Array, num_classes: int, flat: Array | None = None) -> ClassBoundaries:
    """Every class's boundary pixels in one pass (``flat``: their raster positions, ascending, when known)."""
    xp = namespace(classes)
    if flat is None:
        flat = xp.where(boundary_mask(classes).ravel())[0]
    values = classes.ravel()[flat]
    order = xp.argsort(values, stable=True)
    flat, values = flat[order], values[order]
    width = classes.shape[1]
    every_class = xp.arange(num_classes + 1, dtype=values.dtype, device=values.device)
    return ClassBoundaries(flat // width, flat % width, values, xp.searchsorted(values, every_class))


@dataclass(frozen=True)
class _Target:
    """One map, prepared to answer nearest-boundary questions."""

    classes: Array       # (H, W)
    framed: Array        # the class map inside a frame of -1, RING_RADIUS wide
    boundary: Array      # (H, W) bool
    not_interior_rank: Array  # (H * W,): number of non-interior pixels at or before each raster position
    not_interior_at: Array    # raster positions of the non-interior pixels, then one past the end
    boundaries: ClassBoundaries


def _target(classes: Array, num_classes: int) -> _Target:
    """A pixel is interior when it and its 4 neighbours share a class: neither on a boundary nor -1."""
    xp = namespace(classes)
    boundary = boundary_mask(classes)
    not_interior = (boundary | (classes == NOT_A_CLASS)).ravel()
    height, width = classes.shape
    framed = xp.full((height + 2 * RING_RADIUS, width + 2 * RING_RADIUS), NOT_A_CLASS, dtype=classes.dtype,
                     device=classes.device)
    framed[RING_RADIUS:RING_RADIUS + height, RING_RADIUS:RING_RADIUS + width] = classes
    not_interior_at = xp.where(not_interior)[0]
    boundary_at = not_interior_at[boundary.ravel()[not_interior_at]]  # cheaper than another xp.where
    end = xp.full((1,), height * width, dtype=not_interior_at.dtype, device=classes.device)
    return _Target(
        classes=classes,
        framed=framed,
        boundary=boundary,
        not_interior_rank=xp.cumsum(not_interior, 0, dtype=xp.int32),
        not_interior_at=xp.concat([not_interior_at, end]),
        boundaries=class_boundaries(classes, num_classes, boundary_at),
    )


class Distances:
    """From each boundary pixel of one map to the nearest boundary pixel of its class in the other map.

    A figure needs few exact distances: BF whether each is within the
    tolerance, HD the largest, HD95 two order statistics per direction. So
    each pixel holds a lower and an upper bound, equal where the distance is
    known, and each figure makes exact (with a KD-tree of the class's other
    boundary) just the pixels whose bounds leave its answer open. The
    results are those of the exact distances. inf where the other map lacks
    the class.
    """

    def __init__(self, source: ClassBoundaries, target: ClassBoundaries, lower: np.ndarray,
                 upper: np.ndarray) -> None:
        self.source, self.target = source, target
        self.lower, self.upper = lower, upper  # float64, aligned with source's pixels
        self._trees: dict[int, cKDTree] = {}
        self._queries: np.ndarray | None = None  # source.coordinates(), once a query needs them
        self._points: np.ndarray | None = None   # target.coordinates(), once a tree needs them

    def of(self, c: int) -> slice:
        """The pixels of class c."""
        return slice(self.source.starts[c], self.source.starts[c + 1])

    def exact(self) -> np.ndarray:
        """Every distance, exact (costly: for tests)."""
        self.refine(np.arange(self.lower.size))
        return self.upper

    def within(self, tolerance: float) -> np.ndarray:
        """Whether each distance is <= ``tolerance``."""
        self.refine(np.flatnonzero((self.lower <= tolerance) & (self.upper > tolerance)))
        return self.upper <= tolerance

    def bounds(self, c: int, q: float) -> tuple[float, float]:
        """Bounds on np.percentile of class c's distances (q = 100: the largest), without refining.

        The interpolated percentile lies between the order statistics at
        ranks floor and ceil of q/100 (n-1) (up to rounding, which callers
        allow for): the lower bounds' statistic at the first and the upper
        bounds' at the second bound it.
        """
        part = self.of(c)
        rank = q / 100 * (part.stop - part.start - 1)
        return (_order_statistic(self.lower[part], math.floor(rank)),
                _order_statistic(self.upper[part], math.ceil(rank)))

    def maximum(self, c: int) -> float:
        """The largest distance of class c (which must be in both maps)."""
        part = self.of(c)
        self.refine(part.start + np.flatnonzero(self.upper[part] >= self.lower[part].max()))
        return float(self.upper[part].max())

    def percentile(self, c: int, q: float) -> float:
        """np.percentile of class c's distances (linear interpolation).

        It reads the order statistics at ranks floor and ceil of q/100 (n-1);
        every pixel whose bounds meet [lower at rank floor - 1, upper at rank
        ceil + 1] is made exact, after which the upper bounds have those same
        order statistics (the others lie wholly below or above).
        """
        part = self.of(c)
        lower, upper = self.lower[part], self.upper[part]
        rank = q / 100 * (lower.size - 1)
        first, last = max(math.floor(rank) - 1, 0), min(math.ceil(rank) + 1, lower.size - 1)
        low, high = np.partition(lower, first)[first], np.partition(upper, last)[last]
        self.refine(part.start + np.flatnonzero((upper >= low) & (lower <= high)))
        return float(np.percentile(self.upper[part], q))

    def refine(self, indices: np.ndarray) -> None:
        """Make the distances of the pixels ``indices`` exact."""
        indices = indices[self.lower[indices] < self.upper[indices]]
        self.lower[indices] = self.upper[indices] = self.nearest(indices)[0]

    def tighten(self, indices: np.ndarray, cell: int) -> None:
        """Tighter bounds for the pixels ``indices``: one exact query per class and ``cell`` x ``cell`` cell.

        In a cell, one pixel r gets its exact distance and nearest target
        pixel t; another pixel x is at most |x - t| away (t is a target
        pixel) and at least d(r) - |x - r| (distances are 1-Lipschitz), less a
        hair for rounding.
        """
        source = self.source
        rows, cols = source.rows[indices], source.cols[indices]
        cells_across = source.cols.max(initial=0) // cell + 1
        cells_down = source.rows.max(initial=0) // cell + 1
        key = source.classes[indices].astype(np.int64) * cells_down + rows // cell
        key = key * cells_across + cols // cell
        _, first, which = np.unique(key, return_index=True, return_inverse=True)
        exact, nearest_rows, nearest_cols = self.nearest(indices[first])
        reference = first[which]
        to_reference = np.hypot(rows - rows[reference], cols - cols[reference])
        upper = np.sqrt((rows - nearest_rows[which]) ** 2 + (cols - nearest_cols[which]) ** 2,
                        dtype=np.float64)
        self.upper[indices] = np.minimum(self.upper[indices], upper)
        hair = 1e-9 * (exact[which] + to_reference)
        lower = np.maximum(self.lower[indices], exact[which] - to_reference - hair)
        self.lower[indices] = np.minimum(lower, self.upper[indices])
        self.lower[indices[first]] = self.upper[indices[first]] = exact

    def nearest(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Exact distance, and the row and column of the nearest target pixel, for the pixels ``indices``.

        ``indices`` must be grouped by class in class order (ascending indices are; so are
        :meth:`tighten`'s, sorted by class then cell): one query per class. A class absent from
        the target gets inf, and an arbitrary row and column.
        """
        if self._queries is None:
            self._queries = self.source.coordinates()
        distances = np.full(indices.size, np.inf)
        nearest = np.zeros(indices.size, np.int64)  # positions in the target's pixels
        by_class = np.searchsorted(indices, self.source.starts)
        for c in np.flatnonzero((by_class[1:] > by_class[:-1]) & (self.target.counts() > 0)):
            which = slice(by_class[c], by_class[c + 1])
            distances[which], found = self._tree(c).query(self._queries[indices[which]])
            nearest[which] = found + self.target.starts[c]
        if self.target.rows.shape[0] == 0:
            return distances, nearest, nearest
        return distances, self.target.rows[nearest], self.target.cols[nearest]

    def _tree(self, c: int) -> cKDTree:
        if c not in self._trees:
            if self._points is None:
                self._points = self.target.coordinates()
            self._trees[c] = cKDTree(self._points[self.target.starts[c]:self.target.starts[c + 1]],
                                    leafsize=LEAF_SIZE, balanced_tree=False, compact_nodes=False)
        return self._trees[c]


def _order_statistic(values: np.ndarray, rank: int) -> float:
    """The value at ``rank`` (from 0) in sorted order."""
    if rank == values.size - 1:
        return float(values.max())  # much faster than a partition
    return float(np.partition(values, rank)[rank])


def nearest_distances(source: ClassBoundaries, target: _Target) -> Distances:
    """Distances from ``source``'s boundary pixels to ``target``'s boundaries: exact for most, else bounds.

    See the module docstring for the three cases. The bounds are found where
    the maps are; the far pixels' are tightened on the CPU.
    """
    lower, upper, far = (to_numpy(a) for a in _near_bounds(source, target))
    distances = Distances(source.numpy(), target.boundaries.numpy(), lower, upper)
    distances.tighten(far, CELL)
    return distances


def _near_bounds(source: ClassBoundaries, target: _Target) -> tuple[Array, Array, Array]:
    """Lower and upper bounds (float64) from the cheap searches, and the far pixels of classes in target."""
    xp = namespace(source.rows)
    flat = source.rows * target.classes.shape[1] + source.cols
    inside = target.classes.ravel()[flat] == source.classes
    on_boundary = inside & target.boundary.ravel()[flat]
    lower = xp.zeros(flat.shape, dtype=xp.float64, device=flat.device)
    upper = xp.zeros(flat.shape, dtype=xp.float64, device=flat.device)
    interior = xp.where(inside & ~on_boundary)[0]
    low, high = _distances_to_not_interior(flat[interior], target)
    lower[interior], upper[interior] = xp.sqrt(astype(low, xp.float64)), xp.sqrt(astype(high, xp.float64))
    outside = xp.where(~inside)[0]
    squared = _ring_search(source.rows[outside], source.cols[outside], source.classes[outside],
                           target.framed)
    lower[outside] = upper[outside] = xp.sqrt(astype(squared.clip(0), xp.float64))
    far = outside[squared < 0]
    present = target.boundaries.counts()[astype(source.classes[far], xp.int64)] > 0
    lower[far] = math.inf
    upper[far] = math.inf
    lower[far[present]] = math.sqrt(RING_RADIUS**2 + 1)  # the offsets found none nearer
    return lower, upper, far[present]


_FAR = 2**62  # a squared distance larger than any


def _distances_to_not_interior(flat: Array, target: _Target) -> tuple[Array, Array]:
    """Bounds on the squared distance from each pixel (raster position) to the nearest non-interior pixel.

    That is the least (r - y)^2 + h(r)^2 over rows r, with h(r) the horizontal
    distance to the nearest non-interior pixel of row r (the frame columns
    are never interior, so there is one in the row). Rows are taken in order
    of distance until their dy^2 reaches the best found (exact), or up to
    ROWS rows each way (bounds); the frame rows are never interior either,
    so this never leaves the image.
    """
    xp = namespace(flat)
    width = target.classes.shape[1]
    rank, at = target.not_interior_rank, target.not_interior_at
    best = xp.full(flat.shape, _FAR, dtype=xp.int64, device=flat.device)
    todo = xp.arange(flat.shape[0], device=flat.device)
    position = flat
    for dy in range(ROWS + 1):
        for row_position in (position + dy * width, position - dy * width) if dy else (position,):
            ranks = rank[row_position]
            h = xp.minimum(row_position - at[ranks - 1], at[ranks] - row_position)
            xp.minimum(best[todo], h * h + dy * dy, out=h)
            best[todo] = h
        going_on = best[todo] > (dy + 1) ** 2
        todo, position = todo[going_on], position[going_on]
    return best.clip(None, (ROWS + 1) ** 2), best


def _ring_search(rows: Array, cols: Array, classes: Array, framed: Array) -> Array:
    """Squared distance from each pixel to the nearest of its class in ``framed``; -1 beyond RING_RADIUS.

    The offsets are tried shortest first, so the first hit is the nearest.
    """
    xp = namespace(rows)
    framed_width = framed.shape[1]
    flat = (rows + RING_RADIUS) * framed_width + (cols + RING_RADIUS)
    values = framed.ravel()
    squared = xp.full(flat.shape, -1, dtype=xp.int64, device=flat.device)
    todo = xp.arange(flat.shape[0], device=flat.device)
    for length, offsets in _RINGS:
        hit = xp.zeros(todo.shape, dtype=xp.bool, device=flat.device)
        for dy, dx in offsets:
            hit |= values[flat + (dy * framed_width + dx)] == classes
        squared[todo[hit]] = length
        missed = ~hit
        todo, flat, classes = todo[missed], flat[missed], classes[missed]
        if todo.shape[0] == 0:
            break
    return squared


@dataclass(frozen=True)
class BoundaryPair:
    """One image's class maps, class boundaries, and the distances between the boundaries.

    The maps stay where :func:`class_maps` put them; the boundaries and
    distances are on the CPU. Read-only, except that the distances become
    exact where figures ask.
    """

    pred_map: Array
    label_map: Array
    pred: ClassBoundaries
    label: ClassBoundaries
    pred_to_label: Distances
    label_to_pred: Distances

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.label_map.shape)


def compute_boundary_pair(pred_map: Array, label_map: Array, num_classes: int) -> BoundaryPair:
    """Everything the boundary and distance groups need from one image's class maps (:func:`class_maps`)."""
    pred_target, label_target = for_both(_target, (pred_map, num_classes), (label_map, num_classes))
    pred_to_label, label_to_pred = for_both(nearest_distances, (pred_target.boundaries, label_target),
                                            (label_target.boundaries, pred_target))
    return BoundaryPair(pred_map, label_map, pred_to_label.source, label_to_pred.source,
                        pred_to_label, label_to_pred)


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
