"""Types that dataset readers and model adapters both use, so that neither imports the other."""

from __future__ import annotations

from dataclasses import dataclass, field

from segbench.images import distinct_palette


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
