"""``area`` metric group: how far each class's predicted area is from its labelled area.

For one image and a class c with L labelled pixels (ignore pixels left out)
and P pixels predicted c among the labelled ones: AreaError = |P - L| / L.
A class with fewer than ``min_pixels`` labelled pixels in the image is not
evaluated there (NaN). A class's AreaError is the mean over the images where
it was evaluated; mAreaError is the mean over the classes evaluated somewhere.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from pydantic import Field
from torch import Tensor

from segbench.columns import Column, Resampling
from segbench.config import Strict
from segbench.metrics.base import MetricResult, RecordState
from segbench.registry import register_metric


def area_errors(pred: Tensor, label: Tensor, num_classes: int, ignore_index: int, min_pixels: int) -> np.ndarray:
    """Per class, for one image: |P - L| / L (float64), NaN where L < min_pixels."""
    labelled = label != ignore_index
    label_area = torch.bincount(label[labelled], minlength=num_classes).cpu().numpy()
    pred_area = torch.bincount(pred[labelled], minlength=num_classes).cpu().numpy()
    errors = np.full(num_classes, np.nan)
    evaluated = label_area >= min_pixels
    errors[evaluated] = np.abs(pred_area[evaluated] - label_area[evaluated]) / label_area[evaluated]
    return errors


def _mean_of_defined(values: np.ndarray) -> float:
    defined = values[~np.isnan(values)]
    return float(defined.mean()) if defined.size else float("nan")


def area_figures(records: Sequence[Mapping[str, Any]], num_classes: int) -> tuple[dict, dict]:
    """Dataset-level and per-class figures from per-image records (any subset of them: bootstrap)."""
    errors = np.array([record["AreaError"] for record in records], dtype=np.float64).reshape(-1, num_classes)
    per_class = np.array([_mean_of_defined(errors[:, c]) for c in range(num_classes)])
    return {"mAreaError": _mean_of_defined(per_class)}, {"AreaError": per_class}


class AreaOptions(Strict):
    min_pixels: int = Field(1, ge=1)
    """A class with fewer labelled pixels in an image is not evaluated on that image."""


def area_columns(options: AreaOptions) -> list[Column]:
    meaning = "relative error |predicted - labelled| / labelled of the class's area"
    return [
        Column("mAreaError", "fraction", "lower", f"mean over classes of the {meaning}", group="area",
               resampling=Resampling("image_mean", ("AreaError",)), leaderboard=True),
        Column("AreaError", "fraction", "lower", f"the {meaning}, mean over images", table="per_class",
               group="area"),
        Column("AreaError", "fraction", "lower", f"the {meaning}, of the image alone", table="per_image",
               group="area"),
        Column("mAreaError", "fraction", "lower", f"mean over classes of the {meaning}, of the image alone",
               table="per_image", group="area"),
    ]


@register_metric("area", options=AreaOptions, columns=area_columns, default_on=False,
                 describe="relative error of each class's predicted area (mAreaError)")
class AreaMetric(RecordState):
    """One record per image (its per-class AreaError, NaN: not evaluated); merging appends records."""

    name = "area"

    def __init__(self, num_classes: int, ignore_index: int = 255, device: str | torch.device = "cpu",
                 min_pixels: int = 1) -> None:
        self.num_classes, self.ignore_index, self.min_pixels = num_classes, ignore_index, min_pixels
        self.reset()

    def _settings(self) -> tuple:
        return self.num_classes, self.ignore_index, self.min_pixels

    def update(self, pred: Tensor, label: Tensor, image_id: str) -> None:
        errors = area_errors(pred, label, self.num_classes, self.ignore_index, self.min_pixels)
        self.records.append({"image_id": image_id, "mAreaError": _mean_of_defined(errors),
                             "AreaError": errors.tolist()})

    def compute(self) -> MetricResult:
        summary, per_class = area_figures(self.records, self.num_classes)
        return MetricResult(summary, per_class, list(self.records))

    def options(self) -> dict[str, Any]:
        return {"num_classes": self.num_classes, "ignore_index": self.ignore_index,
                "min_pixels": self.min_pixels,
                "AreaError": "|P - L| / L per image, ignore pixels left out; NaN when L < min_pixels; "
                             "class value = mean over evaluated images, mAreaError = mean over classes"}
