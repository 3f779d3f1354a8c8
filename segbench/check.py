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
different metric options are not compared at all, nor rows of a dataset whose
fingerprint differs between the runs unless ``allow_different_data``.

``relative`` (the MLPerf rule): a fraction regresses when it falls below that
share of the baseline's (0.99: 99 %), instead of by ``tolerance`` points.

``pairs`` [(NET, NET_ONNX), ...]: the deployment gate. Model NET of the
baseline is compared with model NET_ONNX of the candidate (the same run may be
both), dataset by dataset, in rows whose model is "NET=NET_ONNX". Where both
cells saved predictions, the pixel agreement (the share of all pixels of the
saved predictions on which the two predict the same class; ignore pixels of
the ground truth are counted too: the labels are not read) is a row of its own,
metric AGREEMENT; ``agreement`` requires it to reach that share, and is an
error where the predictions were not saved.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from segbench.columns import Catalogue, Column
from segbench.errors import UserError
from segbench.images import read_label
from segbench.models.predictions import prediction_path
from segbench.report import cell_records, complete_cells, default_metrics, results_catalogue
from segbench.stats import bootstrappable, paired_test
from segbench.store import RunResults, data_difference, option_differences

RATIO_UNITS = frozenset({"ms", "s", "MiB", "GFLOPs", "images/s"})  # compared as candidate / baseline
PIXEL_TOLERANCE = 1.0  # the default limit of figures in px
DEFAULT_UNITS = ("fraction", "ms")  # checked by default: the leaderboard's figures in these units
AGREEMENT = "pixel_agreement"  # the row of a pair's agreement: share of pixels predicted alike
SAVE_HINT = ("set `save_predictions: true` in the suite (or on the model) and run it again; predictions then "
             "go to cells/<cell id>/predictions/")
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
    relative: float | None = None  # the share of the baseline a fraction must reach, instead of tolerance

    def is_relative(self, column: Column) -> bool:
        """Whether ``column`` is held to ``relative`` (fractions without a tolerance of their own)."""
        return self.relative is not None and column.percent and column.name not in self.tolerances

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
    With ``relative``, fractions' change and limit are ratios (candidate / baseline). A row of metric
    AGREEMENT has the agreement as candidate and the required agreement as limit.
    ``figures``: the declarations of the figures checked, by name."""

    table: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    figures: dict[str, Column] = field(default_factory=dict)
    relative_figures: frozenset[str] = frozenset()  # the figures held to ``relative``: ratios, not points

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
          resamples: int = 1000, seed: int = 0, relative: float | None = None,
          pairs: Sequence[tuple[str, str]] | None = None, agreement: float | None = None,
          allow_different_data: bool = False) -> CheckResult:
    """Compare ``candidate`` with ``baseline``; raises UserError when their metric options differ, when a
    dataset compared differs (its fingerprint) unless ``allow_different_data``, for a model of ``pairs``
    that a run lacks, and for ``agreement`` where the predictions were not saved.

    ``metrics``: the figures checked (default: :func:`default_checks`); a figure named in ``tolerances``
    is checked too. Rows are keyed by (model, dataset, corruption, severity): a corrupted cell's dataset
    reads ``<dataset>:<corruption>:<severity>``.
    """
    baseline, candidate = baseline.corrupted_as_datasets(), candidate.corrupted_as_datasets()
    tolerances = dict(tolerances or {})
    if relative is not None and not 0 < relative <= 1:
        raise UserError(f"relative is {relative:g}; expected a share of the baseline in (0, 1], e.g. 0.99",
                        field="relative")
    if agreement is not None and not 0 <= agreement <= 1:
        raise UserError(f"agreement is {agreement:g}; expected a share of pixels in [0, 1], e.g. 0.999",
                        field="agreement")
    if agreement is not None and not pairs:
        raise UserError("agreement is required between the models of a pair: give --pair NET=NET_ONNX",
                        field="agreement")
    if baseline.summary.empty:
        raise UserError(f"the baseline run {baseline.root} has no complete cell (each failed or is pending): "
                        f"a check that compares nothing cannot pass")
    columns = results_catalogue(baseline)
    names = list(dict.fromkeys([*(metrics or default_checks(baseline.summary, columns)), *tolerances]))
    figures = _figures(names, baseline.summary, columns)
    _check_tolerances(tolerances, figures)
    limits = Limits(tolerance, latency_ratio, tolerances, ci, alpha, allow_missing, resamples, seed, relative)
    base_records, cand_records = cell_records(baseline), cell_records(candidate)
    matches = _matches(baseline, candidate, pairs)
    _refuse_different_options(baseline, candidate, base_records, cand_records, matches)
    notes = _different_data(baseline, candidate, base_records, cand_records, matches, allow_different_data)
    cand_rows = candidate.summary.set_index(["model", "dataset"]) if not candidate.summary.empty else None
    base_folders = _prediction_folders(baseline) if pairs else {}
    cand_folders = _prediction_folders(candidate) if pairs else {}
    base_rows = baseline.summary.set_index(["model", "dataset"]) if not baseline.summary.empty else None
    rows = []
    for base_key, cand_key, key in matches:
        base = base_rows.loc[base_key].to_dict()
        if cand_rows is None or cand_key not in cand_rows.index:
            rows.append(_row(key, "-", regressed=not allow_missing, reason="missing from the candidate"))
            continue
        cand = cand_rows.loc[cand_key].to_dict()
        rows += [_figure_row(key, column, base, cand, baseline, candidate, columns, limits, base_key, cand_key)
                 for column in figures.values()]
        if pairs:
            row = _agreement_row(key, base_folders.get(base_key), cand_folders.get(cand_key), agreement,
                                 baseline, candidate, base_key, cand_key)
            if row is not None:
                rows.append(row)
    relative_figures = frozenset(name for name, column in figures.items() if limits.is_relative(column))
    return CheckResult(pd.DataFrame(rows, columns=COLUMNS), notes, figures, relative_figures)


def _matches(baseline: RunResults, candidate: RunResults, pairs: Sequence[tuple[str, str]] | None,
             ) -> list[tuple[tuple[str, str], tuple[str, str], tuple[str, str]]]:
    """(baseline key, candidate key, row key) of every row group compared: each (model, dataset) of the
    baseline with the same of the candidate, or with ``pairs`` each dataset of NET with NET_ONNX on it."""
    keys = [(row["model"], row["dataset"]) for row in baseline.summary[["model", "dataset"]].to_dict("records")] \
        if not baseline.summary.empty else []
    if not pairs:
        return [(key, key, key) for key in keys]
    base_models = list(dict.fromkeys(m for m, _ in keys))
    cand_models = list(dict.fromkeys(candidate.summary["model"])) if not candidate.summary.empty else []
    for side, models, results, which in (("baseline", base_models, baseline, 0),
                                         ("candidate", cand_models, candidate, 1)):
        unknown = list(dict.fromkeys(pair[which] for pair in pairs if pair[which] not in models))
        if unknown:
            raise UserError(f"--pair: no model {', '.join(map(repr, unknown))} in the {side} run "
                            f"{results.root}; it has: {', '.join(models) or 'no complete cell'}", field="pair")
    return [((net, dataset), (deployed, dataset), (f"{net}={deployed}", dataset))
            for net, deployed in pairs for (model, dataset) in keys if model == net]


def _different_data(baseline: RunResults, candidate: RunResults, base_records: dict, cand_records: dict,
                    matches: list, allowed: bool) -> list[str]:
    """The notes on datasets whose fingerprint differs between the runs; UserError unless ``allowed``."""
    differences: dict[str, str] = {}
    for base_key, cand_key, _ in sorted(matches, key=lambda match: match[0][1]):
        before, after = base_records.get(base_key), cand_records.get(cand_key)
        how = None if before is None or after is None else \
            data_difference({"the baseline": before, "the candidate": after})
        if how is not None:
            differences.setdefault(base_key[1], how)
    if differences and not allowed:
        dataset, how = next(iter(differences.items()))
        more = f" (and {len(differences) - 1} more dataset(s): {', '.join(list(differences)[1:])})" \
            if len(differences) > 1 else ""
        raise UserError(f"dataset {dataset!r} differs between the baseline run {baseline.root} and the candidate "
                        f"run {candidate.root}: {how}; its figures do not compare{more}. Give "
                        "--allow-different-data to compare them anyway", field="dataset")
    return [f"dataset {d} differs between the runs ({how}): figures on it may not compare"
            for d, how in differences.items()]


def _prediction_folders(results: RunResults) -> dict[tuple[str, str], Path]:
    """The folders of saved predictions of the complete cells that have one, by (model, dataset) as the rows
    are keyed (:func:`segbench.report.complete_cells`)."""
    return {key: store.predictions_dir(cell_id) for key, (store, cell_id, _) in complete_cells(results).items()
            if store.predictions_dir(cell_id).is_dir()}


def pixel_agreement(first: Path, second: Path, image_ids: Sequence[str]) -> tuple[float, list[str]]:
    """The share of pixels on which the saved predictions of ``image_ids`` in two folders agree, and the ids
    whose prediction either folder lacks (left out). Predictions of different sizes disagree everywhere."""
    same = total = 0
    missing = []
    for image_id in image_ids:
        paths = prediction_path(first, image_id), prediction_path(second, image_id)
        if not all(path.is_file() for path in paths):
            missing.append(image_id)
            continue
        one, other = (read_label(path) for path in paths)
        total += one.size
        same += int((one == other).sum()) if one.shape == other.shape else 0
    return (same / total if total else math.nan), missing


def _agreement_row(key: tuple[str, str], base_folder: Path | None, cand_folder: Path | None,
                   required: float | None, baseline: RunResults, candidate: RunResults,
                   base_key: tuple[str, str], cand_key: tuple[str, str]) -> dict[str, Any] | None:
    """The AGREEMENT row of a pair on a dataset; None without saved predictions and no requirement."""
    if base_folder is None or cand_folder is None:
        if required is None:
            return None
        lacking = [f"{model} on {dataset} in {results.root}" for (model, dataset), folder, results in
                   ((base_key, base_folder, baseline), (cand_key, cand_folder, candidate)) if folder is None]
        raise UserError(f"--agreement needs saved predictions, and there are none for {'; '.join(lacking)}: "
                        + SAVE_HINT, field="agreement")
    ids = list(dict.fromkeys(_images(baseline, base_key)["image_id"]))
    share, missing = pixel_agreement(base_folder, cand_folder, ids)
    row = _row(key, AGREEMENT, candidate=share, limit=math.nan if required is None else required)
    if missing or math.isnan(share):
        return row | {"regressed": required is not None,
                      "reason": f"predictions of {len(missing)} of {len(ids)} images not saved"}
    if required is None:
        return row | {"regressed": False, "reason": "reported"}
    worse = share < required
    return row | {"regressed": worse, "reason": f"agreement < {100 * required:g} %" if worse else "ok"}


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
                candidate: RunResults, columns: Catalogue, limits: Limits, base_key: tuple[str, str],
                cand_key: tuple[str, str]) -> dict[str, Any]:
    metric, higher = column.name, column.direction == "higher"
    before, after = base[metric], cand.get(metric, math.nan)
    absent = _absent(key, metric, before, after, limits)
    if absent:
        return absent
    allowed = limits.allowed(column)
    if limits.is_relative(column):
        change = after / before if before else 1.0 if after == before else math.inf
        limit = limits.relative if higher else 1 / limits.relative
        amount = f"{100 * limits.relative:g} % of the baseline"
        row = _row(key, metric, baseline=before, candidate=after, change=change, limit=limit)
        worse = change < limit if higher else change > limit
        reason = (f"below {amount}" if higher else f"above the baseline / {limits.relative:g}") if worse else "ok"
        return row | {"regressed": worse, "reason": reason}
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
            test = paired_test(_images(candidate, cand_key), _images(baseline, base_key), metric,
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
                              base_records: dict, cand_records: dict, matches: list) -> None:
    """Raise UserError naming the first differences of metric options, suite-wide or per cell."""
    base_suite = baseline.manifest.get("suite_resolved", {}).get("metrics", {})
    cand_suite = candidate.manifest.get("suite_resolved", {}).get("metrics", {})
    places = [("suite metrics", base_suite, cand_suite)]
    places += [(f"{m} on {d}", base_records[base_key].get("metric_options", {}),
                cand_records[cand_key].get("metric_options", {}))
               for base_key, cand_key, (m, d) in sorted(matches, key=lambda match: match[2])
               if base_key in base_records and cand_key in cand_records]
    for where, before, after in places:
        differences = option_differences(before, after, ("baseline", "candidate"))
        if differences:
            raise UserError(f"the runs were made with different metric options ({where}): "
                            + "; ".join(differences[:5]), source=str(candidate.root))


def display_rows(result: CheckResult) -> list[list[str]]:
    """The check table as text: fractions in %; change in points, as a ratio (x1.05), or in the unit."""
    rows = []
    for row in result.table.to_dict(orient="records"):
        column = result.figures.get(row["metric"])
        percent = row["metric"] == AGREEMENT or (column is not None and column.percent)
        ratio = column is not None and (column.unit in RATIO_UNITS or column.name in result.relative_figures)
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
