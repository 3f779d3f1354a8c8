"""Any dataset mmsegmentation knows, listed by mmseg's own dataset class and labels read by its LoadAnnotations.

This is how COCO-Stuff, Mapillary, LoveDA, Potsdam and the rest work without a
reader of ours: the label encoding (reduce_zero_label, label_map) is mmseg's.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Literal

from segbench.config import ConfigRef, DatasetBase, SuitePath
from segbench.types import DatasetInfo
from segbench.data.base import Sample, SegDataset
from segbench.data.files import pair_part
from segbench.images import read_image
from segbench.errors import DataError, UserError
from segbench.mmseg_support import mim_root, require_mmseg
from segbench.registry import register_dataset


def resolve_dataset_config(config: str) -> Path:
    """A dataset config file: a path, or a name under mmseg's packaged configs/_base_/datasets/."""
    if config.endswith(".py") or "/" in config:
        path = Path(config)
    else:
        path = mim_root() / "configs" / "_base_" / "datasets" / f"{config}.py"
    if not path.is_file():
        known = sorted(p.stem for p in (mim_root() / "configs" / "_base_" / "datasets").glob("*.py"))
        raise UserError(f"mmseg dataset config not found; packaged names: {', '.join(known)}",
                        source=str(path), field="config")
    return path


class MMSegDataset(SegDataset):
    """The ``test_dataloader`` dataset of an mmseg config, with its ``data_root`` replaced."""

    def __init__(self, name: str, config: str, root: Path) -> None:
        require_mmseg()
        from mmengine.config import Config
        from mmengine.registry import init_default_scope
        from mmseg.registry import DATASETS

        init_default_scope("mmseg")
        dataset_cfg = copy.deepcopy(Config.fromfile(str(resolve_dataset_config(config))).test_dataloader.dataset)
        dataset_cfg.data_root = str(root)
        dataset_cfg.pipeline = []
        try:
            self.dataset = DATASETS.build(dataset_cfg)
        except (FileNotFoundError, OSError) as error:
            raise UserError(f"mmseg could not list the dataset ({config}): {error}", source=str(root)) from None
        self.root = Path(root)
        self.infos = [self.dataset.get_data_info(i) for i in range(len(self.dataset))]
        if not self.infos:
            raise UserError(f"mmseg found no images for {config} under this data_root", source=str(root))
        meta = self.dataset.metainfo
        self.info = DatasetInfo(name, len(meta["classes"]), list(meta["classes"]), 255,
                                [tuple(c) for c in meta.get("palette", [])])

    def ids(self) -> list[str]:
        return [Path(info["img_path"]).stem for info in self.infos]

    def load(self, index: int) -> Sample:
        from mmseg.datasets.transforms import LoadAnnotations

        info = self.infos[index]
        image = read_image(Path(info["img_path"]))
        results = LoadAnnotations()({"seg_map_path": info["seg_map_path"], "seg_fields": [],
                                     "reduce_zero_label": info["reduce_zero_label"],
                                     "label_map": info.get("label_map")})
        label = results["gt_seg_map"].astype("int64")
        if label.shape != image.shape[:2]:
            raise DataError(f"image is {image.shape[0]}x{image.shape[1]} but its label "
                            f"{info['seg_map_path']} is {label.shape[0]}x{label.shape[1]}",
                            source=info["img_path"])
        return Sample(Path(info["img_path"]).stem, image, label)

    def fingerprint_parts(self) -> list[str]:
        return [pair_part(self.root, Path(i["img_path"]), Path(i["seg_map_path"])) for i in self.infos]


class MMSegDatasetConfig(DatasetBase):
    type: Literal["mmseg"]
    config: ConfigRef
    """A dataset config file, or a name under mmseg's configs/_base_/datasets/ (e.g. coco-stuff164k)."""
    root: SuitePath
    """The data_root the config's paths are relative to."""


@register_dataset("mmseg", config=MMSegDatasetConfig,
                  describe="any dataset mmsegmentation knows, from its dataset config (COCO-Stuff, ...)")
def build_mmseg_dataset(cfg: MMSegDatasetConfig) -> MMSegDataset:
    return MMSegDataset(cfg.name, cfg.config, cfg.root)
