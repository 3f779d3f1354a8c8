"""Regression check of a candidate run against a baseline run, for CI.

For every (model, dataset) of the baseline: an accuracy figure regresses when
it drops by more than ``tolerance`` points (percentage points: 0.5 means
0.5 mIoU), or, with ``ci``, when the paired permutation test over images says
the candidate is worse (p < alpha), whatever the size of the drop; a latency
regresses when it grows by more than ``latency_ratio``. A (model, dataset) of
the baseline that the candidate lacks is a regression unless ``allow_missing``.
Runs made with different metric options are not compared at all.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from segbench.errors import UserError
from segbench.report import PERCENT_METRICS, cell_records, is_percent, latency_columns
from segbench.stats import bootstrappable, paired_test
from segbench.store import RunResults

DEFAULT_METRICS = ("mIoU", "aAcc", "mAcc", "mBF")
COLUMNS = ["model", "dataset", "metric", "baseline", "candidate", "change", "limit", "p_value",
           "regressed", "reason"]


@dataclass(frozen=True)
class Limits:
    tolerance: float  # points
    latency_ratio: float
    ci: bool
    alpha: float
    allow_missing: bool
    resamples: int
    seed: int


@dataclass
class CheckResult:
    """``table``: one row per (model, dataset, metric) checked. baseline and candidate as stored;
    change in points for accuracy figures and as a ratio for latencies; limit likewise."""

    table: pd.DataFrame
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.table["regressed"].any()

    def to_json(self) -> dict[str, Any]:
        rows = [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
                for row in self.table.to_dict(orient="records")]
        return {"ok": self.ok, "regressions": int(self.table["regressed"].sum()), "notes": self.notes,
                "rows": rows}


def check(baseline: RunResults, candidate: RunResults, *, tolerance: float = 0.5,
          latency_ratio: float = 1.10, ci: bool = False, alpha: float = 0.05,
          allow_missing: bool = False, metrics: Sequence[str] = DEFAULT_METRICS,
          resamples: int = 1000, seed: int = 0) -> CheckResult:
    """Compare ``candidate`` with ``baseline``; raises UserError when their metric options differ."""
    not_accuracy = [m for m in metrics if m not in PERCENT_METRICS]
    if not_accuracy:
        raise UserError(f"check compares accuracy figures (in %), not {', '.join(not_accuracy)}",
                        field="metric")
    limits = Limits(tolerance, latency_ratio, ci, alpha, allow_missing, resamples, seed)
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
        for metric in [m for m in metrics if m in base]:
            rows.append(_accuracy_row(key, metric, base, cand, baseline, candidate, limits))
        for column in latency_columns(baseline.summary):
            rows.append(_latency_row(key, column, base, cand, limits))
    changed = {d for (m, d) in base_records.keys() & cand_records.keys()
               if base_records[(m, d)].get("dataset_fingerprint") != cand_records[(m, d)].get("dataset_fingerprint")}
    notes = [f"dataset {d} differs between the runs (its fingerprint): figures on it may not compare"
             for d in sorted(changed)]
    return CheckResult(pd.DataFrame(rows, columns=COLUMNS), notes)


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


def _accuracy_row(key: tuple[str, str], metric: str, base: dict, cand: dict, baseline: RunResults,
                  candidate: RunResults, limits: Limits) -> dict[str, Any]:
    before, after = base[metric], cand.get(metric, math.nan)
    absent = _absent(key, metric, before, after, limits)
    if absent:
        return absent
    change = 100 * (after - before)
    row = _row(key, metric, baseline=before, candidate=after, change=change, limit=-limits.tolerance)
    if limits.ci and metric in bootstrappable(baseline.per_image) and metric in bootstrappable(candidate.per_image):
        try:
            test = paired_test(_images(candidate, key), _images(baseline, key), metric,
                               resamples=limits.resamples, seed=limits.seed)
        except UserError as error:
            error.field = f"{key[0]} on {key[1]}"
            raise
        worse = test.delta < 0 and test.p_value < limits.alpha
        reason = f"worse, p < {limits.alpha:g}" if worse else "ok"
        return row | {"limit": math.nan, "p_value": test.p_value, "regressed": worse, "reason": reason}
    worse = change < -limits.tolerance
    reason = f"drop > {limits.tolerance:g} points" if worse else "ok"
    return row | {"regressed": worse, "reason": reason}


def _latency_row(key: tuple[str, str], column: str, base: dict, cand: dict,
                 limits: Limits) -> dict[str, Any]:
    before, after = base[column], cand.get(column, math.nan)
    absent = _absent(key, column, before, after, limits)
    if absent:
        return absent
    change = after / before
    worse = change > limits.latency_ratio
    reason = f"slower > x{limits.latency_ratio:g}" if worse else "ok"
    return _row(key, column, baseline=before, candidate=after, change=change,
                limit=limits.latency_ratio, regressed=worse, reason=reason)


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
        differences = _differences(before, after)
        if differences:
            raise UserError(f"the runs were made with different metric options ({where}): "
                            + "; ".join(differences[:5]), source=str(candidate.root))


def _differences(before: Any, after: Any, path: str = "") -> list[str]:
    """Dotted paths where two nested option mappings differ, with both values."""
    if isinstance(before, dict) and isinstance(after, dict):
        return [d for key in sorted(before.keys() | after.keys())
                for d in _differences(before.get(key, "<absent>"), after.get(key, "<absent>"),
                                      f"{path}.{key}" if path else str(key))]
    return [] if before == after else [f"{path}: baseline {before!r}, candidate {after!r}"]


def display_rows(table: pd.DataFrame) -> list[list[str]]:
    """The check table as text: accuracy in %, change in points or as a ratio."""
    rows = []
    for row in table.to_dict(orient="records"):
        percent = is_percent(row["metric"])
        change = ("-" if pd.isna(row["change"]) else
                  f"{row['change']:+.2f}" if percent else f"x{row['change']:.2f}")
        p_value = "-" if pd.isna(row["p_value"]) else f"{row['p_value']:.3g}"
        rows.append([row["model"], row["dataset"], row["metric"], _shown(row["baseline"], percent),
                     _shown(row["candidate"], percent), change, p_value,
                     f"REGRESSED: {row['reason']}" if row["regressed"] else row["reason"]])
    return rows


def _shown(value: float, percent: bool) -> str:
    if pd.isna(value):
        return "-"
    return f"{100 * value:.2f}" if percent else f"{value:.4g}"
