"""Cityscapes: ``leftImg8bit/<split>/<city>/*_leftImg8bit.png`` with ``gtFine/<split>/<city>/``.

Labels are ``*_gtFine_labelTrainIds.png`` when every image has one (what
cityscapesScripts' createTrainIdLabelImgs writes and mmseg reads), otherwise
``*_gtFine_labelIds.png`` converted with the official id -> trainId table.
When every image also has its ``*_gtFine_instanceIds.png`` (label id x 1000 +
instance for the instances of instance classes, the label id elsewhere), a
sample carries it as ``extras["instances"]``, for the ``cityscapes`` metric
group (iIoU and the category figures).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np

from segbench.config import DatasetBase, SuitePath
from segbench.types import DatasetInfo
from segbench.data.classes import CITYSCAPES_CLASSES, CITYSCAPES_PALETTE
from segbench.data.files import FilePairsDataset, listed, require_dir
from segbench.errors import UserError
from segbench.registry import register_dataset

IMAGE_SUFFIX = "_leftImg8bit.png"
# The official table (cityscapesscripts.helpers.labels): label id -> train id; others are ignored.
ID_TO_TRAIN_ID = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10,
                  24: 11, 25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18}
README_SECTION = "README, 'Preparing datasets' > Cityscapes"


def label_ids_lut() -> np.ndarray:
    lut = np.full(256, 255, dtype=np.int64)
    for label_id, train_id in ID_TO_TRAIN_ID.items():
        lut[label_id] = train_id
    return lut


def cityscapes_pairs(root: Path, split: str) -> tuple[list[tuple[str, Path, Path]], str]:
    """The (id, image, label) pairs of a split, and which label files they use."""
    images_dir = require_dir(root / "leftImg8bit" / split, README_SECTION)
    labels_dir = require_dir(root / "gtFine" / split, README_SECTION)
    images = sorted(images_dir.glob(f"*/*{IMAGE_SUFFIX}"))
    if not images:
        raise UserError(f"no */*{IMAGE_SUFFIX} images; see the {README_SECTION}", source=str(images_dir))
    prefixes = [(image, labels_dir / image.parent.name / image.name.removesuffix(IMAGE_SUFFIX))
                for image in images]
    for kind in ("labelTrainIds", "labelIds"):
        labels = [Path(f"{prefix}_gtFine_{kind}.png") for _, prefix in prefixes]
        if all(label.is_file() for label in labels):
            return [(image.stem, image, label) for (image, _), label in zip(prefixes, labels)], kind
    missing = [image.name for image, prefix in prefixes
               if not Path(f"{prefix}_gtFine_labelIds.png").is_file()]
    raise UserError(f"{len(missing)} images have neither *_gtFine_labelTrainIds.png nor "
                    f"*_gtFine_labelIds.png in {labels_dir}: {listed(missing)}; see the {README_SECTION}",
                    source=str(root))


def instance_files(pairs: list[tuple[str, Path, Path]], kind: str) -> list[Path] | None:
    """The ``*_gtFine_instanceIds.png`` beside each pair's label file, or None unless every one exists."""
    files = [label.with_name(label.name.removesuffix(f"_gtFine_{kind}.png") + "_gtFine_instanceIds.png")
             for _, _, label in pairs]
    return files if all(path.is_file() for path in files) else None


class CityscapesDataset(FilePairsDataset):
    def __init__(self, name: str, root: Path, split: str = "val") -> None:
        root = require_dir(Path(root), README_SECTION)
        pairs, kind = cityscapes_pairs(root, split)
        info = DatasetInfo(name, len(CITYSCAPES_CLASSES), list(CITYSCAPES_CLASSES), 255,
                           list(CITYSCAPES_PALETTE))
        self.label_kind = kind
        instances = instance_files(pairs, kind)
        self.has_instances = instances is not None
        super().__init__(info, root, pairs, label_ids_lut() if kind == "labelIds" else None,
                         extras={"instances": instances} if instances is not None else None)


class CityscapesDatasetConfig(DatasetBase):
    type: Literal["cityscapes"]
    root: SuitePath
    """The folder holding leftImg8bit/ and gtFine/."""
    split: str = "val"


@register_dataset("cityscapes", config=CityscapesDatasetConfig, eval_ref="root",
                  describe="Cityscapes leftImg8bit + gtFine: 19 train ids, instance ids when present")
def build_cityscapes(cfg: CityscapesDatasetConfig) -> CityscapesDataset:
    return CityscapesDataset(cfg.name, cfg.root, cfg.split)
