"""The Cityscapes benchmark's own figures beside mIoU: iIoU, and IoU and iIoU over categories.

As cityscapesScripts' ``evalPixelLevelSemanticLabeling`` computes them with
its defaults, on the 19 evaluated classes (train ids) and the ground truth's
``*_gtFine_instanceIds.png`` (label id x 1000 + instance number for the
instances of instance classes; the bare label id elsewhere, crowds included):

- pixels of the labels the benchmark ignores (``ignoreInEval``: void, parking,
  caravan, ...) count nowhere: not as false positives, not as instances;
- an instance's pixels count as true positives where predicted as its class,
  false negatives elsewhere, both weighted by the script's built-in average
  size of the class over the instance's size (``args.avgClassSize``); crowd
  regions are no instance;
- a class's iIoU is weighted TP / (weighted TP + FP + weighted FN), its FP
  unweighted (pixels of other evaluated labels predicted as the class);
  ``iIoU`` is the mean over the 8 instance classes with a value;
- categories (flat, construction, object, nature, sky, human, vehicle) merge
  their classes: ``mIoU_category`` the mean category IoU, ``iIoU_category``
  the mean over the categories made only of instance classes (human, vehicle)
  of their iIoU, an instance's TP being its pixels predicted as any class of
  its category.

A class or category with an empty denominator is NaN and left out of the
means, as the script does. The state is a confusion matrix (merged by
addition) and, per image, its instances' integer counts (merged by
appending): the weighted sums are formed in ``compute``, in image order, so
any sharding gives the same figures to the bit.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from segbench.columns import Column
from segbench.config import Strict
from segbench.metrics.base import MetricResult
from segbench.metrics.confusion import confusion_matrix
from segbench.registry import register_metric

NAN = float("nan")
NUM_CLASSES = 19
NOT_APPLICABLE = "needs gtFine_instanceIds (Cityscapes only)"

# cityscapesscripts.helpers.labels, for the 19 evaluated labels: train id -> label id, and categories.
TRAIN_ID_TO_LABEL_ID = (7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33)
CATEGORIES = {"flat": (0, 1), "construction": (2, 3, 4), "object": (5, 6, 7), "nature": (8, 9), "sky": (10,),
              "human": (11, 12), "vehicle": (13, 14, 15, 16, 17, 18)}  # train ids
INSTANCE_CATEGORIES = ("human", "vehicle")  # the categories whose labels all have instances
# evalPixelLevelSemanticLabeling's args.avgClassSize, by train id of the evaluated instance classes.
AVERAGE_CLASS_SIZE = {11: 3462.4756337644, 12: 3930.4788056518, 13: 12794.0202738185, 14: 27855.1264367816,
                      15: 35732.1511111111, 16: 67583.7075812274, 17: 6298.7200839748, 18: 4672.3249222261}
INSTANCE_CLASSES = tuple(sorted(AVERAGE_CLASS_SIZE))


def _category_of() -> np.ndarray:
    category = np.empty(NUM_CLASSES, dtype=np.int64)
    for index, train_ids in enumerate(CATEGORIES.values()):
        category[list(train_ids)] = index
    return category


CATEGORY_OF = _category_of()


def _instance_lut() -> np.ndarray:
    """Label id -> train id of the evaluated instance classes; -1 for every other label id."""
    lut = np.full(max(TRAIN_ID_TO_LABEL_ID) + 1, -1, dtype=np.int64)
    for train_id in INSTANCE_CLASSES:
        lut[TRAIN_ID_TO_LABEL_ID[train_id]] = train_id
    return lut


INSTANCE_LUT = _instance_lut()


class CityscapesOptions(Strict):
    """No options: the definitions and the average class sizes are the benchmark script's."""


