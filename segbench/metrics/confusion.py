"""Accuracy family: one confusion matrix summed over the dataset, and the figures derived from it.

Conventions (DESIGN.md, "Metric definitions"): rows are labels, columns are
predictions, pixels whose label is the ignore index are left out. A figure
whose denominator is 0 is NaN and class means skip NaN, so a class absent from
the labels but predicted has IoU 0 and counts in mIoU, while a class absent
from both is left out.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from segbench.columns import Column, Resampling
from segbench.config import Strict
from segbench.metrics.base import MetricResult
from segbench.registry import register_metric

Counts = Tensor | np.ndarray | Sequence[int]


def confusion_matrix(pred: Tensor, label: Tensor, num_classes: int,
                     ignore_index: int = 255) -> Tensor:
    """KxK int64 counts, rows = label, cols = prediction, ignore pixels left out.

    The values must be valid (``checks.validate_pair``): a value outside
    [0, K) lands in a wrong cell. For speed, ignore pixels are sent to an
    extra label row K instead of being masked out (boolean indexing copies),
    so one flat index ``label * K + pred`` and one bincount do all the work,
    in int16 arithmetic whenever the index fits.
    """
    k = num_classes
    dtype = torch.int16 if (k + 1) * k <= 2**15 else torch.int64
    flat = torch.where(label == ignore_index, k, label.to(dtype))
    flat.mul_(k).add_(pred.to(dtype))  # in place: `flat` is a fresh tensor from torch.where
    counts = torch.bincount(flat.reshape(-1), minlength=(k + 1) * k)
    return counts[: k * k].reshape(k, k)


def counts_from_confusion(confusion: Tensor) -> dict[str, Tensor]:
    """The four per-class count vectors of mmsegmentation, from a confusion matrix."""
    intersect = confusion.diagonal().clone()
    pred = confusion.sum(dim=0)
    label = confusion.sum(dim=1)
    return {
        "area_intersect": intersect,
        "area_union": label + pred - intersect,
        "area_pred_label": pred,
        "area_label": label,
    }


def confusion_rows(confusion: Tensor) -> dict[str, np.ndarray]:
    """The non-zero cells of a confusion matrix (rows label, columns prediction) as the columns of
    ``confusion.parquet``."""
    matrix = confusion.numpy()
    label, predicted = np.nonzero(matrix)
    return {"label_class_id": label.astype(np.int64), "predicted_class_id": predicted.astype(np.int64),
            "pixels": matrix[label, predicted].astype(np.int64)}


def _int_array(counts: Counts) -> np.ndarray:
    if isinstance(counts, Tensor):
        counts = counts.cpu().numpy()
    return np.array(counts, dtype=np.int64)  # a copy: the results never alias the inputs


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den in float64, NaN where den is 0 (and no warning)."""
    return np.divide(num, den, out=np.full(den.shape, np.nan), where=den > 0)


def _nanmean(values: np.ndarray) -> float:
    defined = values[~np.isnan(values)]
    return float(defined.mean()) if defined.size else float("nan")


