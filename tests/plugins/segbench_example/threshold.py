"""``type: threshold``: a model with no weights, predicting a class from each pixel's brightness.

A pixel's brightness is the mean of its R, G and B values; its class is the
number of ``thresholds`` at or below that brightness. Without thresholds, the
``num_classes - 1`` thresholds split 0..255 into equal parts.

Its registration names ``thresholds`` as the field that ``segbench eval --model
threshold:REF`` fills: ``segbench eval --model threshold:60,120,180
--num-classes 4 --dataset stripes``.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field, field_validator, model_validator

from segbench.config import ModelBase
from segbench.models.base import ModelAdapter
from segbench.registry import register_model
from segbench.types import DatasetInfo


class ThresholdAdapter(ModelAdapter):
    def __init__(self, thresholds: list[float], device: torch.device) -> None:
        self.num_classes = len(thresholds) + 1
        self.device = device
        self.thresholds = torch.tensor(thresholds, dtype=torch.float32, device=device)

    def predict(self, images: list[np.ndarray], ids: list[str]) -> list[torch.Tensor]:
        brightness = [torch.from_numpy(image).to(self.device).float().mean(dim=2) for image in images]
        return [torch.bucketize(grey, self.thresholds, right=True) for grey in brightness]  # int64

    def provenance(self) -> dict[str, Any]:
        # No weights at all: neither trained nor random (``trained: False`` would warn of random weights).
        return {"type": "threshold", "thresholds": self.thresholds.tolist(), "trained": None}


class ThresholdConfig(ModelBase):
    type: Literal["threshold"]
    num_classes: int = Field(ge=2)
    thresholds: list[float] | None = None
    """``num_classes - 1`` increasing brightness levels in [0, 255]; None: equal parts of 0..255."""

    @field_validator("thresholds", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        """``segbench eval --model threshold:60,120,180`` gives the thresholds as one string of numbers;
        any other string is left for pydantic to refuse as no list."""
        try:
            return [float(part) for part in value.split(",")] if isinstance(value, str) else value
        except ValueError:
            return value

    @model_validator(mode="after")
    def _one_threshold_between_classes(self) -> "ThresholdConfig":
        if self.thresholds is not None:
            if len(self.thresholds) != self.num_classes - 1:
                raise ValueError(f"thresholds needs num_classes - 1 = {self.num_classes - 1} values, "
                                 f"not {len(self.thresholds)}")
            if any(b <= a for a, b in zip(self.thresholds, self.thresholds[1:])):
                raise ValueError("thresholds must increase")
        return self

    def levels(self) -> list[float]:
        if self.thresholds is not None:
            return list(self.thresholds)
        return [255 * k / self.num_classes for k in range(1, self.num_classes)]


@register_model("threshold", config=ThresholdConfig, describe="class from brightness; needs no weights",
                eval_ref="thresholds")
def build_threshold(cfg: ThresholdConfig, info: DatasetInfo, device: torch.device) -> ThresholdAdapter:
    return ThresholdAdapter(cfg.levels(), device)
