"""Exact distances from boundary pixels to the nearest boundary pixel of their class in another map.

A compiled (numba) search, row by row, as the second pass of a separable
distance transform but for the boundary pixels only: for a pixel at (r0, c0)
of class c, the squared distance to the other map's boundary of c is the
least dy^2 + h^2 over the rows r0 +- dy where that boundary has pixels, h
being the horizontal distance to the nearest of them in the row (a binary
search among the row's pixels, sorted by column). Those rows are taken in
order of dy until dy^2 reaches the best found: the result is exact, near
pixels (most of them) are done after a few rows, and rows without pixels of
the class cost nothing. Square roots are taken of the integer squared
distances, correctly rounded, as scipy's exact distance transform gives them.

numba compiles the search on first use (about a second) and caches it beside
this file, or in the user's cache folder when that is not writable; where
neither is (a read-only install, no home), it compiles it in each process.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Protocol

import numba
import numpy as np


class Boundaries(Protocol):
    """Boundary pixels by class, as numpy arrays: what :class:`segbench.metrics.contours.ClassBoundaries` holds.

    Declared here, not imported, so that this module, below ``contours``, knows nothing above it.
    """

    @property
    def rows(self) -> np.ndarray: ...      # (n,)
    @property
    def cols(self) -> np.ndarray: ...      # (n,)
    @property
    def classes(self) -> np.ndarray: ...   # (n,), non-decreasing
    @property
    def starts(self) -> np.ndarray: ...    # (K + 1,): class c's pixels are [starts[c], starts[c + 1])


def _compiled(function: Callable) -> Callable:
    """``function`` compiled by numba, releasing the GIL; cached where a cache folder is writable."""
    try:
        return numba.njit(cache=True, nogil=True)(function)
    except RuntimeError:  # numba found no writable cache folder
        return numba.njit(nogil=True)(function)


def nearest_distances(source: Boundaries, target: Boundaries) -> np.ndarray:
    """float64, aligned with ``source``'s pixels: the exact distance from each to the nearest pixel of its
    class in ``target`` (numpy arrays, :meth:`ClassBoundaries.numpy`); inf where ``target`` lacks the class.
    """
    # target's pixels are sorted by class, then row: cut them into (class, row) groups, and find for each
    # (class c, row r) the first group of c at or below r (a table of K x H, to spare a search per pixel)
    height = int(max(source.rows.max(initial=0), target.rows.max(initial=0))) + 1
    num_classes = target.starts.shape[0] - 1
    key = target.classes.astype(np.int64) * height + target.rows
    firsts = np.flatnonzero(np.diff(key, prepend=-1))
    next_group = np.searchsorted(key[firsts], np.arange(num_classes * height + 1))
    out = np.empty(source.rows.shape[0], dtype=np.float64)
    _search(source.rows, source.cols, source.classes, target.cols, np.append(firsts, key.shape[0]),
            target.rows[firsts], next_group, height, out)
    return out


_NONE = 1 << 31  # a row offset beyond any image: no more rows on that side


@_compiled
def _first_at_least(values, lo, hi, x):
    """The first position in [lo, hi) of ascending ``values`` whose value is >= x (hi if none)."""
    while lo < hi:
        middle = (lo + hi) >> 1
        if values[middle] < x:
            lo = middle + 1
        else:
            hi = middle
    return lo


@_compiled
def _search(rows, cols, classes, target_cols, group_start, group_row, next_group, height, out):
    for i in range(rows.shape[0]):
        c = classes[i]
        first, last = next_group[c * height], next_group[(c + 1) * height]  # class c's rows, ascending
        if first == last:
            out[i] = math.inf
            continue
        r0, c0 = rows[i], cols[i]
        below = next_group[c * height + r0]  # the next row at or below r0
        above = below - 1                    # the next row above it
        best = _NONE * _NONE
        while True:
            dy_above = r0 - group_row[above] if above >= first else _NONE
            dy_below = group_row[below] - r0 if below < last else _NONE
            if dy_above <= dy_below:
                group, dy = above, dy_above
                above -= 1
            else:
                group, dy = below, dy_below
                below += 1
            if dy * dy >= best:  # also when both sides are done: _NONE^2 is at least best
                break
            lo, hi = group_start[group], group_start[group + 1]
            j = _first_at_least(target_cols, lo, hi, c0)
            h = target_cols[j] - c0 if j < hi else _NONE
            if j > lo:
                h = min(h, c0 - target_cols[j - 1])
            best = min(best, dy * dy + h * h)
        out[i] = math.sqrt(best)