def accuracy_from_counts(area_intersect: Counts, area_union: Counts, area_pred_label: Counts,
                         area_label: Counts) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Dataset-level and per-class figures from per-class counts summed over images.

    Every dataset-level figure derives from these sums, so the figures of a
    subset of images (bootstrap) come from summing their per-image counts.
    """
    intersect = _int_array(area_intersect)
    union = _int_array(area_union)
    pred = _int_array(area_pred_label)
    label = _int_array(area_label)
    total = int(label.sum())

    acc = _ratio(intersect, label)
    iou = _ratio(intersect, union)
    dice = _ratio(2 * intersect, label + pred)
    precision = _ratio(intersect, pred)
    defined = ~np.isnan(iou)
    if total > 0:
        a_acc = float(intersect.sum() / total)
        fw_iou = float((label[defined] / total * iou[defined]).sum())
    else:
        a_acc = fw_iou = float("nan")

    summary = {
        "aAcc": a_acc,
        "mAcc": _nanmean(acc),
        "mIoU": _nanmean(iou),
        "fwIoU": fw_iou,
        "mDice": _nanmean(dice),
        "mPrecision": _nanmean(precision),
        "mRecall": _nanmean(acc),
    }
    per_class = {
        "IoU": iou,
        "Acc": acc,
        "Dice": dice,
        "Precision": precision,
        "Recall": acc.copy(),
        "area_intersect": intersect,
        "area_union": union,
        "area_pred_label": pred,
        "area_label": label,
    }
    return summary, per_class


def _image_record(image_id: str, confusion: Tensor) -> dict[str, Any]:
    counts = counts_from_confusion(confusion)
    summary, _ = accuracy_from_counts(**counts)
    record: dict[str, Any] = {"image_id": image_id}
    record.update({key: summary[key] for key in ("aAcc", "mIoU", "mAcc")})
    record.update({key: value.tolist() for key, value in counts.items()})
    return record


class AccuracyOptions(Strict):
    """The accuracy group has no options: its conventions are fixed (DESIGN.md, "Accuracy family")."""


COUNT_COLUMNS = ("area_intersect", "area_union", "area_pred_label", "area_label")
_SUMMARY = (
    ("mIoU", "mean over classes of IoU from the dataset's summed confusion matrix"),
    ("aAcc", "labelled pixels predicted right, over the dataset"),
    ("mAcc", "mean over classes of per-class accuracy (recall)"),
    ("fwIoU", "IoU weighted by each class's share of labelled pixels"),
    ("mDice", "mean over classes of Dice (F1)"),
    ("mPrecision", "mean over classes of precision"),
    ("mRecall", "mean over classes of recall"),
)
_BOOTSTRAPPED = ("aAcc", "mAcc", "mIoU", "mDice")
_LEADERBOARD = ("mIoU", "aAcc", "mAcc")
_PER_CLASS = (("IoU", "intersection over union"), ("Acc", "accuracy (recall)"), ("Dice", "Dice (F1)"),
              ("Precision", "precision"), ("Recall", "recall"))


def accuracy_columns(options: AccuracyOptions) -> list[Column]:
    """The accuracy group's figures: fractions, higher is better; the per-image counts are counts."""
    summary = [Column(name, "fraction", "higher", meaning, group="accuracy", leaderboard=name in _LEADERBOARD,
                      resampling=Resampling("counts", COUNT_COLUMNS, name) if name in _BOOTSTRAPPED else None)
               for name, meaning in _SUMMARY]
    per_class = [Column(name, "fraction", "higher", meaning, table="per_class", group="accuracy")
                 for name, meaning in _PER_CLASS]
    per_image = [Column(name, "fraction", "higher", f"{meaning}, of the image alone", table="per_image",
                        group="accuracy") for name, meaning in _SUMMARY[:3]]
    counts = [Column(name, "count", "neither", "pixels per class (mmseg's four count vectors)", table=table,
                     group="accuracy") for name in COUNT_COLUMNS for table in ("per_class", "per_image")]
    return summary + per_class + per_image + counts


@register_metric("accuracy", options=AccuracyOptions, columns=accuracy_columns, required=True,
                 describe="aAcc, mIoU, mAcc, fwIoU, mDice from one confusion matrix (as mmseg)")
class AccuracyMetric:
    """Mergeable state: the confusion matrix summed on ``device``, and one record per image.

    A record holds the image's own aAcc, mIoU and mAcc, and its four count
    vectors as lists of int, so any dataset-level figure can be recomputed on
    a subset of images by summing them.
    """

    name = "accuracy"

    def __init__(self, num_classes: int, ignore_index: int = 255,
                 device: str | torch.device = "cpu") -> None:
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.device = torch.device(device)
        self.reset()

    def reset(self) -> None:
        k = self.num_classes
        self.confusion = torch.zeros(k, k, dtype=torch.int64, device=self.device)
        self.records: list[dict[str, Any]] = []

    def update(self, pred: Tensor, label: Tensor, image_id: str) -> None:
        """Fold in one image: HxW integer tensors on ``device``, already validated."""
        confusion = confusion_matrix(pred, label, self.num_classes, self.ignore_index)
        self.confusion += confusion
        self.records.append(_image_record(image_id, confusion.cpu()))

    def merge(self, other: AccuracyMetric) -> None:
        mine = (self.num_classes, self.ignore_index)
        theirs = (other.num_classes, other.ignore_index)
        if mine != theirs:
            raise ValueError(f"cannot merge accuracy states with (num_classes, ignore_index) "
                             f"{theirs} into {mine}")
        self.confusion += other.confusion.to(self.device)
        self.records.extend(other.records)

    def compute(self) -> MetricResult:
        confusion = self.confusion.cpu()
        summary, per_class = accuracy_from_counts(**counts_from_confusion(confusion))
        return MetricResult(summary, per_class, list(self.records), {"confusion": confusion_rows(confusion)})

    def options(self) -> dict[str, Any]:
        return {
            "num_classes": self.num_classes,
            "ignore_index": self.ignore_index,
            "confusion": "rows=label, cols=prediction, summed over the dataset",
            "undefined": "a figure whose denominator is 0 is NaN; class means skip NaN",
            "absent_class": "absent from the labels but predicted: IoU 0, counted in mIoU",
        }
