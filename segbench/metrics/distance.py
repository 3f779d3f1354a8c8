"""Boundary family, second group: Hausdorff distance (HD) and its percentile variant (HD95).

Definitions (DESIGN.md, "Boundary family"; boundaries and distances in
:mod:`segbench.metrics.contours`): d(P->G) is the distance from each boundary
pixel of P to the nearest boundary pixel of G of the same class.
HD = max(max d(P->G), max d(G->P)); HD95 = max(p95 d(P->G), p95 d(G->P)), each
percentile on its own direction with linear interpolation (numpy's default,
as MONAI). Not evaluated when the class is in neither mask. When it is in
only one, the case is counted (``HD_one_sided``) and ``one_sided`` decides the
value: the image diagonal (default, the worst case), inf, or skip (not
evaluated). A class's figure is the mean over the images where it was
evaluated; the m-figures are means over classes.

Another percentile renames the columns: percentile 99 gives HD99 and mHD99.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field
from torch import Tensor

from segbench.columns import Column, Resampling
from segbench.config import Strict
from segbench.metrics.base import MetricResult, RecordState
from segbench.metrics.contours import (CONVENTIONS, BoundaryPair, boundary_pair, column_means, image_diagonal,
                                       mean_of_defined)
from segbench.registry import register_metric

ONE_SIDED_POLICIES = ("diagonal", "inf", "skip")
DEFAULT_PERCENTILE = 95.0
Figures = tuple[dict[str, float], dict[str, np.ndarray]]


def percentile_name(percentile: float) -> str:
    """The column name of the percentile figure: HD95 for 95, HD99.5 for 99.5."""
    return f"HD{percentile:g}"


def hausdorff_distances(pair: BoundaryPair, num_classes: int, percentile: float,
                        one_sided: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per class, for one image: HD, the percentile HD (NaN: not evaluated), and the one-sided classes."""
    in_pred, in_label = pair.pred.counts(), pair.label.counts()
    hd = np.full(num_classes, np.nan)
    hd_percentile = np.full(num_classes, np.nan)
    for c in np.flatnonzero((in_pred > 0) & (in_label > 0)):
        directions = (pair.pred_to_label[pair.pred.starts[c]:pair.pred.starts[c + 1]],
                      pair.label_to_pred[pair.label.starts[c]:pair.label.starts[c + 1]])
        hd[c] = max(float(d.max()) for d in directions)
        hd_percentile[c] = max(float(np.percentile(d, percentile)) for d in directions)
    is_one_sided = (in_pred > 0) != (in_label > 0)
    worst = {"diagonal": image_diagonal(pair.shape), "inf": math.inf, "skip": math.nan}[one_sided]
    hd[is_one_sided] = hd_percentile[is_one_sided] = worst
    return hd, hd_percentile, is_one_sided


def _matrix(records: Sequence[Mapping[str, Any]], key: str, num_classes: int) -> np.ndarray:
    return np.array([record[key] for record in records], dtype=np.float64).reshape(len(records), num_classes)


def distance_figures(records: Sequence[Mapping[str, Any]], num_classes: int,
                     percentile: float = DEFAULT_PERCENTILE) -> Figures:
    """Dataset-level and per-class figures from per-image records (any subset of them: bootstrap)."""
    name = percentile_name(percentile)
    hd = _matrix(records, "HD", num_classes)
    one_sided = _matrix(records, "HD_one_sided", num_classes).sum(axis=0).astype(np.int64)
    per_class = {
        "HD": column_means(hd),
        name: column_means(_matrix(records, name, num_classes)),
        "HD_images": np.count_nonzero(~np.isnan(hd), axis=0).astype(np.int64),
        "HD_one_sided": one_sided,
    }
    summary = {
        "mHD": mean_of_defined(per_class["HD"]),
        f"m{name}": mean_of_defined(per_class[name]),
        "HD_one_sided": int(one_sided.sum()),
    }
    return summary, per_class


class DistanceOptions(Strict):
    """HD and HD95 (DESIGN.md, "Boundary family")."""

    percentile: float = Field(DEFAULT_PERCENTILE, ge=0, le=100)
    """The percentile of the robust Hausdorff distance; other than 95 it renames the columns (HD99, mHD99)."""
    one_sided: Literal["diagonal", "inf", "skip"] = "diagonal"
    """The value when a class is in only one of the two masks; such cases are always counted."""


