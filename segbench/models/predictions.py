"""Offline evaluation: a "model" that reads saved label PNGs, ``<root>/<id>.png``."""

from __future__ import annotations

from operator import attrgetter
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field, ValidationInfo, field_validator

from segbench.config import ModelBase, resolve_path
from segbench.types import DatasetInfo
from segbench.images import read_label
from segbench.errors import DataError, UserError
from segbench.models.base import ModelAdapter
from segbench.registry import register_model

DATASET_PLACEHOLDER = "{dataset}"


def prediction_path(root: Path, image_id: str) -> Path:
    """Where the prediction for ``image_id`` is: ``<root>/<id>.png`` (what ``save_predictions`` writes)."""
    return Path(root) / f"{image_id}.png"


class PredictionsAdapter(ModelAdapter):
    """Each prediction is a PNG of class indices (grey or palette) named after the image's id."""

    def __init__(self, root: Path, num_classes: int, device: torch.device) -> None:
        self.root = Path(root)
        self.num_classes = num_classes
        self.device = device
        self._png_names = sorted(p.name for p in self.root.glob("*.png"))

    def predict(self, images: list[np.ndarray], ids: list[str]) -> list[torch.Tensor]:
        if len(images) != len(ids):
            raise ValueError(f"{len(images)} images but {len(ids)} ids")
        return [self._read(image, id_) for image, id_ in zip(images, ids)]

    def provenance(self) -> dict[str, Any]:
        return {"type": "predictions", "root": str(self.root), "num_files": len(self._png_names)}

    def _read(self, image: np.ndarray, id_: str) -> torch.Tensor:
        path = prediction_path(self.root, id_)
        if not path.is_file():
            raise DataError(f"prediction file not found for image {id_!r}{self._naming_hint()}",
                            source=str(path))
        pred = read_label(path)
        if pred.shape != image.shape[:2]:
            raise DataError(f"prediction is {pred.shape[0]}x{pred.shape[1]} (HxW) but image "
                            f"{id_!r} is {image.shape[0]}x{image.shape[1]}", source=str(path))
        return torch.from_numpy(pred).to(self.device)

    def _naming_hint(self) -> str:
        if not self._png_names:
            return f"; {self.root} holds no .png files"
        return (f"; {self.root} holds {len(self._png_names)} other .png files "
                f"(e.g. {self._png_names[0]}): do their names match the image file stems?")


class PredictionsModelConfig(ModelBase):
    type: Literal["predictions"]
    root: str
    """Folder of <image stem>.png label maps; '{dataset}' is replaced by the dataset's name."""
    num_classes: int | None = Field(None, ge=1)

    @field_validator("root")
    @classmethod
    def _root_path(cls, value: str, info: ValidationInfo) -> str:
        return str(resolve_path(value, info))

    def input_paths(self, dataset: str) -> list[Path]:
        return [Path(self.root.replace("{dataset}", dataset))]


@register_model("predictions", config=PredictionsModelConfig, eval_ref="root", classes=attrgetter("num_classes"),
                describe="label maps saved as <image stem>.png, one per image: a model run elsewhere")
def build_predictions(cfg: PredictionsModelConfig, info: DatasetInfo, device: torch.device) -> PredictionsAdapter:
    template = str(cfg.root)
    root = Path(template.replace(DATASET_PLACEHOLDER, info.name))
    if not root.is_dir():
        raise UserError(f"model {cfg.name!r}: predictions folder {root} not found "
                        f"(root {template!r}, with {DATASET_PLACEHOLDER} = {info.name!r})",
                        source=str(root))
    num_classes = info.num_classes if cfg.num_classes is None else cfg.num_classes
    return PredictionsAdapter(root, num_classes, device)
