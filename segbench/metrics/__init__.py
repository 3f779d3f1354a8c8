"""Metric groups; importing this package fills ``segbench.registry.METRICS``."""

from segbench.metrics import confusion  # noqa: F401  (registers "accuracy")
from segbench.metrics.base import MetricResult

__all__ = ["MetricResult"]
