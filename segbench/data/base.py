"""What every dataset reader provides to the runner."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np
import torch.utils.data

from segbench.data.classes import distinct_palette


@dataclass
class Sample:
    """One evaluation sample: ``image`` uint8 HxWx3 RGB, ``label`` int64 HxW."""

    id: str
    image: np.ndarray
    label: np.ndarray


@dataclass
class DatasetInfo:
    name: str
    num_classes: int
    class_names: list[str]
    ignore_index: int = 255
    palette: list[tuple[int, int, int]] = field(default_factory=list)

    def colours(self) -> list[tuple[int, int, int]]:
        """A colour per class: the dataset's palette when it has one for every class, else a fixed one."""
        if len(self.palette) >= self.num_classes:
            return [tuple(c) for c in self.palette[:self.num_classes]]
        return distinct_palette(self.num_classes)


class SegDataset(torch.utils.data.Dataset):
    """A map-style dataset of :class:`Sample` with the metadata metrics need.

    Subclasses implement ``ids`` (the image stems, in evaluation order),
    ``load(i)`` and ``fingerprint_parts`` (what identifies the data: file
    names with sizes and mtimes, or generator parameters).
    """

    info: DatasetInfo

    def ids(self) -> list[str]:
        raise NotImplementedError

    def load(self, index: int) -> Sample:
        raise NotImplementedError

    def fingerprint_parts(self) -> list[str]:
        raise NotImplementedError

    def __len__(self) -> int:
        return len(self.ids())

    def __getitem__(self, index: int) -> Sample:
        return self.load(index)

    def fingerprint(self) -> str:
        """sha256 over the identifying parts, stable across machines for the same data."""
        digest = hashlib.sha256()
        for part in self.fingerprint_parts():
            digest.update(part.encode())
            digest.update(b"\0")
        return digest.hexdigest()
