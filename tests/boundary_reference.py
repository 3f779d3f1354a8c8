"""The literal reference of the boundary family (DESIGN.md, "Boundary family"), for its tests.

One class mask at a time: scipy's binary erosion for boundaries, scipy's
exact Euclidean distance transform for distances, exact means over images.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage as ndi

IGNORE = 255


def reference_masks(pred: np.ndarray, label: np.ndarray, c: int,
                    ignore_index: int = IGNORE) -> tuple[np.ndarray, np.ndarray]:
    """P and G of class c; the prediction is set to ignore where the label is; ignore is in no mask."""
    valid = label != ignore_index
    pred = np.where(valid, pred, ignore_index)
    return (pred == c) & valid, (label == c) & valid


def reference_boundary(mask: np.ndarray) -> np.ndarray:
    """Mask pixels with a 4-neighbour outside the mask; erosion's border value 0 puts the frame outside."""
    return mask & ~ndi.binary_erosion(mask, border_value=0)


def reference_boundaries(pred: np.ndarray, label: np.ndarray, c: int,
                         ignore_index: int = IGNORE) -> tuple[np.ndarray, np.ndarray]:
    """The boundaries of P and G of class c."""
    p, g = reference_masks(pred, label, c, ignore_index)
    return reference_boundary(p), reference_boundary(g)


def reference_distances(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Distance from each source pixel (raster order) to the nearest target pixel."""
    return ndi.distance_transform_edt(~target)[source]


def reference_class_means(values: list[np.ndarray]) -> np.ndarray:
    """Per class, the exact mean over the images where it is defined."""
    stacked = np.array(values)
    return np.array([math.fsum(col[~np.isnan(col)]) / np.count_nonzero(~np.isnan(col))
                     if (~np.isnan(col)).any() else math.nan for col in stacked.T])


def assert_same(a, b) -> None:
    np.testing.assert_array_equal(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64))


def assert_same_records(a: list[dict], b: list[dict]) -> None:
    """Per-image records equal key for key: the image ids exactly, the figures by :func:`assert_same`."""
    assert [r.keys() for r in a] == [r.keys() for r in b]
    for x, y in zip(a, b):
        assert x["image_id"] == y["image_id"]
        for key in x.keys() - {"image_id"}:
            assert_same(x[key], y[key])
