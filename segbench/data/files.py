"""Datasets that are lists of (image file, label file) pairs: the base of every file reader."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from segbench.types import DatasetInfo
from segbench.data.base import Sample, SegDataset
from segbench.images import read_image, read_label
from segbench.errors import DataError, UserError

MAX_LISTED = 5


class FilePairsDataset(SegDataset):
    """Reads ``pairs`` of (id, image path, label path); ``label_lut`` maps stored label values.

    A lookup table is how datasets store labels in another encoding than the
    class index (Cityscapes' labelIds, ADE20K's zero label); values beyond the
    table are an error. ``extras``: per name, one file per pair, read as stored
    (int32 HxW, e.g. Cityscapes' ``instances``) into ``Sample.extras``.
    """

    def __init__(self, info: DatasetInfo, root: Path, pairs: list[tuple[str, Path, Path]],
                 label_lut: np.ndarray | None = None, extras: dict[str, list[Path]] | None = None) -> None:
        self.info = info
        self.root = Path(root)
        self._ids = [pair[0] for pair in pairs]
        self._images = [pair[1] for pair in pairs]
        self._labels = [pair[2] for pair in pairs]
        self.label_lut = label_lut
        self._extras = dict(extras or {})
        for name, paths in self._extras.items():
            if len(paths) != len(pairs):
                raise ValueError(f"extra {name!r} has {len(paths)} files for {len(pairs)} pairs")

    def ids(self) -> list[str]:
        return self._ids

    def load(self, index: int) -> Sample:
        image_path, label_path = self._images[index], self._labels[index]
        image = read_image(image_path)
        label = read_label(label_path)
        if image.shape[:2] != label.shape:
            raise DataError(f"image {image_path} is {image.shape[0]}x{image.shape[1]} (HxW) but "
                            f"its label {label_path} is {label.shape[0]}x{label.shape[1]}",
                            source=str(image_path))
        if self.label_lut is not None:
            label = self._map(label, label_path)
        extras = {}
        for name, paths in self._extras.items():
            extra = read_label(paths[index])
            if extra.shape != label.shape:
                raise DataError(f"{name} file {paths[index]} is {extra.shape[0]}x{extra.shape[1]} (HxW) but "
                                f"its label {label_path} is {label.shape[0]}x{label.shape[1]}",
                                source=str(paths[index]))
            extras[name] = extra.astype(np.int32)
        return Sample(id=self._ids[index], image=image, label=label, extras=extras)

    def _map(self, label: np.ndarray, path: Path) -> np.ndarray:
        if label.min() < 0 or label.max() >= len(self.label_lut):
            raise DataError(f"label values must lie in [0, {len(self.label_lut)}) for this dataset, "
                            f"found {label.min()}..{label.max()}", source=str(path))
        return self.label_lut[label]

    def fingerprint_parts(self) -> list[str]:
        lut = [] if self.label_lut is None else [f"lut:{self.label_lut.tolist()}"]
        parts = [pair_part(self.root, image, label) for image, label in zip(self._images, self._labels)]
        extras = [f"{name}:{stat_part(self.root, path)}" for name, paths in sorted(self._extras.items())
                  for path in paths]  # none without extras: the fingerprints of such layouts stay as they were
        return lut + parts + extras


def pair_part(root: Path, image: Path, label: Path) -> str:
    """What identifies an (image, label) pair in a fingerprint: names, sizes, modification times."""
    return f"{stat_part(root, image)} {stat_part(root, label)}"


def stat_part(root: Path, path: Path) -> str:
    try:
        stat = path.stat()
    except OSError as exc:
        raise DataError(f"cannot read file: {exc}", source=str(path)) from exc
    return f"{path.relative_to(root).as_posix()}:{stat.st_size}:{stat.st_mtime_ns}"


def listed(items: list[str]) -> str:
    """The first few items, and how many there are in all."""
    shown = ", ".join(items[:MAX_LISTED])
    return shown + (f", ... ({len(items)} in all)" if len(items) > MAX_LISTED else "")


def require_dir(path: Path, help_section: str) -> Path:
    if not path.is_dir():
        raise UserError(f"folder not found; see the {help_section}", source=str(path))
    return path
