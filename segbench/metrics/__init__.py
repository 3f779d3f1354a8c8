"""Metric groups: each module declares its group and columns (segbench.registry.register_metric)."""
