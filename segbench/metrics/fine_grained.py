"""Image-level mIoU conventions beside the dataset-level mIoU (Wang et al., NeurIPS 2023; JDTLosses).

Much of "my numbers differ" comes from averaging IoU over the dataset (mmseg,
Cityscapes: one confusion matrix) or over images (nnU-Net, MONAI). These are
the image-level figures of Wang et al., with their conventions as their code
applies them for more than two classes: ignore pixels are removed first,
images without labelled pixels are skipped, and an image's IoUs are those of
the classes its label holds (a class only predicted does not count there,
unlike the per-image ``mIoU`` column).

- ``mIoU_I``: the mean over images of each image's mean IoU;
- ``mIoU_C``: for each class, the mean IoU over the images whose label holds
  it, then the mean over the classes some image holds;
- ``mIoU_I_q10``: the mean of the n lowest per-image values,
  n = max(1, floor(0.1 x images)) (their ``q``, which sorts and keeps the head).

Unlike their code, two-class datasets get the same definitions (theirs scores
the foreground class alone).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from segbench.columns import Column
from segbench.config import Strict
from segbench.metrics.base import MetricResult, RecordState
from segbench.metrics.confusion import confusion_matrix
from segbench.registry import register_metric

NAN = float("nan")


class FineGrainedOptions(Strict):
    """No options: the definitions are Wang et al.'s."""


_COLUMNS = (
    ("mIoU_I", "mean over images of the image's mean IoU over the classes its label holds (Wang et al.)"),
    ("mIoU_C", "mean over classes of the class's mean IoU over the images holding it (Wang et al.)"),
    ("mIoU_I_q10", "mean of the lowest tenth of the images' mIoU_I values (Wang et al.)"),
)


def fine_grained_columns(options: FineGrainedOptions) -> list[Column]:
    summary = [Column(name, "fraction", "higher", meaning, group="fine_grained") for name, meaning in _COLUMNS]
    return summary + [Column("mIoU_I", "fraction", "higher", "mean IoU over the classes the image's label holds",
                             table="per_image", group="fine_grained")]


def image_ious(confusion: np.ndarray) -> np.ndarray:
    """Per class, the IoU of one image whose label holds the class; NaN for the classes it does not hold."""
    intersect = np.diag(confusion)
    label, pred = confusion.sum(axis=1), confusion.sum(axis=0)
    present = label > 0
    return np.where(present, intersect / np.maximum(label + pred - intersect, 1), np.nan)


def fine_grained_figures(records: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """mIoU_I, mIoU_C and mIoU_I_q10 of the records of images with labelled pixels (any subset of them)."""
    labelled = [record["IoU_I"] for record in records if not np.isnan(record["mIoU_I"])]
    if not labelled:
        return {"mIoU_I": NAN, "mIoU_C": NAN, "mIoU_I_q10": NAN}
    iou = np.array(labelled, dtype=np.float64)
    per_image = np.nanmean(iou, axis=1)
    lowest = np.sort(per_image)[:max(1, int(0.1 * len(per_image)))]
    held = ~np.isnan(iou).all(axis=0)
    return {"mIoU_I": float(per_image.mean()), "mIoU_C": float(np.nanmean(iou[:, held], axis=0).mean()),
            "mIoU_I_q10": float(lowest.mean())}


@register_metric("fine_grained", options=FineGrainedOptions, columns=fine_grained_columns,
                 describe="mIoU_I, mIoU_C, mIoU_I_q10: image-level mIoU conventions of Wang et al.")
class FineGrainedMetric(RecordState):
    """Mergeable state: one record per image with its per-class IoUs (NaN for classes its label lacks)."""

    name = "fine_grained"

    def __init__(self, num_classes: int, ignore_index: int = 255, device: str | torch.device = "cpu") -> None:
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.device = torch.device(device)
        self.reset()

    def update(self, pred: Tensor, label: Tensor, image_id: str) -> None:
        """Fold in one image: HxW integer tensors, already validated."""
        iou = image_ious(confusion_matrix(pred, label, self.num_classes, self.ignore_index).cpu().numpy())
        labelled = not np.isnan(iou).all()
        self.records.append({"image_id": image_id, "mIoU_I": float(np.nanmean(iou)) if labelled else NAN,
                             "IoU_I": iou.tolist()})

    def _settings(self) -> tuple:
        return self.num_classes, self.ignore_index

    def compute(self) -> MetricResult:
        per_image = [{"image_id": r["image_id"], "mIoU_I": r["mIoU_I"]} for r in self.records]
        return MetricResult(fine_grained_figures(self.records), {}, per_image)

    def options(self) -> dict[str, Any]:
        return {"num_classes": self.num_classes, "ignore_index": self.ignore_index,
                "definitions": "Wang et al. (NeurIPS 2023): ignore pixels removed, images without labelled "
                               "pixels skipped, an image's IoUs over the classes its label holds; mIoU_I mean "
                               "over images, mIoU_C mean over classes of the mean over images holding the "
                               "class, mIoU_I_q10 mean of the floor(10 %) (at least 1) lowest image values"}
