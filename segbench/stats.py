"""Image-level bootstrap confidence intervals and paired tests between two models.

A figure bootstraps when its declaration says how it follows from per-image
records (:class:`segbench.columns.Resampling`): the accuracy family from the
four count vectors of each image (``counts``), a mean over classes of the
per-class mean over the images where the class was evaluated (``image_mean``:
mBF, mHD95, mHD99, ...), or a mean over classes of summed intersections over
summed unions (``band``: mBIoU). A resample, or a swap of two models' images,
is a matrix of weights over images; one matrix product gives the sums of every
resample at once, and the figure follows from the sums as
``accuracy_from_counts`` computes it.

Each function takes the column catalogue of the run (``columns``; by default
every group's declarations at their default options).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from segbench.columns import Catalogue, Resampling
from segbench.errors import UserError
from segbench.registry import catalogue


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


def bootstrappable(per_image: pd.DataFrame, columns: Catalogue | None = None) -> list[str]:
    """The declared figures that can be recomputed from the columns of ``per_image``."""
    present = set(per_image.columns)
    return [column.name for column in _declared(columns).table("summary")
            if column.resampling is not None and set(column.resampling.columns) <= present]


def _resampling(metric: str, columns: Catalogue | None = None) -> Resampling:
    """How ``metric`` follows from per-image records, as declared; UserError when it does not."""
    declared = _declared(columns)
    column = declared.get(metric)
    if column is None or column.resampling is None:
        possible = [c.name for c in declared.table("summary") if c.bootstrap]
        raise UserError(f"no bootstrap for {metric!r}; possible: {', '.join(possible)}")
    return column.resampling


def metric_from_sums(metric: str, sums: dict[str, np.ndarray], columns: Catalogue | None = None) -> np.ndarray:
    """The figure for each row of per-class sums (shape (..., classes) -> (...)), keyed as :func:`_arrays`."""
    return _from_sums(_resampling(metric, columns), sums)


def _arrays(per_image: pd.DataFrame, how: Resampling) -> dict[str, np.ndarray]:
    """The (images, classes) arrays whose sums over images determine the figure: the declared per-image
    columns, or for ``image_mean`` the sum and count of the values where the class was evaluated."""
    if how.kind == "image_mean":
        values = _stack(per_image[how.columns[0]])
        evaluated = ~np.isnan(values)
        return {"sum": np.where(evaluated, values, 0.0), "count": evaluated.astype(np.float64)}
    return {column: _stack(per_image[column]) for column in how.columns}


def _from_sums(how: Resampling, sums: dict[str, np.ndarray]) -> np.ndarray:
    if how.kind == "image_mean":
        return _nanmean(_ratio(sums["sum"], sums["count"]))
    if how.kind == "band":
        intersect, union = (sums[column] for column in how.columns)
        return _nanmean(_ratio(intersect, union))
    return _count_figure(how.figure, *(sums[column] for column in how.columns))


def _count_figure(figure: str, intersect: np.ndarray, union: np.ndarray, pred: np.ndarray,
                  label: np.ndarray) -> np.ndarray:
    """A figure of the accuracy family from summed count vectors, in mmseg's order (intersect, union,
    predicted, label)."""
    if figure == "aAcc":
        return _ratio(intersect.sum(axis=-1), label.sum(axis=-1))
    if figure == "mIoU":
        return _nanmean(_ratio(intersect, union))
    if figure == "mAcc":
        return _nanmean(_ratio(intersect, label))
    if figure == "mDice":
        return _nanmean(_ratio(2 * intersect, label + pred))
    raise UserError(f"no bootstrap for {figure!r}: not a figure of the counts")


def bootstrap(per_image: pd.DataFrame, metric: str, *, resamples: int = 1000, seed: int = 0,
              level: float = 0.95, columns: Catalogue | None = None) -> Interval:
    """Percentile interval of ``metric`` over ``resamples`` resamples of the images (with replacement).

    ``per_image`` holds the rows of one (model, dataset).
    """
    how = _resampling(metric, columns)
    arrays = _arrays(per_image, how)
    n = len(per_image)
    weights = np.random.default_rng(seed).multinomial(n, np.full(n, 1.0 / n), size=resamples).astype(np.float64)
    samples = _from_sums(how, {k: weights @ a for k, a in arrays.items()})
    value = float(_from_sums(how, {k: a.sum(axis=0) for k, a in arrays.items()}))
    tail = 100 * (1 - level) / 2
    lo, hi = np.nanpercentile(samples, [tail, 100 - tail])
    return Interval(value, float(lo), float(hi))


def paired_test(a: pd.DataFrame, b: pd.DataFrame, metric: str, *, resamples: int = 1000,
                seed: int = 0, columns: Catalogue | None = None) -> PairedTest:
    """Paired permutation test over images: is the figure of ``a`` different from that of ``b``?

    ``a`` and ``b`` are the per-image rows of two models on the same images.
    Under the null hypothesis the two models are exchangeable on each image,
    so each resample swaps the two models' records on a random half of the
    images and recomputes the difference. p = (1 + #{|resampled| >= |observed|})
    / (1 + resamples).
    """
    how = _resampling(metric, columns)
    a, b = _aligned(a, b)
    xa, xb = _arrays(a, how), _arrays(b, how)
    totals_a = {k: v.sum(axis=0) for k, v in xa.items()}
    totals_b = {k: v.sum(axis=0) for k, v in xb.items()}
    observed = float(_from_sums(how, totals_a) - _from_sums(how, totals_b))
    swap = np.random.default_rng(seed).integers(0, 2, size=(resamples, len(a))).astype(np.float64)
    sums_a = {k: (1 - swap) @ xa[k] + swap @ xb[k] for k in xa}
    sums_b = {k: totals_a[k] + totals_b[k] - sums_a[k] for k in xa}
    differences = _from_sums(how, sums_a) - _from_sums(how, sums_b)
    extreme = np.abs(differences) >= abs(observed) - 1e-12
    return PairedTest(observed, float((1 + extreme.sum()) / (1 + resamples)))


def bootstrap_table(per_image: pd.DataFrame, metrics: list[str], *, resamples: int = 1000,
                    seed: int = 0, level: float = 0.95, columns: Catalogue | None = None) -> pd.DataFrame:
    """One row per (model, dataset, metric) that can be bootstrapped: value, lo, hi."""
    columns = _declared(columns)
    names = [m for m in metrics if m in bootstrappable(per_image, columns)]
    groups = per_image.groupby(["model", "dataset"], sort=False) if names else []
    rows = []
    for (model, dataset), images in groups:
        for metric in names:
            interval = bootstrap(images, metric, resamples=resamples, seed=seed, level=level, columns=columns)
            rows.append({"model": model, "dataset": dataset, "metric": metric,
                         "value": interval.value, "lo": interval.lo, "hi": interval.hi})
    return pd.DataFrame(rows, columns=["model", "dataset", "metric", "value", "lo", "hi"])


def _declared(columns: Catalogue | None) -> Catalogue:
    """``columns``, or every group's declarations at their default options."""
    return catalogue() if columns is None else columns


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