def cityscapes_columns(options: CityscapesOptions) -> list[Column]:
    summary = [
        Column("iIoU", "fraction", "higher", "mean over the 8 instance classes of the instance-weighted IoU "
               "(Cityscapes benchmark)", group="cityscapes"),
        Column("mIoU_category", "fraction", "higher", "mean over the 7 Cityscapes categories of their IoU "
               "(Cityscapes benchmark)", group="cityscapes"),
        Column("iIoU_category", "fraction", "higher", "mean over the human and vehicle categories of their "
               "instance-weighted IoU (Cityscapes benchmark)", group="cityscapes"),
    ]
    return summary + [Column("iIoU", "fraction", "higher", "instance-weighted IoU of an instance class "
                             "(Cityscapes benchmark); NaN for the other classes", table="per_class",
                             group="cityscapes")]


def instance_counts(pred: np.ndarray, instances: np.ndarray) -> np.ndarray:
    """One row per instance of an evaluated instance class, in increasing id: train id, size, TP, category TP.

    ``pred``: train ids; ``instances``: the gtFine_instanceIds image. Ids up to
    1000 (crowds, stuff) are no instance, as in the script.
    """
    flat_ids = instances.reshape(-1)
    if flat_ids.min() >= 0 and flat_ids.max() < 2**20:  # as stored (16-bit PNG): count by id, no sort
        inverse = flat_ids
        ids = np.arange(int(flat_ids.max()) + 1)
    else:
        ids, inverse = np.unique(flat_ids, return_inverse=True)
    label_ids = ids // 1000
    known = (label_ids >= 0) & (label_ids < len(INSTANCE_LUT))
    train_ids = np.where(known, INSTANCE_LUT[np.where(known, label_ids, 0)], -1)
    pixel_class = train_ids[inverse]
    flat = pred.reshape(-1)
    sizes = np.bincount(inverse, minlength=len(ids))
    hits = np.bincount(inverse[flat == pixel_class], minlength=len(ids))
    same_category = (pixel_class >= 0) & (CATEGORY_OF[flat] == CATEGORY_OF[np.maximum(pixel_class, 0)])
    category_hits = np.bincount(inverse[same_category], minlength=len(ids))
    keep = (ids > 1000) & (train_ids >= 0) & (sizes > 0)
    return np.stack([train_ids, sizes, hits, category_hits], axis=1)[keep].astype(np.int64)


def _ratio(tp: float, fp: float, fn: float) -> float:
    denominator = tp + fp + fn
    return NAN if denominator == 0 else float(tp) / denominator


def _mean(values: list[float]) -> float:
    valid = [value for value in values if not np.isnan(value)]
    return sum(valid) / len(valid) if valid else NAN


def cityscapes_figures(confusion: np.ndarray, instances: list[np.ndarray]) -> tuple[dict[str, float], np.ndarray]:
    """The summary figures and per-class iIoU from the 19x19 confusion (rows label) and the instance rows."""
    weighted_tp = np.zeros(NUM_CLASSES)
    weighted_fn = np.zeros(NUM_CLASSES)
    category_tp = {name: 0.0 for name in INSTANCE_CATEGORIES}
    category_fn = {name: 0.0 for name in INSTANCE_CATEGORIES}
    names = list(CATEGORIES)
    for rows in instances:  # the script's order and arithmetic: images in order, instances by id
        for train_id, size, tp, cat_tp in rows.tolist():
            weight = AVERAGE_CLASS_SIZE[train_id] / float(size)
            weighted_tp[train_id] += float(tp) * weight
            weighted_fn[train_id] += float(size - tp) * weight
            category = names[CATEGORY_OF[train_id]]
            category_tp[category] += float(cat_tp) * weight
            category_fn[category] += float(size - cat_tp) * weight
    confusion = confusion.astype(np.int64)
    false_positives = confusion.sum(axis=0) - np.diag(confusion)
    per_class = np.full(NUM_CLASSES, NAN)
    for train_id in INSTANCE_CLASSES:
        per_class[train_id] = _ratio(weighted_tp[train_id], false_positives[train_id], weighted_fn[train_id])
    category_iou, category_iiou = [], []
    for name, members in CATEGORIES.items():
        inside = list(members)
        tp = confusion[np.ix_(inside, inside)].sum()
        fn = confusion[inside, :].sum() - tp
        fp = confusion[:, inside].sum() - tp
        category_iou.append(_ratio(tp, fp, fn))
        if name in INSTANCE_CATEGORIES:
            category_iiou.append(_ratio(category_tp[name], fp, category_fn[name]))
    summary = {"iIoU": _mean([per_class[c] for c in INSTANCE_CLASSES]), "mIoU_category": _mean(category_iou),
               "iIoU_category": _mean(category_iiou)}
    return summary, per_class


