"""The columns segbench fills itself, outside any metric group: the profiler's efficiency figures and the
run's own bookkeeping.

They are declared here, low in the house, rather than in segbench/profiling.py and segbench/runner.py that
fill them: ``registry.load_plugins`` imports this module by name, so ``segbench check``, ``report`` and
``list`` learn these columns without importing the runner.
"""

from __future__ import annotations

from segbench.columns import EFFICIENCY, Column, Spread
from segbench.registry import register_columns

# The summary's efficiency columns (profiling.headline): end_to_end unprefixed, model scope prefixed ``model_``.
_HEADLINE_COLUMNS = (
    ("latency_ms_p50", "ms", "lower", "median latency of one batch"),
    ("latency_ms_p90", "ms", "lower", "90th-percentile latency of one batch"),
    ("latency_ms_p99", "ms", "lower", "99th-percentile latency of one batch"),
    ("throughput_images_per_sec", "images/s", "higher", "images per second at the batch size"),
    ("gflops_per_image", "GFLOPs", "lower", "FLOPs of one image, 2 per multiply-add (twice mmseg's get_flops)"),
    ("peak_memory_mib", "MiB", "lower", "peak memory: CUDA max allocated, or the CPU's peak resident set"),
)
FLOPS_NOTE = "GFLOPs count 2 FLOPs per multiply-add: twice the figure of mmseg's get_flops"
NOISY_SPREAD = 1.5  # a latency p90 more than this times its median: timed on a busy machine


def efficiency_columns() -> list[Column]:
    """The leaderboard shows the end-to-end figures (latency by its median, with its spread p90/p50) and
    the parameters, in millions."""
    columns = [Column(prefix + name, unit, direction, f"{meaning}, {scope}", group=EFFICIENCY,
                      leaderboard=not prefix and name not in ("latency_ms_p90", "latency_ms_p99"),
                      note=FLOPS_NOTE if unit == "GFLOPs" else "",
                      spread=Spread(prefix + "latency_ms_p90", "p90/p50", NOISY_SPREAD)
                      if name == "latency_ms_p50" else None)
               for prefix, scope in (("", "end to end"), ("model_", "the network's forward alone"))
               for name, unit, direction, meaning in _HEADLINE_COLUMNS]
    settings = [Column(prefix + "efficiency_status", "text", "neither",
                       f"ok, skipped or failed: how the profiling of the {scope} went", group=EFFICIENCY)
                for prefix, scope in (("", "end-to-end scope"), ("model_", "model scope"))]
    first = "of the summary's efficiency figures (the first configured)"
    settings += [Column(name, unit, "neither", meaning, group=EFFICIENCY) for name, unit, meaning in (
        ("efficiency_device_name", "text", "the device the efficiency figures were measured on"),
        ("efficiency_batch_size", "count", f"the batch size {first}"),
        ("efficiency_precision", "text", f"the precision {first}"))]
    return columns + settings + [Column("params", "count", "lower", "parameters of the network",
                                        group=EFFICIENCY, leaderboard=True, shown_unit="M", scale=1e-6)]


def run_columns() -> list[Column]:
    """The summary's bookkeeping columns, beside the metric groups' and the profiler's figures."""
    return [Column("num_images", "count", "neither", "images evaluated", group="run"),
            *(Column("invalid_label_pixels", "count", "lower", "label pixels outside [0, K) mapped to ignore",
                     table=table, group="run") for table in ("summary", "per_image")),
            Column("trained", "text", "neither", "whether the model had trained weights", group="run"),
            Column("eval_seconds", "s", "neither", "wall time of the cell's evaluation", group="run")]


# In this order: the catalogue lists the efficiency columns before the run's (registry._declared_order).
register_columns(EFFICIENCY, efficiency_columns)
register_columns("run", run_columns)
