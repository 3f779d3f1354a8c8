"""``type: stripes``: vertical stripes, one class each, whose brightness tells the class; no download.

Image ``i`` is drawn from ``numpy.random.default_rng([seed, i])`` only. Class
``c`` of ``K`` is painted at grey level ``(c + 0.5) * 255 / K`` plus Gaussian
noise of ``noise`` (per channel), so a brightness threshold gets most pixels
right but not all. The first column of each stripe after the first is
labelled 255 (ignore), as datasets mark uncertain borders.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field

from segbench.config import DatasetBase
from segbench.data.base import Sample, SegDataset
from segbench.registry import register_dataset
from segbench.types import DatasetInfo

GENERATOR_VERSION = "stripes-v1"
IGNORE_INDEX = 255


def levels(num_classes: int) -> np.ndarray:
    """The grey level each class is painted at."""
    return (np.arange(num_classes) + 0.5) * 255 / num_classes


def generate(seed: int, index: int, height: int, width: int, num_classes: int,
             noise: float) -> tuple[np.ndarray, np.ndarray]:
    """Image ``index``: (uint8 HxWx3 RGB, int64 HxW label)."""
    rng = np.random.default_rng([seed, index])
    cuts = np.sort(rng.choice(np.arange(1, width), size=min(width - 1, int(rng.integers(1, 5))), replace=False))
    classes = rng.integers(0, num_classes, len(cuts) + 1)
    columns = classes[np.searchsorted(cuts, np.arange(width), side="right")]
    label = np.broadcast_to(columns, (height, width)).copy()
    grey = levels(num_classes)[label][..., None] + rng.normal(0, noise, (height, width, 3))
    label[:, cuts] = IGNORE_INDEX
    return np.clip(np.rint(grey), 0, 255).astype(np.uint8), label.astype(np.int64)


class StripesDataset(SegDataset):
    def __init__(self, name: str, num_images: int, height: int, width: int, num_classes: int, noise: float,
                 seed: int) -> None:
        self.num_images, self.height, self.width = num_images, height, width
        self.num_classes, self.noise, self.seed = num_classes, noise, seed
        grey = [(int(v), int(v), int(v)) for v in levels(num_classes)]
        self.info = DatasetInfo(name=name, num_classes=num_classes,
                                class_names=[f"level_{c}" for c in range(num_classes)],
                                ignore_index=IGNORE_INDEX, palette=grey)

    def ids(self) -> list[str]:
        return [f"stripes_{i:04d}" for i in range(self.num_images)]

    def load(self, index: int) -> Sample:
        if not 0 <= index < self.num_images:
            raise IndexError(f"index {index} out of range for {self.num_images} images")
        image, label = generate(self.seed, index, self.height, self.width, self.num_classes, self.noise)
        return Sample(id=f"stripes_{index:04d}", image=image, label=label)

    def fingerprint_parts(self) -> list[str]:
        return [GENERATOR_VERSION, f"num_images={self.num_images}", f"height={self.height}",
                f"width={self.width}", f"num_classes={self.num_classes}", f"noise={self.noise}",
                f"seed={self.seed}"]


class StripesConfig(DatasetBase):
    type: Literal["stripes"]
    num_images: int = Field(8, ge=1)
    height: int = Field(32, ge=1)
    width: int = Field(32, ge=2)
    num_classes: int = Field(4, ge=2, le=255)
    noise: float = Field(20.0, ge=0)
    """Standard deviation of the Gaussian noise on each channel, in grey levels."""
    seed: int = 0


@register_dataset("stripes", config=StripesConfig, describe="procedural vertical stripes, a grey level per class")
def build_stripes(cfg: StripesConfig) -> StripesDataset:
    return StripesDataset(cfg.name, cfg.num_images, cfg.height, cfg.width, cfg.num_classes, cfg.noise, cfg.seed)