def distance_columns(options: DistanceOptions) -> list[Column]:
    """HD and the percentile HD: pixels, lower is better, whatever the percentile."""
    name = percentile_name(options.percentile)

    def distance(column: str, meaning: str, table: str = "summary", image_mean: str = "") -> Column:
        return Column(column, "px", "lower", meaning, table=table, group="distance",
                      resampling=Resampling("image_mean", (image_mean,)) if image_mean else None,
                      leaderboard=(column, table) == (f"m{name}", "summary"))

    hd = "Hausdorff distance between the class's boundaries"
    robust = f"{options.percentile:g}th-percentile Hausdorff distance"
    one_sided = "images where the class was in one mask only (scored " + options.one_sided + ")"
    return [
        distance("mHD", f"mean over classes of the {hd}", image_mean="HD"),
        distance(f"m{name}", f"mean over classes of the {robust}", image_mean=name),
        *(distance(column, meaning, table) for table in ("per_class", "per_image")
          for column, meaning in (("HD", hd), (name, robust))),
        distance("mHD", f"mean over classes of the {hd}, of the image alone", "per_image"),
        distance(f"m{name}", f"mean over classes of the {robust}, of the image alone", "per_image"),
        Column("HD_one_sided", "count", "lower", one_sided, group="distance"),
        *(Column("HD_one_sided", "count", "lower", one_sided, table=table, group="distance")
          for table in ("per_class", "per_image")),
        Column("HD_images", "count", "neither", "images where the class was evaluated", table="per_class",
               group="distance"),
    ]


@register_metric("distance", options=DistanceOptions, columns=distance_columns, shares="boundary pair",
                 describe="Hausdorff distance (HD) and its percentile (HD95) between boundaries")
class DistanceMetric(RecordState):
    """Mergeable state: one record per image, from which every figure derives.

    A record holds the image's mHD and mHD95, its per-class HD and HD95
    (NaN: not evaluated) and per-class one-sided flags (0/1), so the figures
    of any subset of images can be recomputed (:func:`distance_figures`).
    The work runs where the tensors are (:mod:`segbench.metrics.contours`),
    whatever ``device``.
    """

    name = "distance"

    def __init__(self, num_classes: int, ignore_index: int = 255, device: str | torch.device = "cpu",
                 percentile: float = DEFAULT_PERCENTILE, one_sided: str = "diagonal") -> None:
        if not 0 <= percentile <= 100:
            raise ValueError(f"percentile must be in [0, 100], not {percentile!r}")
        if one_sided not in ONE_SIDED_POLICIES:
            raise ValueError(f"one_sided must be one of {ONE_SIDED_POLICIES}, not {one_sided!r}")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.device = torch.device(device)
        self.percentile = float(percentile)
        self.one_sided = one_sided
        self.reset()

    def update(self, pred: Tensor, label: Tensor, image_id: str) -> None:
        """Fold in one image: HxW integer tensors, already validated."""
        pair = boundary_pair(pred, label, self.num_classes, self.ignore_index)
        hd, hd_percentile, one_sided = hausdorff_distances(pair, self.num_classes, self.percentile,
                                                           self.one_sided)
        name = percentile_name(self.percentile)
        self.records.append({
            "image_id": image_id,
            "mHD": mean_of_defined(hd),
            f"m{name}": mean_of_defined(hd_percentile),
            "HD": hd.tolist(),
            name: hd_percentile.tolist(),
            "HD_one_sided": one_sided.astype(int).tolist(),
        })

    def _settings(self) -> tuple:
        return self.num_classes, self.ignore_index, self.percentile, self.one_sided

    def compute(self) -> MetricResult:
        summary, per_class = distance_figures(self.records, self.num_classes, self.percentile)
        return MetricResult(summary, per_class, list(self.records))

    def options(self) -> dict[str, Any]:
        return {
            "num_classes": self.num_classes,
            "ignore_index": self.ignore_index,
            "percentile": self.percentile,
            "one_sided": self.one_sided,
            **CONVENTIONS,
            "HD": "max(max d(P->G), max d(G->P)); class HD = mean over evaluated images",
            percentile_name(self.percentile): (
                f"max(p{self.percentile:g} d(P->G), p{self.percentile:g} d(G->P)), numpy linear "
                f"interpolation; class value = mean over evaluated images"),
            "one_sided_case": "class in one mask only: counted in HD_one_sided; value = "
                              + {"diagonal": "the image diagonal sqrt(H^2 + W^2)", "inf": "inf",
                                 "skip": "not evaluated"}[self.one_sided],
            "absent_class": "in neither mask: not evaluated",
        }
