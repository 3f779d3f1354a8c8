"""Image-level bootstrap confidence intervals and paired tests between two models.

Every dataset-level figure here is a function of per-class sums over images:
the accuracy family of the four count vectors of each image (``area_intersect``,
``area_union``, ``area_pred_label``, ``area_label``), mBIoU of the boundary
bands' intersections and unions, and the boundary and distance means (mBF,
mHD95, mHD) of the per-class values of each image that was evaluated. A
resample, or a swap of two models' images, is a matrix of weights over images;
one matrix product gives the sums of every resample at once, and the figure
follows from the sums as ``accuracy_from_counts`` computes it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from segbench.errors import UserError

COUNT_COLUMNS = ("area_intersect", "area_union", "area_pred_label", "area_label")
COUNT_METRICS = ("mIoU", "aAcc", "mAcc", "mDice")
# dataset figure = mean over classes of (mean over the images where the class was evaluated)
IMAGE_MEAN_METRICS = {"mBF": "BF", "mHD95": "HD95", "mHD": "HD"}
# dataset figure = mean over classes of (intersection / union), both summed over the images
BAND_METRICS = {"mBIoU": ("BIoU_intersect", "BIoU_union")}


@dataclass(frozen=True)
class Interval:
    """A figure on the whole dataset and its bootstrap percentile interval."""

    value: float
    lo: float
    hi: float


@dataclass(frozen=True)
class PairedTest:
    """``delta`` = figure of a minus figure of b; ``p_value`` two-sided."""

    delta: float
    p_value: float


def bootstrappable(per_image: pd.DataFrame) -> list[str]:
    """The figures that can be recomputed from the columns of ``per_image``."""
    names = list(COUNT_METRICS) if set(COUNT_COLUMNS) <= set(per_image.columns) else []
    names += [name for name, column in IMAGE_MEAN_METRICS.items() if column in per_image.columns]
    return names + [name for name, columns in BAND_METRICS.items() if set(columns) <= set(per_image.columns)]


def image_arrays(per_image: pd.DataFrame, metric: str) -> dict[str, np.ndarray]:
    """The (images, classes) arrays whose sums over images determine ``metric``."""
    if metric in COUNT_METRICS:
        return {column: _stack(per_image[column]) for column in COUNT_COLUMNS}
    if metric in IMAGE_MEAN_METRICS:
        values = _stack(per_image[IMAGE_MEAN_METRICS[metric]])
        evaluated = ~np.isnan(values)
        return {"sum": np.where(evaluated, values, 0.0), "count": evaluated.astype(np.float64)}
    if metric in BAND_METRICS:
        intersect, union = BAND_METRICS[metric]
        return {"band_intersect": _stack(per_image[intersect]), "band_union": _stack(per_image[union])}
    raise UserError(f"no bootstrap for {metric!r}; possible: "
                    f"{', '.join(COUNT_METRICS + tuple(IMAGE_MEAN_METRICS) + tuple(BAND_METRICS))}")


def metric_from_sums(metric: str, sums: dict[str, np.ndarray]) -> np.ndarray:
    """The figure for each row of per-class sums (shape (..., classes) -> (...))."""
    if metric in IMAGE_MEAN_METRICS:
        return _nanmean(_ratio(sums["sum"], sums["count"]))
    if metric in BAND_METRICS:
        return _nanmean(_ratio(sums["band_intersect"], sums["band_union"]))
    intersect, union = sums["area_intersect"], sums["area_union"]
    pred, label = sums["area_pred_label"], sums["area_label"]
    if metric == "aAcc":
        return _ratio(intersect.sum(axis=-1), label.sum(axis=-1))
    if metric == "mIoU":
        return _nanmean(_ratio(intersect, union))
    if metric == "mAcc":
        return _nanmean(_ratio(intersect, label))
    if metric == "mDice":
        return _nanmean(_ratio(2 * intersect, label + pred))
    raise UserError(f"no bootstrap for {metric!r}")


def bootstrap(per_image: pd.DataFrame, metric: str, *, resamples: int = 1000, seed: int = 0,
              level: float = 0.95) -> Interval:
    """Percentile interval of ``metric`` over ``resamples`` resamples of the images (with replacement).

    ``per_image`` holds the rows of one (model, dataset).
    """
    arrays = image_arrays(per_image, metric)
    n = len(per_image)
    weights = np.random.default_rng(seed).multinomial(n, np.full(n, 1.0 / n), size=resamples).astype(np.float64)
    samples = metric_from_sums(metric, {k: weights @ a for k, a in arrays.items()})
    value = float(metric_from_sums(metric, {k: a.sum(axis=0) for k, a in arrays.items()}))
    tail = 100 * (1 - level) / 2
    lo, hi = np.nanpercentile(samples, [tail, 100 - tail])
    return Interval(value, float(lo), float(hi))


def paired_test(a: pd.DataFrame, b: pd.DataFrame, metric: str, *, resamples: int = 1000,
                seed: int = 0) -> PairedTest:
    """Paired permutation test over images: is the figure of ``a`` different from that of ``b``?

    ``a`` and ``b`` are the per-image rows of two models on the same images.
    Under the null hypothesis the two models are exchangeable on each image,
    so each resample swaps the two models' records on a random half of the
    images and recomputes the difference. p = (1 + #{|resampled| >= |observed|})
    / (1 + resamples).
    """
    a, b = _aligned(a, b)
    xa, xb = image_arrays(a, metric), image_arrays(b, metric)
    totals_a = {k: v.sum(axis=0) for k, v in xa.items()}
    totals_b = {k: v.sum(axis=0) for k, v in xb.items()}
    observed = float(metric_from_sums(metric, totals_a) - metric_from_sums(metric, totals_b))
    swap = np.random.default_rng(seed).integers(0, 2, size=(resamples, len(a))).astype(np.float64)
    sums_a = {k: (1 - swap) @ xa[k] + swap @ xb[k] for k in xa}
    sums_b = {k: totals_a[k] + totals_b[k] - sums_a[k] for k in xa}
    differences = metric_from_sums(metric, sums_a) - metric_from_sums(metric, sums_b)
    extreme = np.abs(differences) >= abs(observed) - 1e-12
    return PairedTest(observed, float((1 + extreme.sum()) / (1 + resamples)))


def bootstrap_table(per_image: pd.DataFrame, metrics: list[str], *, resamples: int = 1000,
                    seed: int = 0, level: float = 0.95) -> pd.DataFrame:
    """One row per (model, dataset, metric) that can be bootstrapped: value, lo, hi."""
    names = [m for m in metrics if m in bootstrappable(per_image)]
    groups = per_image.groupby(["model", "dataset"], sort=False) if names else []
    rows = []
    for (model, dataset), images in groups:
        for metric in names:
            interval = bootstrap(images, metric, resamples=resamples, seed=seed, level=level)
            rows.append({"model": model, "dataset": dataset, "metric": metric,
                         "value": interval.value, "lo": interval.lo, "hi": interval.hi})
    return pd.DataFrame(rows, columns=["model", "dataset", "metric", "value", "lo", "hi"])


def _aligned(a: pd.DataFrame, b: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Both tables in the same image order; the images must be the same."""
    if set(a["image_id"]) != set(b["image_id"]) or len(a) != len(b):
        common = len(set(a["image_id"]) & set(b["image_id"]))
        raise UserError(f"a paired test needs both evaluated on the same images; they have {len(a)} "
                        f"and {len(b)} images, {common} in common")
    return a.sort_values("image_id"), b.sort_values("image_id")


def _stack(column: pd.Series) -> np.ndarray:
    return np.stack([np.asarray(v, dtype=np.float64) for v in column])


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den, NaN where den is 0."""
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    return np.divide(num, den, out=np.full(np.broadcast_shapes(num.shape, den.shape), np.nan),
                     where=den > 0)


def _nanmean(values: np.ndarray) -> np.ndarray:
    """Mean over the last axis of the values that are not NaN; NaN when there are none."""
    defined = ~np.isnan(values)
    return _ratio(np.where(defined, values, 0.0).sum(axis=-1), defined.sum(axis=-1))
