"""What every dataset reader provides to the runner."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np
import torch.utils.data

from segbench.types import DatasetInfo


@dataclass
class Sample:
    """One evaluation sample: ``image`` uint8 HxWx3 RGB, ``label`` int64 HxW, and what a reader has beside
    them for the metric groups that need it (``extras``, e.g. ``instances``: int HxW instance ids)."""

    id: str
    image: np.ndarray
    label: np.ndarray
    extras: dict[str, np.ndarray] = field(default_factory=dict)


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
