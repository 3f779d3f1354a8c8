"""ADE20K (SceneParsing, ADEChallengeData2016): 150 classes, label 0 is "other" and ignored.

As mmseg's reduce_zero_label: 0 -> ignore (255), every other value minus one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np

from segbench.config import DatasetBase, SuitePath
from segbench.types import DatasetInfo
from segbench.data.classes import ADE20K_CLASSES, ADE20K_PALETTE
from segbench.data.files import FilePairsDataset, listed, require_dir
from segbench.errors import UserError
from segbench.registry import register_dataset

FOLDER = "ADEChallengeData2016"
README_SECTION = "README, 'Preparing datasets' > ADE20K"


def reduce_zero_label_lut() -> np.ndarray:
    lut = np.arange(256, dtype=np.int64) - 1
    lut[0] = 255
    lut[255] = 255
    return lut


class ADE20KDataset(FilePairsDataset):
    """``root`` is the ADEChallengeData2016 folder or the folder holding it."""

    def __init__(self, name: str, root: Path, split: str = "validation") -> None:
        root = require_dir(Path(root), README_SECTION)
        if (root / FOLDER).is_dir():
            root = root / FOLDER
        images_dir = require_dir(root / "images" / split, README_SECTION)
        labels_dir = require_dir(root / "annotations" / split, README_SECTION)
        images = sorted(images_dir.glob("*.jpg"))
        if not images:
            raise UserError(f"no .jpg images; see the {README_SECTION}", source=str(images_dir))
        missing = [image.name for image in images if not (labels_dir / f"{image.stem}.png").is_file()]
        if missing:
            raise UserError(f"{len(missing)} images have no annotation <stem>.png in {labels_dir}: "
                            f"{listed(missing)}", source=str(images_dir))
        pairs = [(image.stem, image, labels_dir / f"{image.stem}.png") for image in images]
        info = DatasetInfo(name, len(ADE20K_CLASSES), list(ADE20K_CLASSES), 255, list(ADE20K_PALETTE))
        super().__init__(info, root, pairs, reduce_zero_label_lut())


class ADE20KDatasetConfig(DatasetBase):
    type: Literal["ade20k"]
    root: SuitePath
    """ADEChallengeData2016, or the folder holding it."""
    split: str = "validation"


@register_dataset("ade20k", config=ADE20KDatasetConfig, eval_ref="root",
                  describe="ADE20K scene parsing (ADEChallengeData2016): 150 classes, 0 ignored")
def build_ade20k(cfg: ADE20KDatasetConfig) -> ADE20KDataset:
    return ADE20KDataset(cfg.name, cfg.root, cfg.split)
