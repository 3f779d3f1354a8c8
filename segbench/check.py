"""Regression check of a candidate run against a baseline run, for CI.

For every (model, dataset) of the baseline, each figure checked is compared in
its declared unit and direction (the run's column catalogue): a fraction
regresses when it worsens by more than ``tolerance`` points (percentage
points: 0.5 means 0.5 mIoU); a figure in a unit of RATIO_UNITS (latency,
throughput, memory, FLOPs) when it worsens by more than the ratio
``latency_ratio``; any other figure (distances in px, counts) when it worsens
by more than PIXEL_TOLERANCE for pixels, or at all for other units.
``tolerances`` sets a figure's own limit, in its unit (a ratio for
RATIO_UNITS). With ``ci``, a figure that bootstraps regresses when the paired
permutation test over images says the candidate is worse (p < alpha),
whatever the size of the change. A (model, dataset) of the baseline that the
candidate lacks is a regression unless ``allow_missing``. Runs made with
different metric options are not compared at all.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from segbench.columns import Catalogue, Column
from segbench.errors import UserError
from segbench.report import cell_records, default_metrics, results_catalogue
from segbench.stats import bootstrappable, paired_test
from segbench.store import RunResults

RATIO_UNITS = frozenset({"ms", "s", "MiB", "GFLOPs", "images/s"})  # compared as candidate / baseline
PIXEL_TOLERANCE = 1.0  # the default limit of figures in px
DEFAULT_UNITS = ("fraction", "ms")  # checked by default: the leaderboard's figures in these units
COLUMNS = ["model", "dataset", "metric", "baseline", "candidate", "change", "limit", "p_value",
           "regressed", "reason"]


@dataclass(frozen=True)
class Limits:
    tolerance: float  # points, for fractions
    latency_ratio: float  # for figures in RATIO_UNITS
    tolerances: Mapping[str, float]  # per figure, in its unit (a ratio for RATIO_UNITS)
    ci: bool
    alpha: float
    allow_missing: bool
    resamples: int
    seed: int

    def allowed(self, column: Column) -> float:
        """How far ``column`` may worsen: in points, as a ratio, or in its unit."""
        if column.name in self.tolerances:
            return self.tolerances[column.name]
        if column.percent:
            return self.tolerance
        if column.unit in RATIO_UNITS:
            return self.latency_ratio
        return PIXEL_TOLERANCE if column.unit == "px" else 0.0


@dataclass
class CheckResult:
    """``table``: one row per (model, dataset, metric) checked. baseline and candidate as stored;
    change in points for fractions, as a ratio for RATIO_UNITS, else in the figure's unit; limit likewise.
    ``figures``: the declarations of the figures checked, by name."""

    table: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    figures: dict[str, Column] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.table["regressed"].any()

    def to_json(self) -> dict[str, Any]:
        rows = [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
                for row in self.table.to_dict(orient="records")]
        return {"ok": self.ok, "regressions": int(self.table["regressed"].sum()), "notes": self.notes,
                "rows": rows}


def check(baseline: RunResults, candidate: RunResults, *, tolerance: float = 0.5,
          latency_ratio: float = 1.10, tolerances: Mapping[str, float] | None = None, ci: bool = False,
          alpha: float = 0.05, allow_missing: bool = False, metrics: Sequence[str] | None = None,
          resamples: int = 1000, seed: int = 0) -> CheckResult:
    """Compare ``candidate`` with ``baseline``; raises UserError when their metric options differ.

    ``metrics``: the figures checked (default: :func:`default_checks`); a figure named in ``tolerances``
    is checked too.
    """
    tolerances = dict(tolerances or {})
    columns = results_catalogue(baseline)
    names = list(dict.fromkeys([*(metrics or default_checks(baseline.summary, columns)), *tolerances]))
    figures = _figures(names, baseline.summary, columns)
    _check_tolerances(tolerances, figures)
    limits = Limits(tolerance, latency_ratio, tolerances, ci, alpha, allow_missing, resamples, seed)
    base_records, cand_records = cell_records(baseline), cell_records(candidate)
    _refuse_different_options(baseline, candidate, base_records, cand_records)
    cand_rows = candidate.summary.set_index(["model", "dataset"]) if not candidate.summary.empty else None
    rows = []
    for base in baseline.summary.to_dict(orient="records"):
        key = (base["model"], base["dataset"])
        if cand_rows is None or key not in cand_rows.index:
            rows.append(_row(key, "-", regressed=not allow_missing, reason="missing from the candidate"))
            continue
        cand = cand_rows.loc[key].to_dict()
        rows += [_figure_row(key, column, base, cand, baseline, candidate, columns, limits)
                 for column in figures.values()]
    changed = {d for (m, d) in base_records.keys() & cand_records.keys()
               if base_records[(m, d)].get("dataset_fingerprint") != cand_records[(m, d)].get("dataset_fingerprint")}
    notes = [f"dataset {d} differs between the runs (its fingerprint): figures on it may not compare"
             for d in sorted(changed)]
    return CheckResult(pd.DataFrame(rows, columns=COLUMNS), notes, figures)


def default_checks(summary: pd.DataFrame, columns: Catalogue) -> list[str]:
    """The figures checked unless told: those leaderboards show whose unit is in DEFAULT_UNITS."""
    return [name for name in default_metrics(summary, columns) if columns.get(name).unit in DEFAULT_UNITS]


def _figures(names: list[str], summary: pd.DataFrame, columns: Catalogue) -> dict[str, Column]:
    """The declarations of ``names``; UserError naming the figures that can be checked when one cannot
    (undeclared, absent from the baseline, or with no direction)."""
    checkable = {c.name: c for c in columns.table("summary")
                 if c.direction != "neither" and c.name in summary.columns}
    unknown = [name for name in names if name not in checkable]
    if unknown:
        raise UserError(f"cannot check {', '.join(map(repr, unknown))}: the baseline's declared figures with a "
                        f"direction are {', '.join(checkable)}", field="metric")
    return {name: checkable[name] for name in names}


def _check_tolerances(tolerances: Mapping[str, float], figures: dict[str, Column]) -> None:
    for name, value in tolerances.items():
        floor = 1.0 if figures[name].unit in RATIO_UNITS else 0.0
        if not value >= floor:
            what = "a ratio of at least 1" if floor else "at least 0"
            raise UserError(f"the tolerance of {name} is {value:g}; expected {what}", field="tolerance")


def _row(key: tuple[str, str], metric: str, **values: Any) -> dict[str, Any]:
    row = {"model": key[0], "dataset": key[1], "metric": metric, "baseline": math.nan,
           "candidate": math.nan, "change": math.nan, "limit": math.nan, "p_value": math.nan}
    return row | values


def _absent(key: tuple[str, str], metric: str, before: float, after: float,
            limits: Limits) -> dict[str, Any] | None:
    """The row of a figure missing on either side, or None when both sides have it."""
    if pd.isna(before):
        return _row(key, metric, candidate=after, regressed=False, reason="no baseline value")
    if pd.isna(after):
        return _row(key, metric, baseline=before, regressed=not limits.allow_missing,
                    reason="missing from the candidate")
    return None


def _figure_row(key: tuple[str, str], column: Column, base: dict, cand: dict, baseline: RunResults,
                candidate: RunResults, columns: Catalogue, limits: Limits) -> dict[str, Any]:
    metric, higher = column.name, column.direction == "higher"
    before, after = base[metric], cand.get(metric, math.nan)
    absent = _absent(key, metric, before, after, limits)
    if absent:
        return absent
    allowed = limits.allowed(column)
    if column.unit in RATIO_UNITS:
        change, limit = after / before, 1 / allowed if higher else allowed
        amount = f"x{allowed:g}"
    else:
        change, limit = (100 if column.percent else 1) * (after - before), -allowed if higher else allowed
        amount = f"{allowed:g} {_unit(column)}".rstrip()
    row = _row(key, metric, baseline=before, candidate=after, change=change, limit=limit)
    if (limits.ci and metric in bootstrappable(baseline.per_image, columns)
            and metric in bootstrappable(candidate.per_image, columns)):
        try:
            test = paired_test(_images(candidate, key), _images(baseline, key), metric,
                               resamples=limits.resamples, seed=limits.seed, columns=columns)
        except UserError as error:
            error.field = f"{key[0]} on {key[1]}"
            raise
        worse = (test.delta < 0 if higher else test.delta > 0) and test.p_value < limits.alpha
        reason = f"worse, p < {limits.alpha:g}" if worse else "ok"
        return row | {"limit": math.nan, "p_value": test.p_value, "regressed": worse, "reason": reason}
    worse = change < limit if higher else change > limit
    reason = f"{'drop' if higher else 'rise'} > {amount}" if worse else "ok"
    return row | {"regressed": worse, "reason": reason}


def _unit(column: Column) -> str:
    """The unit a limit of ``column`` is in: points for fractions, nothing for counts."""
    return "points" if column.percent else "" if column.unit == "count" else column.unit


def _images(results: RunResults, key: tuple[str, str]) -> pd.DataFrame:
    per_image = results.per_image
    return per_image[(per_image["model"] == key[0]) & (per_image["dataset"] == key[1])]


def _refuse_different_options(baseline: RunResults, candidate: RunResults,
                              base_records: dict, cand_records: dict) -> None:
    """Raise UserError naming the first differences of metric options, suite-wide or per cell."""
    base_suite = baseline.manifest.get("suite_resolved", {}).get("metrics", {})
    cand_suite = candidate.manifest.get("suite_resolved", {}).get("metrics", {})
    places = [("suite metrics", base_suite, cand_suite)]
    places += [(f"{m} on {d}", base_records[(m, d)].get("metric_options", {}),
                cand_records[(m, d)].get("metric_options", {}))
               for (m, d) in sorted(base_records.keys() & cand_records.keys())]
    for where, before, after in places:
        differences = _differences(*_groups_of_both(before, after))
        if differences:
            raise UserError(f"the runs were made with different metric options ({where}): "
                            + "; ".join(differences[:5]), source=str(candidate.root))


def _groups_of_both(before: dict, after: dict) -> tuple[dict, dict]:
    """The options of the metric groups both runs record. A group on in one run and off (null) in the other
    is a difference; a group one run does not record at all (its segbench predates the group) gives
    figures only the other run has, which are not a different convention of the same figures."""
    both = before.keys() & after.keys()
    return {name: before[name] for name in both}, {name: after[name] for name in both}


def _differences(before: Any, after: Any, path: str = "") -> list[str]:
    """Dotted paths where two nested option mappings differ, with both values."""
    if isinstance(before, dict) and isinstance(after, dict):
        return [d for key in sorted(before.keys() | after.keys())
                for d in _differences(before.get(key, "<absent>"), after.get(key, "<absent>"),
                                      f"{path}.{key}" if path else str(key))]
    return [] if before == after else [f"{path}: baseline {before!r}, candidate {after!r}"]


def display_rows(result: CheckResult) -> list[list[str]]:
    """The check table as text: fractions in %; change in points, as a ratio (x1.05), or in the unit."""
    rows = []
    for row in result.table.to_dict(orient="records"):
        column = result.figures.get(row["metric"])
        percent = column is not None and column.percent
        ratio = column is not None and column.unit in RATIO_UNITS
        change = ("-" if pd.isna(row["change"]) else
                  f"x{row['change']:.2f}" if ratio else f"{row['change']:+.2f}")
        p_value = "-" if pd.isna(row["p_value"]) else f"{row['p_value']:.3g}"
        rows.append([row["model"], row["dataset"], row["metric"], _shown(row["baseline"], percent),
                     _shown(row["candidate"], percent), change, p_value,
                     f"REGRESSED: {row['reason']}" if row["regressed"] else row["reason"]])
    return rows


def _shown(value: float, percent: bool) -> str:
    if pd.isna(value):
        return "-"
    return f"{100 * value:.2f}" if percent else f"{value:.4g}"
