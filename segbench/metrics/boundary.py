"""Boundary family, first group: boundary F-score (BF) with its precision and recall, and boundary IoU (BIoU).

Definitions (DESIGN.md, "Boundary family"; boundaries and distances in
:mod:`segbench.metrics.contours`):

- BF (Csurka et al. 2013): a boundary pixel of P is matched when a boundary
  pixel of G of the same class lies at a distance <= the tolerance, and the
  other way round; precision, recall and F per (image, class). Not evaluated
  when the class is in neither mask; 0 (all three) when it is in only one;
  F = 0 when precision + recall = 0. A class's BF is the mean over the images
  where it was evaluated; mBF the mean over classes.
- BIoU (Cheng et al. 2021): a mask's inner band is the mask minus its erosion
  by a 3x3 square applied d times, the frame counting as outside, with
  d = max(1, round(dilation_ratio * diagonal)) (Python's round, as their
  code). Per class, the band intersection and union are summed over the
  dataset; mBIoU is the mean of the classes with a non-empty union.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from pydantic import Field, field_validator
from torch import Tensor

from segbench.columns import Column, Resampling
from segbench.config import Strict
from segbench.metrics.base import MetricResult, RecordState
from segbench.metrics.contours import (CONVENTIONS, Array, BoundaryPair, astype, boundary_pair, column_means,
                                       for_both, image_diagonal, mean_of_defined, namespace)
from segbench.registry import register_metric

DEFAULT_TOLERANCE = 0.0075
DEFAULT_DILATION_RATIO = 0.02
_PIXELS = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*px\s*")


@dataclass(frozen=True)
class Tolerance:
    """The BF tolerance: ``value`` times the image diagonal, or ``value`` pixels."""

    value: float
    unit: str  # "diagonal" | "px"

    def pixels(self, shape: tuple[int, int]) -> float:
        return self.value * image_diagonal(shape) if self.unit == "diagonal" else self.value


def parse_tolerance(tolerance: float | str) -> Tolerance:
    """A fraction of the image diagonal in [0, 1) such as 0.0075, or pixels as a string such as "3px"."""
    if isinstance(tolerance, (int, float)) and not isinstance(tolerance, bool):
        if not 0 <= tolerance < 1:
            raise ValueError(f"tolerance {tolerance!r} is a fraction of the image diagonal and must be in "
                             f"[0, 1); write a tolerance in pixels as a string, such as '3px'")
        return Tolerance(float(tolerance), "diagonal")
    if isinstance(tolerance, str):
        match = _PIXELS.fullmatch(tolerance)
        if match:
            return Tolerance(float(match[1]), "px")
    raise ValueError(f"tolerance must be a fraction of the image diagonal, such as 0.0075, or pixels, "
                     f"such as '3px'; got {tolerance!r}")


def boundary_f_scores(pair: BoundaryPair, tolerance_px: float,
                      num_classes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per class: boundary precision, recall and F of one image; NaN where not evaluated."""
    in_pred, in_label = pair.pred.counts(), pair.label.counts()
    matched_pred = np.bincount(pair.pred.classes[pair.pred_to_label <= tolerance_px], minlength=num_classes)
    matched_label = np.bincount(pair.label.classes[pair.label_to_pred <= tolerance_px], minlength=num_classes)
    both = (in_pred > 0) & (in_label > 0)
    one_sided = (in_pred > 0) != (in_label > 0)
    precision, recall, f_score = (np.full(num_classes, np.nan) for _ in range(3))
    precision[one_sided] = recall[one_sided] = f_score[one_sided] = 0.0
    precision[both] = matched_pred[both] / in_pred[both]
    recall[both] = matched_label[both] / in_label[both]
    f_score[both] = 0.0
    positive = both & (precision + recall > 0)
    f_score[positive] = (2 * precision[positive] * recall[positive]
                         / (precision[positive] + recall[positive]))
    return precision, recall, f_score


def biou_width(shape: tuple[int, int], dilation_ratio: float) -> int:
    """d = max(1, round(dilation_ratio * diagonal)): how many 3x3 erosions the inner band is deep."""
    return max(1, round(dilation_ratio * image_diagonal(shape)))


def _along(axis: int, part: slice) -> tuple[slice, ...]:
    return (slice(None),) * axis + (part,)


def _window_any(mask: Array, axis: int, before: int, after: int) -> Array:
    """out[i] = any(mask[i - before .. i + after]) along ``axis``; positions off the array count as False.

    By doubling: after k steps a cell holds the OR of 2^k cells, and two
    overlapping such spans cover the window. About log2(window) passes.
    """
    xp = namespace(mask)
    n = mask.shape[axis]
    window = before + after + 1
    shape = list(mask.shape)
    shape[axis] = n + window - 1
    spans = xp.zeros(tuple(shape), dtype=xp.bool, device=mask.device)
    spans[_along(axis, slice(before, before + n))] = mask
    spare = xp.empty_like(spans)
    span = 1
    while 2 * span <= window:
        xp.logical_or(spans[_along(axis, slice(None, -span))], spans[_along(axis, slice(span, None))],
                      out=spare[_along(axis, slice(None, -span))])
        spare[_along(axis, slice(-span, None))] = spans[_along(axis, slice(-span, None))]
        spans, spare = spare, spans
        span *= 2
    return spans[_along(axis, slice(0, n))] | spans[_along(axis, slice(window - span, window - span + n))]


