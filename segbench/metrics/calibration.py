"""Pixel-level top-label calibration: ECE, MCE and the reliability diagram's bins.

Each labelled pixel (ignore pixels left out) contributes its top-label
confidence c (the probability the model gives its predicted class) and
whether the prediction is right. With ``bins`` equal-width bins of [0, 1]
(15 by default), bin b holding n_b pixels of mean confidence conf_b and
accuracy acc_b, over N pixels:

- ``ECE`` = sum_b (n_b / N) |acc_b - conf_b|  (torchmetrics' norm "l1");
- ``MCE`` = max_b |acc_b - conf_b| over the bins, an empty bin counting 0
  (torchmetrics' norm "max").

The binning is torchmetrics' (``torch.bucketize(c, linspace(0, 1, bins + 1),
right=True) - 1`` in the confidence's dtype): bins are [lower, upper), except
that a confidence of exactly 1 falls in the last bin here, which is closed
([lower, 1]); torchmetrics gives it a bin of its own. The figures equal
torchmetrics' multiclass calibration error wherever no pixel's confidence is
exactly 1.

The state is a histogram: per bin, the pixel count, the count of correct
pixels, and the sum of confidences in units of 2^-32 as an integer (exact for
every float32 confidence >= 2^-9, so for any model of up to 512 classes;
smaller ones are rounded to 2^-32). Integers add exactly: a merged state is
equal, to the bit, to the state of one pass, whatever the sharding and the
order. Memory does not grow with the dataset, apart from one ECE per image.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from pydantic import Field
from torch import Tensor

from segbench.columns import Column
from segbench.config import Strict
from segbench.metrics.base import MetricResult
from segbench.registry import register_metric

NAN = float("nan")
SCALE = 2 ** 32  # confidence sums are kept as integers in units of 1 / SCALE
NOT_APPLICABLE = ("the model hands over no class probabilities (saved predictions, an hf mask model, or an "
                  "mmseg model with one output channel)")


class CalibrationOptions(Strict):
    bins: int = Field(15, ge=1, le=1000)
    """Equal-width bins of [0, 1] (torchmetrics' binning; 15 is its default)."""


def calibration_columns(options: CalibrationOptions) -> list[Column]:
    binned = f"{options.bins} equal-width bins of the top-label confidence, labelled pixels"
    return [Column("ECE", "fraction", "lower", f"expected calibration error over the dataset's pixels ({binned})",
                   group="calibration"),
            Column("MCE", "fraction", "lower", f"maximum calibration error over the dataset's pixels ({binned})",
                   group="calibration"),
            Column("ECE", "fraction", "lower", f"expected calibration error of the image's pixels ({binned})",
                   table="per_image", group="calibration")]


def bin_indices(confidence: Tensor, bins: int) -> Tensor:
    """The bin of each confidence: torchmetrics' bucketize, a confidence of exactly 1 in the last bin."""
    boundaries = torch.linspace(0, 1, bins + 1, dtype=confidence.dtype, device=confidence.device)
    return (torch.bucketize(confidence, boundaries, right=True) - 1).clamp_(0, bins - 1)


def histogram(confidence: Tensor, correct: Tensor, ignored: Tensor, bins: int) -> Tensor:
    """3 x bins int64: per bin, labelled pixels, correct ones, and the sum of their confidences (float32) in units
    of 2^-32.

    Ignored pixels go to an extra bin, dropped at the end, so the whole map is counted by one bincount and
    summed by one integer ``index_add_``, without masked copies: the update takes 61-120 ms per 1024x2048 image
    on one thread against 100-199 ms with scatter_add over the labelled pixels' copies (benchmarks/README.md).
    """
    index = bin_indices(confidence, bins).masked_fill_(ignored, bins).flatten()
    counts = torch.bincount(index + (bins + 1) * correct.flatten(), minlength=2 * (bins + 1)).view(2, bins + 1)
    scaled = torch.round(confidence * SCALE).long().flatten()  # float32 times 2^32 and its rounding are exact
    sums = torch.zeros(bins + 1, dtype=torch.int64, device=confidence.device).index_add_(0, index, scaled)
    return torch.stack([counts.sum(dim=0), counts[1], sums])[:, :bins]


def bin_figures(pixels: np.ndarray, correct: np.ndarray, sums: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per bin, the mean confidence and the accuracy (float64; NaN for an empty bin)."""
    pixels = pixels.astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (np.where(pixels > 0, sums.astype(np.float64) / SCALE / pixels, NAN),
                np.where(pixels > 0, correct.astype(np.float64) / pixels, NAN))


def calibration_errors(pixels: np.ndarray, correct: np.ndarray, sums: np.ndarray) -> tuple[float, float]:
    """ECE and MCE of a histogram; NaN for both when it holds no pixel."""
    total = int(sum(int(n) for n in pixels))
    if total == 0:
        return NAN, NAN
    confidence, accuracy = bin_figures(pixels, correct, sums)
    gap = np.where(pixels.astype(np.float64) > 0, np.abs(accuracy - confidence), 0.0)
    return float(np.sum(pixels.astype(np.float64) / total * gap)), float(gap.max())


@register_metric("calibration", options=CalibrationOptions, columns=calibration_columns, default_on=False,
                 needs=("confidence",),
                 describe="ECE, MCE: pixel-level top-label calibration, and the reliability diagram's bins "
                          "(calibration.parquet); needs the model's class probabilities")
class CalibrationMetric:
    """Mergeable state: the dataset's histogram (Python integers, exact), and one ECE per image.

    ``applicable``: None before the first image, False once an image came without a confidence (the
    model hands over no probabilities): the group then computes nothing.
    """

    name = "calibration"

    def __init__(self, num_classes: int, ignore_index: int = 255, device: str | torch.device = "cpu",
                 bins: int = 15) -> None:
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.device = torch.device(device)
        self.bins = bins
        self.reset()

    def reset(self) -> None:
        self.pixels = [0] * self.bins
        self.correct = [0] * self.bins
        self.sums = [0] * self.bins
        self.records: list[dict[str, Any]] = []
        self.applicable: bool | None = None

    def update(self, pred: Tensor, label: Tensor, image_id: str, confidence: Tensor | None = None) -> None:
        """Fold in one image: HxW prediction and label, and the HxW float confidence of the prediction."""
        if confidence is None or self.applicable is False:
            self.applicable = False
            self.records.append({"image_id": image_id})
            return
        if tuple(confidence.shape) != tuple(label.shape):
            raise ValueError(f"confidence of shape {tuple(confidence.shape)} for a label of shape "
                             f"{tuple(label.shape)} (image {image_id!r})")
        self.applicable = True
        counts = histogram(confidence.float(), pred == label, label == self.ignore_index, self.bins).tolist()
        for total, image in zip((self.pixels, self.correct, self.sums), counts):
            for b, value in enumerate(image):
                total[b] += value
        ece, _ = calibration_errors(*(np.array(row, dtype=object) for row in counts))
        self.records.append({"image_id": image_id, "ECE": ece})

    def _settings(self) -> tuple:
        return self.num_classes, self.ignore_index, self.bins

    def merge(self, other: CalibrationMetric) -> None:
        if self._settings() != other._settings():
            raise ValueError(f"cannot merge calibration states with settings {other._settings()} "
                             f"into {self._settings()}")
        for mine, theirs in ((self.pixels, other.pixels), (self.correct, other.correct),
                             (self.sums, other.sums)):
            for b, value in enumerate(theirs):
                mine[b] += value
        self.records.extend(other.records)
        if other.applicable is not None:
            self.applicable = other.applicable if self.applicable is None else self.applicable and other.applicable

    def compute(self) -> MetricResult:
        if not self.applicable:  # None: no image in this state; False: no probabilities
            return MetricResult({}, {}, [{"image_id": r["image_id"]} for r in self.records])
        pixels, correct, sums = (np.array(row, dtype=object) for row in (self.pixels, self.correct, self.sums))
        ece, mce = calibration_errors(pixels, correct, sums)
        confidence, accuracy = bin_figures(pixels, correct, sums)
        edges = np.arange(self.bins + 1, dtype=np.float64) / self.bins
        table = {"bin": np.arange(self.bins, dtype=np.int64), "lower": edges[:-1], "upper": edges[1:],
                 "pixels": np.array(self.pixels, dtype=np.int64), "mean_confidence": confidence,
                 "accuracy": accuracy}
        return MetricResult({"ECE": ece, "MCE": mce}, {}, list(self.records), {"calibration": table})

    def options(self) -> dict[str, Any]:
        options: dict[str, Any] = {
            "num_classes": self.num_classes, "ignore_index": self.ignore_index, "bins": self.bins,
            "applicable": self.applicable is not False,
            "binning": "torchmetrics': bucketize(confidence, linspace(0, 1, bins + 1), right=True) - 1, bins "
                       "[lower, upper), except a confidence of exactly 1 in the last bin (torchmetrics: a bin of "
                       "its own)",
            "confidence": "top-label: the probability of the predicted class (with TTA, of the averaged "
                          "probabilities the prediction came from); labelled pixels only",
            "state": "integer histogram (pixels, correct, confidence sums in units of 2^-32): merging is exact"}
        if self.applicable is False:
            options["why_not_applicable"] = NOT_APPLICABLE
        return options
