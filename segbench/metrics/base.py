"""The result every metric group computes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class MetricResult:
    """Dataset-level figures, one array of K per per-class figure, one dict per image."""

    summary: dict[str, float]
    per_class: dict[str, np.ndarray]
    per_image: list[dict[str, Any]] = field(default_factory=list)