def _changes_ahead(classes: Array, axis: int) -> Array:
    """True where the next pixel along ``axis`` has another value or is off the image."""
    xp = namespace(classes)
    changes = xp.ones(classes.shape, dtype=xp.bool, device=classes.device)
    xp.not_equal(classes[_along(axis, slice(1, None))], classes[_along(axis, slice(None, -1))],
                 out=changes[_along(axis, slice(None, -1))])
    return changes


def inner_bands(classes: Array, width: int) -> Array:
    """True at the pixels in the inner band, ``width`` deep, of their own class's mask (-1 pixels: never).

    The erosion of a mask by a 3x3 square applied d times keeps the pixels
    whose (2d+1)x(2d+1) square lies in the mask and in the image, so the band
    holds the mask pixels with another value (or the frame) within chessboard
    distance d. For all classes at once: either the pixel's column has
    another value within d, or some row within d has one within d of the
    column (the column itself then being all of the pixel's class).
    """
    d = width
    near_in_row = _window_any(_changes_ahead(classes, 1), 1, d, d - 1)
    near_in_row[:, :d] = True  # the left frame
    near_in_column = _window_any(_changes_ahead(classes, 0), 0, d, d - 1)
    near_in_column[:d, :] = True  # the top frame
    return (near_in_column | _window_any(near_in_row, 0, d, d)) & (classes >= 0)


