"""Pascal VOC 2012 segmentation: 21 classes (background included), 255 ignored (object outlines)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from segbench.config import DatasetBase, SuitePath
from segbench.types import DatasetInfo
from segbench.data.classes import VOC_CLASSES, VOC_PALETTE
from segbench.data.files import FilePairsDataset, listed, require_dir
from segbench.errors import UserError
from segbench.registry import register_dataset

README_SECTION = "README, 'Preparing datasets' > Pascal VOC"


class PascalVOCDataset(FilePairsDataset):
    """``root`` is VOC2012, or a folder holding VOCdevkit/VOC2012 or VOC2012."""

    def __init__(self, name: str, root: Path, split: str = "val") -> None:
        root = require_dir(Path(root), README_SECTION)
        for inner in (root / "VOCdevkit" / "VOC2012", root / "VOC2012"):
            if inner.is_dir():
                root = inner
                break
        split_file = root / "ImageSets" / "Segmentation" / f"{split}.txt"
        if not split_file.is_file():
            raise UserError(f"split file not found; see the {README_SECTION}", source=str(split_file))
        ids = [line.strip() for line in split_file.read_text().splitlines() if line.strip()]
        pairs = [(i, root / "JPEGImages" / f"{i}.jpg", root / "SegmentationClass" / f"{i}.png")
                 for i in ids]
        missing = [i for i, image, label in pairs if not (image.is_file() and label.is_file())]
        if missing:
            raise UserError(f"{len(missing)} ids of {split_file.name} lack JPEGImages/<id>.jpg or "
                            f"SegmentationClass/<id>.png: {listed(missing)}", source=str(root))
        info = DatasetInfo(name, len(VOC_CLASSES), list(VOC_CLASSES), 255, list(VOC_PALETTE))
        super().__init__(info, root, pairs)


class PascalVOCDatasetConfig(DatasetBase):
    type: Literal["pascal_voc"]
    root: SuitePath
    """VOC2012, or a folder holding VOCdevkit/VOC2012."""
    split: str = "val"


@register_dataset("pascal_voc", config=PascalVOCDatasetConfig, eval_ref="root",
                  describe="Pascal VOC 2012 segmentation: 21 classes, object outlines ignored")
def build_pascal_voc(cfg: PascalVOCDatasetConfig) -> PascalVOCDataset:
    return PascalVOCDataset(cfg.name, cfg.root, cfg.split)
