"""Metric groups; importing this package fills ``segbench.registry.METRICS``."""

from segbench.metrics import boundary  # noqa: F401  (registers "boundary")
from segbench.metrics import confusion  # noqa: F401  (registers "accuracy")
from segbench.metrics import distance  # noqa: F401  (registers "distance")
from segbench.metrics.base import MetricResult

__all__ = ["MetricResult"]