def boundary_iou_counts(pred_map: Array, label_map: Array, width: int,
                        num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Per class: the intersection and union (pixel counts, int64) of the two inner bands of one image.

    One bincount over a code of (prediction + 1, label + 1, in the prediction's
    band, in the label's band): 4 (K + 1)^2 bins. The work runs where the maps
    are; only the counts come to the CPU.
    """
    xp = namespace(pred_map)
    pred_band, label_band = for_both(inner_bands, (pred_map, width), (label_map, width))
    k1 = num_classes + 1
    code = astype(pred_map, xp.int16 if 4 * k1 * k1 <= 2**15 else xp.int64)
    code += 1
    code *= k1
    code += label_map
    code += 1
    code <<= 1
    code |= pred_band
    code <<= 1
    code |= label_band
    # torch's bincount for numpy arrays too (a view, no copy): numpy's first copies the code to int64
    code = code if isinstance(code, Tensor) else torch.from_numpy(code)
    counts = torch.bincount(code.ravel(), minlength=4 * k1 * k1).cpu().numpy().reshape(k1, k1, 2, 2)
    intersection = np.diagonal(counts[1:, 1:, 1, 1]).astype(np.int64)
    pred_sizes = counts[1:, :, 1, :].sum(axis=(1, 2))
    label_sizes = counts[:, 1:, :, 1].sum(axis=(0, 2))
    return intersection, (pred_sizes + label_sizes - intersection).astype(np.int64)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return np.divide(num, den, out=np.full(den.shape, np.nan), where=den > 0)


def _matrix(records: Sequence[Mapping[str, Any]], key: str, num_classes: int,
            dtype: type = np.float64) -> np.ndarray:
    return np.array([record[key] for record in records], dtype=dtype).reshape(len(records), num_classes)


def boundary_figures(records: Sequence[Mapping[str, Any]],
                     num_classes: int) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Dataset-level and per-class figures from per-image records (any subset of them: bootstrap)."""
    f_score = _matrix(records, "BF", num_classes)
    intersection = _matrix(records, "BIoU_intersect", num_classes, np.int64).sum(axis=0)
    union = _matrix(records, "BIoU_union", num_classes, np.int64).sum(axis=0)
    per_class = {
        "BF": column_means(f_score),
        "BF_precision": column_means(_matrix(records, "BF_precision", num_classes)),
        "BF_recall": column_means(_matrix(records, "BF_recall", num_classes)),
        "BF_images": np.count_nonzero(~np.isnan(f_score), axis=0).astype(np.int64),
        "BIoU": _ratio(intersection, union),
        "BIoU_intersect": intersection,
        "BIoU_union": union,
    }
    summary = {
        "mBF": mean_of_defined(per_class["BF"]),
        "mBF_precision": mean_of_defined(per_class["BF_precision"]),
        "mBF_recall": mean_of_defined(per_class["BF_recall"]),
        "mBIoU": mean_of_defined(per_class["BIoU"]),
    }
    return summary, per_class


class BoundaryOptions(Strict):
    """BF and BIoU (DESIGN.md, "Boundary family")."""

    tolerance: float | str = DEFAULT_TOLERANCE
    """BF tolerance: a fraction of the image diagonal in [0, 1), or pixels as a string such as "3px"."""
    dilation_ratio: float = Field(DEFAULT_DILATION_RATIO, gt=0)
    """BIoU band width as a fraction of the image diagonal (rounded, at least 1 pixel)."""

    @field_validator("tolerance")
    @classmethod
    def _valid_tolerance(cls, value: float | str) -> float | str:
        parse_tolerance(value)
        return value


def boundary_columns(options: BoundaryOptions) -> list[Column]:
    """BF and BIoU: fractions, higher is better; the band counts and evaluated images are counts."""
    def figure(name: str, meaning: str, table: str = "summary", resampling: Resampling | None = None) -> Column:
        return Column(name, "fraction", "higher", meaning, table=table, resampling=resampling, group="boundary",
                      leaderboard=(name, table) == ("mBF", "summary"))

    def count(name: str, meaning: str, table: str) -> Column:
        return Column(name, "count", "neither", meaning, table=table, group="boundary")

    bf = f"boundary F-score (tolerance {options.tolerance})"
    return [
        figure("mBF", f"mean over classes of {bf}", resampling=Resampling("image_mean", ("BF",))),
        figure("mBF_precision", "mean over classes of the boundary precision"),
        figure("mBF_recall", "mean over classes of the boundary recall"),
        figure("mBIoU", f"mean over classes of boundary IoU (dilation ratio {options.dilation_ratio})",
               resampling=Resampling("band", ("BIoU_intersect", "BIoU_union"))),
        *(figure(name, meaning, table) for table in ("per_class", "per_image") for name, meaning in (
            ("BF", bf), ("BF_precision", "boundary precision"), ("BF_recall", "boundary recall"))),
        figure("BIoU", "boundary IoU", "per_class"),
        figure("mBF", f"mean over classes of {bf}, of the image alone", "per_image"),
        figure("mBIoU", "mean over classes of boundary IoU, of the image alone", "per_image"),
        count("BF_images", "images where the class was evaluated", "per_class"),
        *(count(name, "inner-band pixels", table) for table in ("per_class", "per_image")
          for name in ("BIoU_intersect", "BIoU_union")),
    ]


@register_metric("boundary", options=BoundaryOptions, columns=boundary_columns, shares="boundary pair",
                 describe="boundary F-score (BF) and boundary IoU (BIoU)")
class BoundaryMetric(RecordState):
    """Mergeable state: one record per image, from which every figure derives.

    A record holds the image's mBF and mBIoU, its per-class BF, precision and
    recall (NaN: not evaluated), and its per-class band intersection and
    union counts, so the figures of any subset of images can be recomputed
    (:func:`boundary_figures`). The work runs where the tensors are
    (:mod:`segbench.metrics.contours`), whatever ``device``.
    """

    name = "boundary"

    def __init__(self, num_classes: int, ignore_index: int = 255, device: str | torch.device = "cpu",
                 tolerance: float | str = DEFAULT_TOLERANCE,
                 dilation_ratio: float = DEFAULT_DILATION_RATIO) -> None:
        if not dilation_ratio > 0:
            raise ValueError(f"dilation_ratio must be positive, not {dilation_ratio!r}")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.device = torch.device(device)
        self.tolerance = parse_tolerance(tolerance)
        self.tolerance_option = tolerance
        self.dilation_ratio = float(dilation_ratio)
        self.reset()

    def update(self, pred: Tensor, label: Tensor, image_id: str) -> None:
        """Fold in one image: HxW integer tensors, already validated."""
        k = self.num_classes
        pair = boundary_pair(pred, label, k, self.ignore_index)
        precision, recall, f_score = boundary_f_scores(pair, self.tolerance.pixels(pair.shape), k)
        width = biou_width(pair.shape, self.dilation_ratio)
        intersection, union = boundary_iou_counts(pair.pred_map, pair.label_map, width, k)
        self.records.append({
            "image_id": image_id,
            "mBF": mean_of_defined(f_score),
            "mBIoU": mean_of_defined(_ratio(intersection, union)),
            "BF": f_score.tolist(),
            "BF_precision": precision.tolist(),
            "BF_recall": recall.tolist(),
            "BIoU_intersect": intersection.tolist(),
            "BIoU_union": union.tolist(),
        })

    def _settings(self) -> tuple:
        return self.num_classes, self.ignore_index, self.tolerance, self.dilation_ratio

    def compute(self) -> MetricResult:
        summary, per_class = boundary_figures(self.records, self.num_classes)
        return MetricResult(summary, per_class, list(self.records))

    def options(self) -> dict[str, Any]:
        return {
            "num_classes": self.num_classes,
            "ignore_index": self.ignore_index,
            "tolerance": self.tolerance_option,
            "tolerance_unit": self.tolerance.unit,
            "dilation_ratio": self.dilation_ratio,
            **CONVENTIONS,
            "BF": "boundary pixel matched when the other boundary of its class is within the tolerance "
                  "(<=, tolerance = value * sqrt(H^2 + W^2), not rounded, or value px); "
                  "precision, recall, F per (image, class); class in neither mask: not evaluated; "
                  "in one: 0; class BF = mean over evaluated images; mBF = mean over classes",
            "BIoU": "inner band = mask minus its erosion by a 3x3 square d times, frame outside, "
                    "d = max(1, round(dilation_ratio * sqrt(H^2 + W^2))); intersection and union "
                    "summed over the dataset per class; mBIoU = mean of classes with a non-empty union",
        }