@register_metric("cityscapes", options=CityscapesOptions, columns=cityscapes_columns, needs=("instances",),
                 default_on=True,
                 describe="iIoU, mIoU_category, iIoU_category: the Cityscapes benchmark's figures beside mIoU")
class CityscapesMetric:
    """Mergeable state: the 19x19 confusion matrix, each image's instance rows, the image ids in order, and
    how many images lacked instance ids (any such image, or a dataset without Cityscapes' 19 classes, makes it not applicable)."""

    name = "cityscapes"

    def __init__(self, num_classes: int, ignore_index: int = 255, device: str | torch.device = "cpu") -> None:
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.device = torch.device(device)
        self.reset()

    def reset(self) -> None:
        size = NUM_CLASSES if self.num_classes == NUM_CLASSES else 0
        self.confusion = torch.zeros((size, size), dtype=torch.int64, device=self.device)
        self.records: list[dict[str, Any]] = []
        self.image_ids: list[str] = []
        self.without_instances = 0

    def update(self, pred: Tensor, label: Tensor, image_id: str, instances: np.ndarray | None = None) -> None:
        """Fold in one image: HxW train-id tensors, already validated, and its instance ids (or None)."""
        self.image_ids.append(image_id)
        if instances is None or self.num_classes != NUM_CLASSES:
            self.without_instances += 1
            return
        self.confusion += confusion_matrix(pred, label, NUM_CLASSES, self.ignore_index)
        rows = instance_counts(pred.cpu().numpy().astype(np.int64), np.asarray(instances, dtype=np.int64))
        self.records.append({"image_id": image_id, "instances": rows})

    def merge(self, other: CityscapesMetric) -> None:
        if self._settings() != other._settings():
            raise ValueError(f"cannot merge {self.name} states with settings {other._settings()} "
                             f"into {self._settings()}")
        self.confusion += other.confusion.to(self.confusion.device)
        self.records.extend(other.records)
        self.image_ids.extend(other.image_ids)
        self.without_instances += other.without_instances

    def _settings(self) -> tuple:
        return self.num_classes, self.ignore_index

    def reason(self) -> str:
        """Why the group is not applicable; empty when it is."""
        if self.num_classes != NUM_CLASSES:
            return f"{NOT_APPLICABLE}: the dataset has {self.num_classes} classes, not Cityscapes' 19"
        if not self.image_ids:
            return f"{NOT_APPLICABLE}: no image evaluated"
        if self.without_instances:
            return f"{NOT_APPLICABLE}: {self.without_instances} of {len(self.image_ids)} images have no instance ids"
        return ""

    def compute(self) -> MetricResult:
        """No figures (and no per-image ones: its figures are dataset-level) where not applicable."""
        per_image = [{"image_id": image_id} for image_id in self.image_ids]
        if self.reason():
            return MetricResult({}, {}, per_image)
        summary, per_class = cityscapes_figures(self.confusion.cpu().numpy(),
                                                [record["instances"] for record in self.records])
        return MetricResult(summary, {"iIoU": per_class}, per_image)

    def options(self) -> dict[str, Any]:
        reason = self.reason()
        common = {"num_classes": self.num_classes, "ignore_index": self.ignore_index, "applicable": not reason}
        if reason:
            return common | {"reason": reason}
        return common | {
            "definitions": "cityscapesScripts evalPixelLevelSemanticLabeling with its defaults: ignoreInEval "
                           "labels count nowhere; instance TP/FN weighted by the script's average class size "
                           "over the instance's size, FP unweighted; crowds are no instance; iIoU mean over the "
                           "8 instance classes, categories flat..vehicle; NaN (empty denominator) left out",
            "average_class_size": {str(k): v for k, v in AVERAGE_CLASS_SIZE.items()}}
