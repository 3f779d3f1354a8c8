"""The result every metric group computes, and the state of the groups that keep per-image records."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class MetricResult:
    """Dataset-level figures, one array of K per per-class figure, one dict per image, and run-level tables.

    ``tables``: a table of the run's (a name of ``segbench.store.EXTRA_TABLES``)
    as columns of equal length; the runner adds the model and dataset columns.
    """

    summary: dict[str, float]
    per_class: dict[str, np.ndarray]
    per_image: list[dict[str, Any]] = field(default_factory=list)
    tables: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)


class RecordState:
    """A state of one record per image; merging appends the other state's records.

    Subclasses name themselves (``name``) and say which options must agree
    for two states to merge (``_settings``).
    """

    name: str
    records: list[dict[str, Any]]

    def _settings(self) -> tuple:
        raise NotImplementedError

    def reset(self) -> None:
        self.records = []

    def merge(self, other: RecordState) -> None:
        if self._settings() != other._settings():
            raise ValueError(f"cannot merge {self.name} states with settings {other._settings()} "
                             f"into {self._settings()}")
        self.records.extend(other.records)
