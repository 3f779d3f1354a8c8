"""Reports from run folders: leaderboards, per-class tables, published against measured.

Tables stay long (one row per model, dataset and metric) until they are
rendered. Rendering pivots them, shows fractions as percentages and other
figures in their unit, rounds, and marks the best value of each column; the
formats are Markdown, CSV, LaTeX (booktabs) and one self-contained HTML file
with matplotlib figures embedded. What a column is (unit, direction, whether it
bootstraps, whether leaderboards show it) comes from the run's column catalogue
(:func:`results_catalogue`), never from its name.
"""

from __future__ import annotations

import base64
import html
import io
import os
import re
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from segbench.columns import PUBLISHED_PREFIX, Catalogue, Column
from segbench.corruptions import CLEAN, OVERALL, robustness_columns
from segbench.errors import UserError
from segbench.registry import catalogue
from segbench.stats import bootstrap_table, bootstrappable, paired_test
from segbench.store import (CELL_KEYS, RunResults, RunStore, corruption_reference, data_difference,
                            option_differences, with_cell_keys)

Format = Literal["md", "csv", "tex", "html"]
CiStyle = Literal["pm", "interval"]

MERGED_METRICS = "merged_metrics"  # a merged manifest's key: the metric options of each run merged
MERGED_TABLES = ("summary", "per_class", "per_image", "confusion", "calibration", "robustness")
"""The tables of which merge_runs keeps the winners' rows: a (model, dataset)'s clean and corrupted rows
come from one run."""
TOP_CONFUSIONS = 10  # off-diagonal cells in a report's top-confusions table, per (model, dataset)
HEATMAP_CLASSES = 30  # a confusion heatmap with more classes shows the most confused ones alone
UNTRAINED_MARK = "†"  # after a model's name: random weights
UNKNOWN_TRAINING_MARK = "?"  # after a model's name: not known whether trained
TRAINED_LEGEND = {UNTRAINED_MARK: f"{UNTRAINED_MARK} random weights: not a trained model",
                  UNKNOWN_TRAINING_MARK: f"{UNKNOWN_TRAINING_MARK} not known whether trained"}
TIED_MARK = "‡"  # a value not significantly different from the best (--ci)


# ---------------------------------------------------------------- metrics

def results_catalogue(results: RunResults) -> Catalogue:
    """The columns declared for ``results``: each metric group with the options its run recorded
    (merged results: the union over the runs merged), and the columns declared outside metric groups."""
    return Catalogue(column for options in _recorded_metrics(results.manifest) for column in catalogue(options))


def _recorded_metrics(manifest: dict[str, Any]) -> list[dict[str, Any] | None]:
    """The metric options (group -> options, None: off) of each run behind ``manifest``; None where a run
    recorded none (its groups' defaults apply)."""
    if MERGED_METRICS in manifest:
        return manifest[MERGED_METRICS]
    return [manifest.get("suite_resolved", {}).get("metrics")]


def default_metrics(summary: pd.DataFrame, columns: Catalogue) -> list[str]:
    """The columns a leaderboard shows unless told: the declared ``leaderboard`` columns measured (with a
    value), in catalogue order."""
    return [c.name for c in columns.table("summary")
            if c.leaderboard and c.name in summary.columns and summary[c.name].notna().any()]


def _sign(column: Column | None) -> float:
    """-1 for a lower-is-better figure, else 1: values times the sign rank best first when descending."""
    return -1.0 if column is not None and column.direction == "lower" else 1.0


def _unit_label(column: Column | None) -> str:
    """The unit a report shows a figure in: % for fractions, its declared ``shown_unit``, else its unit;
    nothing for counts, text and undeclared columns."""
    if column is None or not column.shown_unit and column.unit in ("count", "text"):
        return ""
    return "%" if column.percent else column.shown_unit or column.unit


def _checked(summary: pd.DataFrame, metrics: Sequence[str]) -> list[str]:
    unknown = [m for m in metrics if m not in summary.columns]
    if unknown:
        present = [c for c in summary.columns if pd.api.types.is_numeric_dtype(summary[c])]
        raise UserError(f"no column {', '.join(map(repr, unknown))} in the results; "
                        f"present: {', '.join(present)}", field="metric")
    return list(metrics)


# ---------------------------------------------------------------- run folders

def complete_cells(results: RunResults) -> dict[tuple[str, str], tuple[RunStore, str, dict[str, Any]]]:
    """Every complete clean cell: the store of its run folder, its id and its cell.json, by (model, dataset)
    as the manifest names them (merged results label a dataset with its data and name each cell's run
    folder; a corrupted cell is one of its own where :meth:`RunResults.corrupted_as_datasets` made it so)."""
    cells = {}
    for cell_id, entry in results.manifest.get("cells", {}).items():
        if entry.get("corruption", CLEAN) != CLEAN:
            continue
        store = RunStore(Path(entry.get("run_dir", results.root)))
        record = store.cell_record(cell_id)
        if record is not None:
            cells[(entry.get("model", record["model"]), entry.get("dataset", record["dataset"]))] = (
                store, cell_id, record)
    return cells


def cell_records(results: RunResults) -> dict[tuple[str, str], dict[str, Any]]:
    """cell.json of every complete clean cell, by (model, dataset) (:func:`complete_cells`)."""
    return {key: record for key, (_, _, record) in complete_cells(results).items()}


def merge_runs(runs: Sequence[RunResults], prefer: Literal["newest", "last"] = "newest",
               allow_different_data: bool = False) -> RunResults:
    """One set of tables from several run folders: one result per (model, dataset).

    ``newest``: the cell that finished last wins; ``last``: the cell of the
    run folder given last wins. The merged manifest's cells are the winners and,
    as their folders have them, the cells that did not complete; it keeps each
    run's metric options, from which :func:`results_catalogue` declares the columns.
    Winners of one dataset name made with different metric options are refused (UserError), and so are
    winners on different data (dataset fingerprints) unless ``allow_different_data``: then each such
    dataset is labelled with its data ("shapes (32 images, data 1a2b3c)") wherever it is named.
    """
    if len(runs) == 1:
        return runs[0]
    keys = pd.concat([_result_keys(run, i) for i, run in enumerate(runs)], ignore_index=True)
    order = ["finished", "run"] if prefer == "newest" else ["run"]
    winners = keys.sort_values(order, na_position="first").groupby(["model", "dataset"]).tail(1)
    winners = winners.sort_values(["run", "position"])
    labels = _data_labels(runs, winners, allow_different_data)
    winners = winners.assign(label=[labels.get((row.run, row.dataset), row.dataset)
                                    for row in winners.itertuples()])
    tables = {name: _labelled(_winning_rows(runs, winners, name), winners) for name in MERGED_TABLES}
    cells = {cell_id: entry | {"run_dir": str(run.root)} for run in runs
             for cell_id, entry in run.manifest.get("cells", {}).items() if entry.get("status") != "complete"}
    cells |= {row.cell_id: {"model": row.model, "dataset": row.label, "status": "complete",
                            "run_dir": str(runs[row.run].root)} for row in winners.itertuples()}
    manifest = {
        "suite_name": "+".join(dict.fromkeys(run.manifest.get("suite_name", "?") for run in runs)),
        "merged_from": [str(run.root) for run in runs],
        "datasets": {k: v for run in runs for k, v in run.manifest.get("datasets", {}).items()},
        "cells": cells,
        MERGED_METRICS: [options for run in runs for options in _recorded_metrics(run.manifest)],
    }
    root = Path(os.path.commonpath([str(run.root.resolve()) for run in runs]))
    declared = {f.name for f in fields(RunResults)}
    merged = RunResults(root, manifest, **{name: rows for name, rows in tables.items() if name in declared})
    for name in tables.keys() - declared:  # a table the store does not declare (yet): kept all the same
        setattr(merged, name, tables[name])
    return merged


def _data_labels(runs: Sequence[RunResults], winners: pd.DataFrame, allowed: bool) -> dict[tuple[int, str], str]:
    """(run index, dataset) -> the dataset's label naming its data, for the datasets whose winning cells
    hold different data; UserError when the winners of a dataset differ in metric options, or in data
    unless ``allowed``."""
    records = [{key[1]: record for key, record in cell_records(run).items()} for run in runs]
    labels = {}
    for dataset, rows in winners.groupby("dataset", sort=False):
        found = {f"run {runs[i].root}": records[i][dataset] for i in dict.fromkeys(rows["run"])
                 if dataset in records[i]}
        if len(found) < 2:
            continue
        _refuse_different_options(dataset, found)
        how = data_difference(found)
        if how is None:
            continue
        if not allowed:
            raise UserError(f"dataset {dataset!r} holds different data in the runs merged: {how}; its rows do "
                            "not compare. Give --allow-different-data to report them side by side, each "
                            "dataset labelled with its data")
        labels |= {(i, dataset): _data_label(dataset, records[i][dataset]) for i in dict.fromkeys(rows["run"])
                   if dataset in records[i]}
    return labels


def _refuse_different_options(dataset: str, records: dict[str, dict[str, Any]]) -> None:
    """UserError naming the first runs (``records``: cell.json by the run's label) whose cells of ``dataset``
    were made with different metric options."""
    (first, reference), *others = records.items()
    for label, record in others:
        differences = option_differences(reference.get("metric_options", {}), record.get("metric_options", {}),
                                         (first, label))
        if differences:
            raise UserError(f"dataset {dataset!r} was evaluated with different metric options in the runs "
                            f"merged: {'; '.join(differences[:5])}; its rows do not compare. Run them again "
                            "with the same metric options, or report them apart")


def _data_label(dataset: str, record: dict[str, Any]) -> str:
    """The dataset's name with its data: ``shapes (32 images, data 1a2b3c)``."""
    images = record.get("summary", {}).get("num_images")
    return f"{dataset} ({images} images, data {str(record.get('dataset_fingerprint'))[:6]})"


def _labelled(table: pd.DataFrame, winners: pd.DataFrame) -> pd.DataFrame:
    """``table`` with each row's dataset replaced by its winner's label (:func:`_data_labels`)."""
    if table.empty or (winners["label"] == winners["dataset"]).all():
        return table
    labels = dict(zip(zip(winners["model"], winners["dataset"]), winners["label"]))
    return table.assign(dataset=[labels.get(key, key[1]) for key in zip(table["model"], table["dataset"])])


def missing_cells(results: RunResults) -> list[str]:
    """A line for each cell of the manifest that did not complete (failed, or never finished) and has no result.

    A cell that failed in one merged run folder but completed in another has a result: no line. Cells are
    keyed by :data:`CELL_KEYS`: a failed corrupted cell has no result though its clean cell has.
    """
    summary = with_cell_keys(results.summary)
    reported = set(zip(*(summary.get(key, []) for key in CELL_KEYS)))
    lines = []
    for entry in results.manifest.get("cells", {}).values():
        status = entry.get("status", "pending")
        corruption, severity = entry.get("corruption", CLEAN), entry.get("severity", 0)
        if status == "complete" or (entry.get("model"), entry.get("dataset"), corruption, severity) in reported:
            continue
        error = (entry.get("error") or "").strip()
        reason = f"{status}: {error.splitlines()[0]}" if error else status
        under = f" under {corruption} at severity {severity}" if corruption != CLEAN else ""
        lines.append(f"Not in this report: model {entry.get('model')} on dataset {entry.get('dataset')}{under} "
                     f"({reason}) in run {entry.get('run_dir', results.root)}")
    return lines


def _result_keys(run: RunResults, index: int) -> pd.DataFrame:
    """(model, dataset) of each clean summary row, with its cell id and when the cell finished."""
    by_key = {(e.get("model"), e.get("dataset")): (cid, e.get("finished"))
              for cid, e in run.manifest.get("cells", {}).items() if e.get("corruption", CLEAN) == CLEAN}
    fallback = run.manifest.get("updated") or run.manifest.get("created")
    rows = []
    summary = run.clean().summary
    for position, (model, dataset) in enumerate(zip(summary["model"], summary["dataset"])):
        cell_id, finished = by_key.get((model, dataset), (f"{model}__{dataset}", None))
        rows.append({"model": model, "dataset": dataset, "cell_id": cell_id, "run": index,
                     "position": position, "finished": finished or fallback})
    keys = pd.DataFrame(rows, columns=["model", "dataset", "cell_id", "run", "position", "finished"])
    keys["finished"] = pd.to_datetime(keys["finished"], utc=True, format="ISO8601")
    return keys


def _winning_rows(runs: Sequence[RunResults], winners: pd.DataFrame, name: str) -> pd.DataFrame:
    frames = []
    for index, run in enumerate(runs):
        table = getattr(run, name, None)
        mine = winners.loc[winners["run"] == index, ["model", "dataset"]]
        if table is not None and not table.empty and not mine.empty:
            frames.append(table.merge(mine, on=["model", "dataset"]))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


# ---------------------------------------------------------------- tables (DataFrames)

def leaderboard_long(results: RunResults, metrics: Sequence[str] | None = None, *, ci: bool = False,
                     resamples: int = 1000, seed: int = 0, alpha: float = 0.05) -> pd.DataFrame:
    """One row per (model, dataset, metric): value, best; with ``ci`` also lo, hi and tied; spread where a
    shown figure declares one and it was measured.

    best: the best value of its (dataset, metric). tied: not significantly
    different from the best by a paired permutation test over images (p >= alpha).
    spread: how steady the measurement was, e.g. latency p90 / p50 (:class:`segbench.columns.Spread`).
    The clean images' rows alone (:func:`robustness_leaderboard` ranks the corrupted).
    """
    results = results.clean()
    summary, columns = results.summary, results_catalogue(results)
    metrics = _checked(summary, metrics or default_metrics(summary, columns))
    long = summary.melt(id_vars=["model", "dataset"], value_vars=metrics, var_name="metric",
                        value_name="value")
    long["value"] = pd.to_numeric(long["value"], errors="coerce").astype(float)
    long["best"] = _best(long, columns)
    spread = _spreads(long, summary, columns)
    if spread.notna().any():
        long["spread"] = spread
    if ci:
        intervals = bootstrap_table(results.per_image, metrics, resamples=resamples, seed=seed,
                                    columns=columns)
        long = long.merge(intervals[["model", "dataset", "metric", "lo", "hi"]], how="left",
                          on=["model", "dataset", "metric"])
        long["tied"] = _tied_with_best(long, results.per_image, columns, resamples, seed, alpha)
    return long


def _spreads(long: pd.DataFrame, summary: pd.DataFrame, columns: Catalogue) -> pd.Series:
    """The spread of each row whose figure declares one (its ``upper`` figure over it); NaN elsewhere."""
    spread = pd.Series(np.nan, index=long.index)
    rows = summary.drop_duplicates(["model", "dataset"]).set_index(["model", "dataset"])
    for metric in long["metric"].unique():
        column = columns.get(metric)
        declared = column.spread if column is not None else None
        if declared is None or declared.upper not in rows.columns:
            continue
        mine = long["metric"] == metric
        keys = pd.MultiIndex.from_frame(long.loc[mine, ["model", "dataset"]])
        upper = pd.to_numeric(rows[declared.upper], errors="coerce").reindex(keys).to_numpy()
        spread[mine] = upper / long.loc[mine, "value"].to_numpy()
    return spread


def noisy_spreads(long: pd.DataFrame, columns: Catalogue) -> list[str]:
    """A warning for each figure whose spread exceeds what its declaration calls noisy."""
    if "spread" not in long.columns:
        return []
    warnings = []
    for row in long[long["spread"].notna()].itertuples():
        declared = columns.get(row.metric).spread
        if row.spread > declared.noisy:
            warnings.append(f"Warning: {row.metric} of {row.model} on {row.dataset} was timed with a spread "
                            f"{declared.label} of {row.spread:.2f} (above {declared.noisy:g}): the timing was "
                            "noisy (a busy machine, or too few iterations); measure it again before comparing")
    return warnings


def _best(long: pd.DataFrame, columns: Catalogue) -> pd.Series:
    """The best value of each (dataset, metric) with a direction, when its values are not all equal."""
    directed = long["metric"].map(lambda m: columns.higher_is_better(m) is not None)
    signs = long["metric"].map(lambda m: _sign(columns.get(m)))
    score = (long["value"] * signs).groupby([long["dataset"], long["metric"]])
    best = long["value"].mul(signs).eq(score.transform("max")) & score.transform("nunique").gt(1)
    return best & directed


def _tied_with_best(long: pd.DataFrame, per_image: pd.DataFrame, columns: Catalogue, resamples: int,
                    seed: int, alpha: float) -> pd.Series:
    tied = pd.Series(False, index=long.index)
    testable = set(bootstrappable(per_image, columns))
    if not testable:
        return tied
    images = dict(list(per_image.groupby(["model", "dataset"])))
    for (dataset, metric), rows in long.groupby(["dataset", "metric"]):
        best = rows.loc[rows["best"], "model"]
        if metric not in testable or best.empty or (best.iloc[0], dataset) not in images:
            continue
        others = rows.loc[~rows["best"] & rows["value"].notna(), "model"]
        for index, model in others.items():
            if (model, dataset) in images:
                test = paired_test(images[(best.iloc[0], dataset)], images[(model, dataset)], metric,
                                   resamples=resamples, seed=seed, columns=columns)
                tied[index] = test.p_value >= alpha
    return tied


def model_order(long: pd.DataFrame, sort: str, columns: Catalogue) -> list[str]:
    """Models from best to worst by ``sort`` averaged over datasets (highest first when it has no
    direction); missing values last."""
    rows = long[long["metric"] == sort]
    if rows.empty:
        raise UserError(f"cannot sort by {sort!r}: not among the metrics "
                        f"{', '.join(long['metric'].unique())}", field="sort")
    score = (rows["value"] * _sign(columns.get(sort))).groupby(rows["model"], sort=False).mean()
    return list(score.sort_values(ascending=False, na_position="last", kind="stable").index)


def leaderboard(results: RunResults, metrics: Sequence[str] | None = None, *, sort: str = "mIoU",
                ci: bool = False, resamples: int = 1000, seed: int = 0,
                alpha: float = 0.05) -> pd.DataFrame:
    """One row per model, columns (dataset, metric), stored values (fractions); sorted by ``sort``.

    With ``ci``, each metric that can be bootstrapped is followed by
    ``<metric>_lo`` and ``<metric>_hi``: its 95% image-level bootstrap interval.
    """
    long = leaderboard_long(results, metrics, ci=ci, resamples=resamples, seed=seed, alpha=alpha)
    return _wide(long, model_order(long, sort, results_catalogue(results)))


def _wide(long: pd.DataFrame, order: list[str]) -> pd.DataFrame:
    """The long leaderboard pivoted: rows ``order``, columns (dataset, metric), intervals as ``<metric>_lo/_hi``,
    spreads as ``<metric>_spread``."""
    stats = [s for s in ("value", "lo", "hi", "spread") if s in long.columns]
    wide = long.pivot(index="model", columns=["dataset", "metric"], values=stats)
    wide.columns = pd.MultiIndex.from_tuples(
        [(d, m if s == "value" else f"{m}_{s}") for s, d, m in wide.columns], names=["dataset", "metric"])
    columns = [(d, m + suffix) for d in long["dataset"].unique() for m in long["metric"].unique()
               for suffix in ("", "_lo", "_hi", "_spread")
               if (d, m + suffix) in wide.columns and (not suffix or wide[(d, m + suffix)].notna().any())]
    return wide.loc[order, columns]


def per_class_table(results: RunResults, metric: str = "IoU") -> pd.DataFrame:
    """Rows (dataset, class_id, class_name), one column per model: the per-class ``metric`` as stored (clean
    images)."""
    per_class = results.clean().per_class
    if metric not in per_class.columns:
        declared = [c.name for c in results_catalogue(results).table("per_class")
                    if c.direction != "neither" and c.name in per_class.columns]
        raise UserError(f"no per-class column {metric!r}; present: {', '.join(declared)}",
                        field="per_class_metric")
    wide = per_class.pivot(index=["dataset", "class_id", "class_name"], columns="model", values=metric)
    return wide[list(per_class["model"].unique())].sort_index(level=["dataset", "class_id"])


def published_table(summary: pd.DataFrame) -> pd.DataFrame:
    """Published figures (``published_*`` columns) beside the measured mIoU; empty when there are none."""
    columns = [c for c in summary.columns if c.startswith(PUBLISHED_PREFIX)]
    if not columns or "mIoU" not in summary.columns:
        return pd.DataFrame()
    rows = summary[summary[columns].notna().any(axis=1)]
    table = rows[["model", "dataset", *columns, "mIoU"]].reset_index(drop=True)
    if f"{PUBLISHED_PREFIX}mIoU" in columns:
        table["delta_mIoU"] = table["mIoU"] - table[f"{PUBLISHED_PREFIX}mIoU"]
    return table


def _class_names(results: RunResults, model: str, dataset: str) -> dict[int, str]:
    """class id -> class name of a (model, dataset), from its per-class rows."""
    rows = results.per_class
    if rows.empty or "class_name" not in rows.columns:
        return {}
    rows = rows[(rows["model"] == model) & (rows["dataset"] == dataset)]
    return {int(i): str(n) for i, n in zip(rows["class_id"], rows["class_name"])}


def top_confusions(results: RunResults, top: int = TOP_CONFUSIONS) -> pd.DataFrame:
    """The ``top`` largest off-diagonal cells of each (model, dataset)'s confusion matrix, most pixels first.

    Columns: model, dataset, label_class_id, label_class, predicted_class_id,
    predicted_class, pixels, share (of the label class's labelled pixels, a fraction).
    Empty when the runs hold no confusion rows. Clean images only.
    """
    results = results.clean()
    names = ["model", "dataset", "label_class_id", "label_class", "predicted_class_id", "predicted_class",
             "pixels", "share"]
    confusion = results.confusion
    if confusion.empty:
        return pd.DataFrame(columns=names)
    totals = confusion.groupby(["model", "dataset", "label_class_id"], sort=False)["pixels"].transform("sum")
    rows = confusion.assign(share=confusion["pixels"] / totals)
    rows = rows[(rows["label_class_id"] != rows["predicted_class_id"]) & (rows["pixels"] > 0)]
    rows = rows.sort_values(["pixels", "label_class_id", "predicted_class_id"], ascending=[False, True, True],
                            kind="stable")
    frames = []
    for (model, dataset), cell in rows.groupby(["model", "dataset"], sort=False):
        cell = cell.head(top).copy()
        label = _class_names(results, model, dataset)
        cell["label_class"] = [label.get(int(i), str(i)) for i in cell["label_class_id"]]
        cell["predicted_class"] = [label.get(int(i), str(i)) for i in cell["predicted_class_id"]]
        frames.append(cell[names])
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=names)


def confusion_matrix(results: RunResults, model: str, dataset: str) -> pd.DataFrame:
    """A (model, dataset)'s confusion matrix in pixels: rows label class id, columns predicted class id,
    over the classes of its per-class rows and of its confusion rows, on the clean images."""
    results = results.clean()
    confusion = results.confusion
    rows = confusion[(confusion["model"] == model) & (confusion["dataset"] == dataset)]
    ids = sorted(set(_class_names(results, model, dataset)) | set(rows["label_class_id"].astype(int))
                 | set(rows["predicted_class_id"].astype(int)))
    matrix = rows.pivot_table(index="label_class_id", columns="predicted_class_id", values="pixels",
                              aggfunc="sum", fill_value=0)
    return matrix.reindex(index=ids, columns=ids, fill_value=0).astype(float)


def _calibration(results: RunResults) -> pd.DataFrame:
    """The reliability diagrams' bins (calibration.parquet); empty for runs without them."""
    table = getattr(results, "calibration", None)
    needed = {"model", "dataset", "lower", "upper", "pixels", "accuracy", "mean_confidence"}
    if not isinstance(table, pd.DataFrame) or table.empty or not needed <= set(table.columns):
        return pd.DataFrame()
    return table


def conventions(results: RunResults) -> list[str]:
    """One line per dataset: images, classes, ignore index, image size, and the metric options."""
    records = cell_records(results)
    summary = results.summary
    lines = []
    for dataset in summary["dataset"].unique():
        phrases = list(dict.fromkeys(_convention(r) for (_, d), r in records.items() if d == dataset))
        images = summary.loc[summary["dataset"] == dataset].get("num_images", pd.Series(dtype=float))
        head = f"{dataset}: {int(images.max())} images" if images.notna().any() else dataset
        if len(phrases) > 1:
            lines.append(f"{head}; differs between models: {' | '.join(phrases)}")
        elif phrases:
            lines.append(f"{head}, {phrases[0]}")
    return lines


def _convention(record: dict[str, Any]) -> str:
    options = record.get("metric_options", {})
    accuracy = options.get("accuracy", {})
    data = record.get("settings", {}).get("dataset", {})
    parts = []
    if "num_classes" in accuracy:
        parts.append(f"{accuracy['num_classes']} classes")
    if "ignore_index" in accuracy:
        parts.append(f"ignore index {accuracy['ignore_index']}")
    if "height" in data and "width" in data:
        parts.append(f"{data['height']}x{data['width']} px")
    # whether a group applied to the model (and why not) is no setting: a not-applicable group is reported
    # elsewhere, and a model without probabilities must not make the calibration settings "differ"
    not_settings = ("num_classes", "ignore_index", "applicable", "reason", "why_not_applicable")
    for group, values in options.items():
        shown = [f"{k}={v}" for k, v in values.items() if k not in not_settings and _is_setting(v)]
        if group != "accuracy" and shown:
            parts.append(f"{group} {', '.join(shown)}")
    return ", ".join(parts)


def _is_setting(value: Any) -> bool:
    """A number or a one-word value (``diagonal``, ``3px``); option texts that describe a definition are not."""
    return isinstance(value, (int, float)) or (isinstance(value, str) and value.strip() != ""
                                               and not any(c.isspace() for c in value))


def pareto_front(cost: np.ndarray, value: np.ndarray) -> np.ndarray:
    """True for the points that no other point beats: lower or equal cost and higher or equal value, one strictly."""
    cost, value = np.asarray(cost, dtype=float), np.asarray(value, dtype=float)
    no_worse = (cost[None, :] <= cost[:, None]) & (value[None, :] >= value[:, None])
    better = (cost[None, :] < cost[:, None]) | (value[None, :] > value[:, None])
    return ~(no_worse & better).any(axis=1)


# ---------------------------------------------------------------- rendering: text tables

@dataclass
class Cell:
    text: str
    bold: bool = False
    tied: bool = False  # not significantly different from the best: marked TIED_MARK


@dataclass
class TextTable:
    """Header and rows of formatted cells; ``groups`` span header columns (label, count), left to right."""

    title: str
    header: list[str]
    rows: list[list[Cell]]
    groups: list[tuple[str, int]] = field(default_factory=list)
    labels: int = 1  # leading columns that name the row


def format_value(column: Column | None, value: float | str, decimals: int) -> str:
    """A fraction in percent, a figure with a ``shown_unit`` in it; other numbers as stored, millions and more
    with a suffix (M, G, T)."""
    if isinstance(value, str):
        return value
    if pd.isna(value):
        return "-"
    if column is not None and (column.percent or column.shown_unit):
        return f"{column.shown(value):.{decimals}f}"
    for size, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M")):
        if abs(value) >= size:
            return f"{value / size:.{decimals}f}{suffix}"
    return f"{value:.{decimals}f}"


def column_header(name: str, column: Column | None) -> str:
    """The name and, but for fractions (the legend says %), its unit: ``mHD95 [px]``."""
    unit = _unit_label(column)
    return f"{name} [{unit}]" if unit and unit != "%" else name


def _leaderboard_text(long: pd.DataFrame, order: list[str], columns: Catalogue, decimals: int,
                      ci_style: CiStyle, title: str, marks: dict[str, str]) -> TextTable:
    """The leaderboard's cells; a figure with a measured spread is followed by a column of it (p90/p50);
    ``marks``: the model's mark (:func:`trained_marks`) after its name."""
    spread = long["spread"] if "spread" in long.columns else pd.Series(np.nan, index=long.index)
    spreads = {m for m in long["metric"].unique() if spread[long["metric"] == m].notna().any()}

    def cells(row: pd.Series | None, metric: str) -> list[Cell]:
        shown = [Cell("-") if row is None else _value_cell(row, columns.get(metric), decimals, ci_style)]
        if metric in spreads:
            value = np.nan if row is None else row["spread"]
            shown.append(Cell("-" if pd.isna(value) else f"{value:.2f}"))
        return shown

    def headers(metric: str) -> list[str]:
        return [column_header(metric, columns.get(metric)), *([columns.get(metric).spread.label]
                                                               if metric in spreads else [])]
    return _model_grid(long, order, marks, title, cells, headers)


def _model_grid(long: pd.DataFrame, order: list[str], marks: dict[str, str], title: str,
                cells: Callable[[pd.Series | None, str], list[Cell]],
                headers: Callable[[str], list[str]]) -> TextTable:
    """The long table ``long`` (model, dataset, metric, ...) as text: a row per model of ``order`` (its name
    with its mark), a column group per dataset, in it the ``cells`` of each metric's row (None where ``long``
    has none) under its ``headers``."""
    datasets, metrics = list(long["dataset"].unique()), list(long["metric"].unique())
    indexed = long.set_index(["model", "dataset", "metric"])
    rows = [[Cell(model + marks.get(model, ""))]
            + [cell for dataset in datasets for metric in metrics
               for cell in cells(indexed.loc[(model, dataset, metric)]
                                 if (model, dataset, metric) in indexed.index else None, metric)]
            for model in order]
    names = [name for metric in metrics for name in headers(metric)]
    return TextTable(title, ["model"] + names * len(datasets), rows,
                     [("", 1)] + [(dataset, len(names)) for dataset in datasets])


def _value_cell(row: pd.Series, column: Column | None, decimals: int, ci_style: CiStyle) -> Cell:
    text = format_value(column, row["value"], decimals)
    if pd.notna(row.get("lo", np.nan)) and pd.notna(row["value"]):
        if ci_style == "pm":
            half = (row["hi"] - row["lo"]) / 2
            text += f" ± {column.shown(half) if column is not None else half:.{decimals}f}"
        else:
            text += f" [{format_value(column, row['lo'], decimals)}, {format_value(column, row['hi'], decimals)}]"
    return Cell(text, bold=bool(row["best"]), tied=bool(row.get("tied", False)))


def _per_class_texts(results: RunResults, metric: str, order: list[str], columns: Catalogue,
                     decimals: int, marks: dict[str, str]) -> dict[str, TextTable]:
    """One table per dataset: a row per class, a column per model (its name with its mark from
    :func:`trained_marks`); bold the best of each row."""
    if results.per_class.empty:
        return {}
    wide = per_class_table(results, metric)
    column = columns.get(metric, "per_class")
    directed = column is not None and column.direction != "neither"
    unit = _unit_label(column)
    tables = {}
    for dataset in results.summary["dataset"].unique():
        rows = wide.xs(dataset, level="dataset")
        models = [m for m in order if m in rows.columns and rows[m].notna().any()]
        scores = rows[models] * _sign(column)
        best = scores.eq(scores.max(axis=1), axis=0) & (scores.nunique(axis=1) > 1).to_numpy()[:, None]
        body = [[Cell(str(key[1]))] + [Cell(format_value(column, rows.loc[key, m], decimals),
                                            bold=directed and bool(best.loc[key, m])) for m in models]
                for key in rows.index]
        title = f"Per-class {metric}{f' ({unit})' if unit else ''}: {dataset}"
        tables[dataset] = TextTable(title, ["class", *(m + marks.get(m, "") for m in models)], body)
    return tables


def _confusion_texts(results: RunResults, order: list[str], decimals: int) -> dict[tuple[str, str], TextTable]:
    """One table per (model, dataset) with confusion rows: its largest off-diagonal cells."""
    top = top_confusions(results)
    tables = {}
    for dataset in results.summary["dataset"].unique():
        for model in order:
            rows = top[(top["model"] == model) & (top["dataset"] == dataset)]
            if rows.empty:
                continue
            body = [[Cell(row.label_class), Cell(row.predicted_class), Cell(_count(row.pixels, decimals)),
                     Cell(f"{100 * row.share:.{decimals}f}")] for row in rows.itertuples()]
            tables[(model, dataset)] = TextTable(
                f"Top confusions: {model} on {dataset}",
                ["label class", "predicted as", "pixels", "share of the label class's pixels (%)"], body, labels=2)
    return tables


def _count(value: float, decimals: int) -> str:
    """A pixel count: whole below a million, else with a suffix (M, G, T)."""
    return f"{int(value)}" if abs(value) < 1e6 else format_value(None, float(value), decimals)


def _published_text(summary: pd.DataFrame, columns: Catalogue, decimals: int) -> TextTable | None:
    table = published_table(summary)
    if table.empty:
        return None
    figures = [c for c in table.columns if c not in ("model", "dataset")]
    rows = [[Cell(row["model"]), Cell(row["dataset"])]
            + [Cell(format_value(columns.get(c.removeprefix("delta_")), row[c], decimals)) for c in figures]
            for _, row in table.iterrows()]
    header = ["model", "dataset"] + [c.replace("delta_", "Δ ").replace(PUBLISHED_PREFIX, "published ")
                                     for c in figures]
    return TextTable("Published against measured (%)", header, rows, labels=2)


def _legend(ci: bool, resamples: int, alpha: float, long: pd.DataFrame, columns: Catalogue,
            marks: dict[str, str]) -> str:
    """What the leaderboard's marks, units and spreads mean, and the notes the shown figures declare."""
    text = ("Fractions in %, other figures in the unit in brackets after their name. "
            "Bold: the best of each column.")
    if ci:
        text += (f" a ± b: the value and half the width of its 95% image-level bootstrap interval "
                 f"({resamples} resamples). {TIED_MARK}: not significantly different from the best "
                 f"(paired permutation test over images, p ≥ {alpha}).")
    shown = [columns.get(m) for m in long["metric"].unique() if columns.get(m) is not None]
    if "spread" in long.columns:
        text += "".join(f" {c.spread.label}: the spread of {c.name}, {c.spread.upper} over it (above "
                        f"{c.spread.noisy:g}: a noisy timing)." for c in shown
                        if c.spread is not None and long.loc[long["metric"] == c.name, "spread"].notna().any())
    text += "".join(f" {note}." for note in dict.fromkeys(c.note for c in shown if c.note))
    return text + (f" {trained_legend(marks)}." if marks else "")


def trained_marks(summary: pd.DataFrame) -> dict[str, str]:
    """The mark after each model's name from the summary's ``trained``: UNTRAINED_MARK for random weights
    (False), UNKNOWN_TRAINING_MARK when not known (null); none for trained models, nor for runs whose
    summary predates the column."""
    if "trained" not in summary.columns:
        return {}
    marks: dict[str, str] = {}
    for model, trained in zip(summary["model"], summary["trained"]):
        mark = UNTRAINED_MARK if str(trained) == "False" else UNKNOWN_TRAINING_MARK if pd.isna(trained) else ""
        if mark and marks.get(model) != UNTRAINED_MARK:
            marks[model] = mark
    return marks


def trained_legend(marks: dict[str, str]) -> str:
    """The legend of the marks that :func:`trained_marks` gave."""
    return "; ".join(text for mark, text in TRAINED_LEGEND.items() if mark in marks.values())


# ---------------------------------------------------------------- rendering: formats

def to_markdown(table: TextTable) -> str:
    header = _flat_header(table)
    lines = [f"### {table.title}", "", "| " + " | ".join(map(_md_escape, header)) + " |",
             "|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|"]
    for row in table.rows:
        lines.append("| " + " | ".join(_md_cell(c) for c in row) + " |")
    return "\n".join(lines) + "\n"


def _flat_header(table: TextTable) -> list[str]:
    spans = [label for label, count in table.groups for _ in range(count)] or [""] * len(table.header)
    return [f"{g}/{h}" if g and len({s for s in spans if s}) > 1 else h
            for g, h in zip(spans, table.header)]


def _md_escape(text: str) -> str:
    return text.replace("|", r"\|")


def _md_cell(cell: Cell) -> str:
    text = _md_escape(cell.text)
    text = f"**{text}**" if cell.bold else text
    return text + f" {TIED_MARK}" if cell.tied else text


LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                 "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                 "<": r"\textless{}", ">": r"\textgreater{}", "±": r"$\pm$", "†": r"$^\dagger$",
                 "‡": r"$^\ddagger$", "≥": r"$\geq$", "Δ": r"$\Delta$"}


def latex_escape(text: str) -> str:
    """Text as LaTeX source: special characters escaped, ±, †, ‡, ≥, Δ as math."""
    return "".join(LATEX_SPECIAL.get(char, char) for char in text)


# graphicx's \resizebox sees the table's natural \width: a table wider than the text shrinks to
# fit, a narrower one keeps its size.
SHRINK_TO_FIT = r"\resizebox{\ifdim\width>\linewidth\linewidth\else\width\fi}{!}{%"


def to_latex(table: TextTable, caption: str, label: str) -> str:
    spec = "l" * table.labels + "r" * (len(table.header) - table.labels)
    lines = [r"\begin{table}[t]", r"\centering", rf"\caption{{{latex_escape(caption)}}}",
             rf"\label{{tab:{re.sub(r'[^A-Za-z0-9-]+', '-', label)}}}",
             SHRINK_TO_FIT, rf"\begin{{tabular}}{{{spec}}}", r"\toprule"]
    if any(g for g, _ in table.groups):
        lines += _latex_groups(table.groups)
    lines.append(" & ".join(latex_escape(h) for h in table.header) + r" \\")
    lines.append(r"\midrule")
    for row in table.rows:
        lines.append(" & ".join(_latex_cell(c) for c in row) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def _latex_groups(groups: list[tuple[str, int]]) -> list[str]:
    heads, rules, start = [], [], 1
    for label, count in groups:
        heads.append(rf"\multicolumn{{{count}}}{{c}}{{{latex_escape(label)}}}" if label else
                     " & ".join([""] * count))
        if label:
            rules.append(rf"\cmidrule(lr){{{start}-{start + count - 1}}}")
        start += count
    return [" & ".join(heads) + r" \\", " ".join(rules)]


def _latex_cell(cell: Cell) -> str:
    text = latex_escape(cell.text)
    text = rf"\textbf{{{text}}}" if cell.bold else text
    return text + latex_escape(TIED_MARK) if cell.tied else text


def to_html(table: TextTable) -> str:
    lines = ["<table>", "<thead>"]
    if any(g for g, _ in table.groups):
        lines.append("<tr>" + "".join(f'<th colspan="{n}">{html.escape(g)}</th>' for g, n in table.groups)
                     + "</tr>")
    lines.append("<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in table.header) + "</tr>")
    lines += ["</thead>", "<tbody>"]
    for row in table.rows:
        lines.append("<tr>" + "".join(_html_cell(c) for c in row) + "</tr>")
    lines += ["</tbody>", "</table>"]
    return "\n".join(lines)


def _html_cell(cell: Cell) -> str:
    text = html.escape(cell.text)
    text = f"<b>{text}</b>" if cell.bold else text
    return f"<td>{text}<sup>{TIED_MARK}</sup></td>" if cell.tied else f"<td>{text}</td>"


# ---------------------------------------------------------------- documents

@dataclass
class ReportOptions:
    metrics: Sequence[str] | None = None
    sort: str = "mIoU"
    ci: bool = False
    ci_style: CiStyle = "pm"
    decimals: int = 2
    per_class_metric: str = "IoU"
    resamples: int = 1000
    seed: int = 0
    alpha: float = 0.05
    galleries: dict[str, str] = field(default_factory=dict)
    """HTML: links (text -> href) to galleries of saved predictions (``gallery.worst_galleries``)."""


@dataclass
class Document:
    """The rendered tables of a report, and the notes that explain them."""

    title: str
    notes: list[str]  # the legend, one line of conventions per dataset, then warnings (noisy timings)
    leaderboard: TextTable
    per_class: dict[str, TextTable]  # by dataset
    published: TextTable | None
    missing: list[str]  # the run folders' cells that have no result here (:func:`missing_cells`)
    confusions: dict[tuple[str, str], TextTable] = field(default_factory=dict)  # by (model, dataset)
    models: list[str] = field(default_factory=list)  # the leaderboard's, best first
    robustness: RobustnessPart | None = None  # runs with corrupted rows (:func:`robustness_part`)

    def tables(self) -> list[TextTable]:
        return [self.leaderboard, *self.per_class.values(), *self.confusions.values(),
                *([self.published] if self.published else [])]


def render(results: RunResults, fmt: Format = "md", options: ReportOptions | None = None) -> str:
    """The report as one document: Markdown, CSV (the leaderboard alone), LaTeX or HTML."""
    options = options or ReportOptions()
    if fmt not in ("md", "csv", "tex", "html"):
        raise UserError(f"unknown format {fmt!r}; expected md, csv, tex or html", field="format")
    if results.summary.empty:
        raise UserError("no results to report: the run folders hold no complete cell")
    robustness, missing = robustness_part(results, options.decimals), missing_cells(results)
    results = results.clean()  # the sections but robustness show the clean images
    columns = results_catalogue(results)
    long = leaderboard_long(results, options.metrics, ci=options.ci, resamples=options.resamples,
                            seed=options.seed, alpha=options.alpha)
    order = model_order(long, options.sort, columns)
    marks = trained_marks(results.summary)
    if fmt == "csv":
        return _csv(long, order, columns, options.decimals, results.summary)
    title = results.manifest.get("suite_name", "segbench")
    legend = _legend(options.ci, options.resamples, options.alpha, long, columns, marks)
    document = Document(
        title, [legend, *conventions(results), *noisy_spreads(long, columns)],
        _leaderboard_text(long, order, columns, options.decimals, options.ci_style, f"Leaderboard: {title}",
                          marks),
        _per_class_texts(results, options.per_class_metric, order, columns, options.decimals, marks),
        _published_text(results.summary, columns, options.decimals), missing,
        _confusion_texts(results, order, options.decimals), order, robustness)
    if fmt == "md":
        return _markdown_document(document)
    if fmt == "tex":
        return _latex_document(document)
    return _html_document(document, results, columns, options)


def _csv(long: pd.DataFrame, order: list[str], columns: Catalogue, decimals: int, summary: pd.DataFrame) -> str:
    """The leaderboard, wide, in display units (fractions in percent, other figures in their unit), rounded;
    with ``trained`` (True, False or unknown) where the summary records it."""
    wide = _wide(long, order)
    bases = [columns.get(m.removesuffix("_lo").removesuffix("_hi")) for _, m in wide.columns]
    wide = (wide * [c.shown(1.0) if c is not None else 1.0 for c in bases]).round(decimals)
    wide.columns = [f"{d}/{m}" for d, m in wide.columns]
    if "trained" in summary.columns:
        known = {model: str(trained) for model, trained in zip(summary["model"], summary["trained"])
                 if pd.notna(trained)}
        wide.insert(0, "trained", [known.get(model, "unknown") for model in wide.index])
    return wide.rename_axis("model").to_csv()


def _markdown_document(document: Document) -> str:
    parts = [f"# segbench report: {document.title}", "", document.notes[0], ""]
    parts += [f"- {line}" for line in document.notes[1:] + document.missing] + [""]
    parts += [to_markdown(t) for t in document.tables()] + _robustness_markdown(document.robustness)
    return "\n".join(parts)


def _latex_document(document: Document) -> str:
    """Table floats to paste into a paper (they need \\usepackage{booktabs} and graphicx)."""
    legend, *lines = document.notes
    caption = " ".join([document.leaderboard.title + ".", legend, *(line + "." for line in lines)])
    parts = ["% segbench report: the tables need \\usepackage{booktabs,graphicx}",
             *(f"% {line}" for line in document.missing),
             to_latex(document.leaderboard, caption, document.leaderboard.title)]
    parts += [to_latex(t, t.title + ". Bold: the best of each row.", t.title)
              for t in document.per_class.values()]
    parts += [to_latex(t, t.title + ": the largest off-diagonal cells of the confusion matrix.", t.title)
              for t in document.confusions.values()]
    if document.published:
        parts.append(to_latex(document.published, document.published.title + ".", "published"))
    return "\n".join(parts + _robustness_latex(document.robustness))


HTML_STYLE = """
body { font-family: sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { padding: 0.25em 0.7em; text-align: right; border-bottom: 1px solid #ddd; }
th { border-bottom: 2px solid #444; }
th[colspan] { text-align: center; border-bottom: 1px solid #444; }
td:first-child, th:first-child { text-align: left; }
img { max-width: 100%; display: block; margin: 0.5em 0; }
.note { color: #555; }
"""


def _html_document(document: Document, results: RunResults, columns: Catalogue, options: ReportOptions) -> str:
    legend, *lines = document.notes
    body = [f"<h1>segbench report: {html.escape(document.title)}</h1>",
            f'<p class="note">{html.escape(legend)}</p>',
            "<ul>" + "".join(f"<li>{html.escape(line)}</li>" for line in lines + document.missing) + "</ul>",
            f"<h2>{html.escape(document.leaderboard.title)}</h2>", to_html(document.leaderboard),
            "<h2>Accuracy versus latency</h2>", _scatter_section(results.summary, columns)]
    marks = trained_marks(results.summary)
    for dataset, table in document.per_class.items():
        models = [m for m in document.models if m + marks.get(m, "") in table.header[1:]]
        body += [f"<h2>{html.escape(table.title)}</h2>",
                 _png(_per_class_figure(results, dataset, columns.get(options.per_class_metric, "per_class"),
                                        options.per_class_metric, models)), to_html(table)]
    for (model, dataset), table in document.confusions.items():
        body += [f"<h2>Confusions: {html.escape(model)} on {html.escape(dataset)}</h2>",
                 _confusion_section(results, model, dataset), f"<h3>{html.escape(table.title)}</h3>",
                 to_html(table)]
    calibration = _calibration(results)
    for dataset in results.summary["dataset"].unique():
        rows = calibration[calibration["dataset"] == dataset] if not calibration.empty else calibration
        if not rows.empty:
            models = [m for m in _models_of(document) if m in set(rows["model"])]
            body += [f"<h2>Reliability: {html.escape(dataset)}</h2>",
                     '<p class="note">Bars: the accuracy of the pixels whose top-label confidence falls in each '
                     "bin; dots: at the bin's mean confidence; dashed: perfect calibration.</p>",
                     _png(_reliability_figure(results, rows, dataset, models, columns, options.decimals))]
    if document.published:
        body += [f"<h2>{html.escape(document.published.title)}</h2>", to_html(document.published)]
    body += _robustness_html(document.robustness)
    if options.galleries:
        body += ["<h2>Worst images</h2>",
                 "<ul>" + "".join(f'<li><a href="{html.escape(href)}">{html.escape(text)}</a></li>'
                                  for text, href in options.galleries.items()) + "</ul>"]
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>segbench report: {html.escape(document.title)}</title>\n"
            f"<style>{HTML_STYLE}</style>\n</head>\n<body>\n" + "\n".join(body) + "\n</body>\n</html>\n")


def _models_of(document: Document) -> list[str]:
    """The models of the leaderboard, best first."""
    return document.models


# ---------------------------------------------------------------- figures (matplotlib, embedded)

def _png(figure: Any) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img alt="figure" src="data:image/png;base64,{data}">'


def _per_class_figure(results: RunResults, dataset: str, column: Column | None, metric: str,
                      models: list[str]) -> Any:
    from matplotlib.figure import Figure

    rows = results.per_class[results.per_class["dataset"] == dataset].sort_values("class_id")
    classes = list(rows["class_name"].unique())
    scale = column.shown(1.0) if column is not None else 1.0
    figure = Figure(figsize=(min(24, 4 + 0.2 * len(classes) * (len(models) + 1)), 4), layout="constrained")
    axes = figure.subplots()
    width = 0.8 / max(1, len(models))
    for i, model in enumerate(models):
        values = rows[rows["model"] == model].set_index("class_name")[metric].reindex(classes)
        axes.bar(np.arange(len(classes)) + (i - (len(models) - 1) / 2) * width, scale * values,
                 width, label=model)
    axes.set_xticks(np.arange(len(classes)), classes, rotation=45, ha="right")
    unit = _unit_label(column)
    axes.set_ylabel(f"{metric} ({unit})" if unit else metric)
    figure.legend(loc="outside upper center", fontsize="small", ncols=min(len(models), 6))
    axes.grid(axis="y", alpha=0.3)
    return figure


def _scatter_axes(summary: pd.DataFrame, columns: Catalogue) -> tuple[str, str] | None:
    """The plot's accuracy and latency: the leaderboard's first higher-is-better fraction and its first
    latency (lower-is-better, in ms) with values; None when either is missing."""
    shown = [columns.get(name) for name in default_metrics(summary, columns)]
    accuracy = [c.name for c in shown if c.percent and c.direction == "higher"]
    latency = [c.name for c in shown if c.unit == "ms" and c.direction == "lower" and summary[c.name].notna().any()]
    return (accuracy[0], latency[0]) if accuracy and latency else None


def _scatter_section(summary: pd.DataFrame, columns: Catalogue) -> str:
    axes = _scatter_axes(summary, columns)
    if axes is None:
        return ('<p class="note">No latency figures in these runs: the accuracy-versus-latency plot '
                "needs the efficiency pass of a suite (its <code>efficiency</code> section).</p>")
    accuracy, latency = axes
    timed = summary.dropna(subset=[latency, accuracy])
    return "\n".join(_png(_scatter_figure(timed[timed["dataset"] == d], d, columns.get(accuracy),
                                          columns.get(latency)))
                     for d in timed["dataset"].unique())


def axis_label(column: Column) -> str:
    """A plot axis of ``column``: what it is in words, its name and the unit shown."""
    unit = _unit_label(column)
    return textwrap.fill(f"{column.meaning} ({column.name}{', ' + unit if unit else ''})", 60)


def _scatter_figure(rows: pd.DataFrame, dataset: str, accuracy_column: Column, latency_column: Column) -> Any:
    from matplotlib.figure import Figure

    accuracy, latency = accuracy_column.name, latency_column.name
    rows = rows.sort_values(latency)
    front = pareto_front(rows[latency].to_numpy(), rows[accuracy].to_numpy())
    figure = Figure(figsize=(6, 4), layout="constrained")
    axes = figure.subplots()
    axes.margins(0.12)
    axes.scatter(rows[latency], 100 * rows[accuracy], color="tab:blue", zorder=3)
    axes.step(rows.loc[front, latency], 100 * rows.loc[front, accuracy], where="post", color="tab:red",
              label="Pareto front", zorder=2)
    axes.scatter(rows.loc[front, latency], 100 * rows.loc[front, accuracy], s=90, facecolors="none",
                 edgecolors="tab:red", zorder=4)
    marks = trained_marks(rows)
    for _, row in rows.iterrows():
        axes.annotate(str(row["model"]) + marks.get(row["model"], ""), (row[latency], 100 * row[accuracy]),
                      textcoords="offset points", xytext=(5, 5), fontsize="small")
    axes.set_xlabel(axis_label(latency_column))
    axes.set_ylabel(axis_label(accuracy_column))
    axes.set_title(f"Accuracy versus latency: {dataset}")
    axes.legend(fontsize="small")
    axes.grid(alpha=0.3)
    return figure


def _confusion_section(results: RunResults, model: str, dataset: str) -> str:
    """The row-normalised heatmap of a (model, dataset), with a note when it shows some classes only."""
    counts = confusion_matrix(results, model, dataset)
    shown = _most_confused(counts, HEATMAP_CLASSES)
    names = _class_names(results, model, dataset)
    section = [_png(_confusion_figure(counts, shown, names, model, dataset))]
    if len(shown) < len(counts):
        section.append(f'<p class="note">The {len(shown)} of {len(counts)} classes with the most confused '
                       "pixels (as label or as prediction) alone; each row is still a share of all of its "
                       "label class's pixels.</p>")
    return "\n".join(section)


def _most_confused(counts: pd.DataFrame, limit: int) -> list[int]:
    """All class ids when there are at most ``limit``; else the ``limit`` with the most off-diagonal pixels
    in their row and column, in class order."""
    ids = list(counts.index)
    if len(ids) <= limit:
        return ids
    values = counts.to_numpy()
    off = values.sum(axis=1) + values.sum(axis=0) - 2 * np.diag(values)
    ranked = sorted(range(len(ids)), key=lambda i: (-off[i], ids[i]))[:limit]
    return [ids[i] for i in sorted(ranked)]


def _confusion_figure(counts: pd.DataFrame, shown: list[int], names: dict[int, str], model: str,
                      dataset: str) -> Any:
    from matplotlib.figure import Figure

    labelled = counts.sum(axis=1)
    share = counts.div(labelled.where(labelled > 0), axis=0).loc[shown, shown].to_numpy()
    n = len(shown)
    side = min(16.0, 3.0 + 0.3 * n)
    figure = Figure(figsize=(side + 1.5, side), layout="constrained")
    axes = figure.subplots()
    image = axes.imshow(100 * share, cmap="Blues", vmin=0, vmax=100, interpolation="nearest")
    tick_names = [names.get(i, str(i)) for i in shown]
    size = "small" if n <= 20 else "x-small"
    axes.set_xticks(np.arange(n), tick_names, rotation=90, fontsize=size)
    axes.set_yticks(np.arange(n), tick_names, fontsize=size)
    axes.set_xlabel("predicted class")
    axes.set_ylabel("label class")
    some = f" ({n} of {len(counts)} classes)" if n < len(counts) else ""
    axes.set_title(f"Confusion (% of the label class's pixels): {model} on {dataset}{some}")
    if n <= 20:
        for (row, column), value in np.ndenumerate(share):
            if np.isfinite(value) and value >= 0.005:
                axes.text(column, row, f"{100 * value:.0f}", ha="center", va="center", fontsize="x-small",
                          color="white" if value > 0.5 else "black")
    figure.colorbar(image, ax=axes, shrink=0.8, label="% of the label class's pixels")
    return figure


def _reliability_figure(results: RunResults, rows: pd.DataFrame, dataset: str, models: list[str],
                        columns: Catalogue, decimals: int) -> Any:
    """One panel per model: accuracy per confidence bin, the bins' mean confidence, the diagonal; ECE in
    the panel's title when the summary has it."""
    from matplotlib.figure import Figure

    ncols = min(4, len(models))
    nrows = -(-len(models) // ncols)
    figure = Figure(figsize=(3.6 * ncols, 3.6 * nrows), layout="constrained")
    panels = np.atleast_1d(figure.subplots(nrows, ncols, sharex=True, sharey=True, squeeze=False)).ravel()
    summary = results.summary.set_index(["model", "dataset"])
    for axes, model in zip(panels, models):
        bins = rows[(rows["model"] == model) & (rows["pixels"] > 0)].sort_values("lower")
        axes.bar(bins["lower"], bins["accuracy"], width=bins["upper"] - bins["lower"], align="edge",
                 color="tab:blue", edgecolor="white", alpha=0.8, label="accuracy")
        axes.scatter(bins["mean_confidence"], bins["accuracy"], s=12, color="tab:red", zorder=3,
                     label="at mean confidence")
        axes.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect calibration")
        axes.set_xlim(0, 1)
        axes.set_ylim(0, 1)
        axes.set_xlabel("confidence")
        axes.set_ylabel("accuracy")
        title = model
        if "ECE" in summary.columns and (model, dataset) in summary.index:
            ece = summary.loc[(model, dataset), "ECE"]
            if pd.notna(ece):
                column = columns.get("ECE")
                unit = _unit_label(column)
                title += f" (ECE {format_value(column, ece, decimals)}{unit if unit in ('', '%') else ' ' + unit})"
        axes.set_title(title, fontsize="medium")
        axes.grid(alpha=0.3)
    for axes in panels[len(models):]:
        axes.set_visible(False)
    panels[0].legend(fontsize="x-small", loc="upper left")
    figure.suptitle(f"Reliability: {dataset}")
    return figure


# ---------------------------------------------------------------- robustness (corruption benchmarks)

@dataclass
class NotedTable:
    """A table, the sentence that explains it, and its numbered footnotes (why a figure is n/a)."""

    table: TextTable
    caption: str
    footnotes: list[str] = field(default_factory=list)


@dataclass
class RobustnessPart:
    """A report's robustness tables: the mCE leaderboard and a corruption x severity table per (model,
    dataset); ``summary``: the clean and corrupted rows the HTML plots, ``models`` best first."""

    leaderboard: NotedTable
    by_model: list[NotedTable]
    summary: pd.DataFrame
    models: list[str]
    accuracy: Column | None  # the declaration of the summary's mIoU

    def tables(self) -> list[NotedTable]:
        return [self.leaderboard, *self.by_model]


def robustness_catalogue(results: RunResults) -> Catalogue:
    """The declared figures of the run's robustness.parquet (their unit depends on its reference)."""
    return Catalogue(robustness_columns(corruption_reference(results.manifest)))


def robustness_long(results: RunResults) -> pd.DataFrame:
    """One row per (model, dataset, figure) of the robustness leaderboard (the figures declared
    ``leaderboard``: mCE, relative mCE, retention): value, best, note (why the value is NaN); empty when the
    run has no corrupted rows."""
    names = ["model", "dataset", "metric", "value", "best", "note"]
    if results.robustness.empty:
        return pd.DataFrame(columns=names)
    columns = robustness_catalogue(results)
    overall = results.robustness[results.robustness["corruption"] == OVERALL]
    figures = [c.name for c in columns if c.leaderboard]
    long = overall.melt(id_vars=["model", "dataset", "note"], value_vars=figures, var_name="metric",
                        value_name="value")
    long["value"] = long["value"].astype(float)
    long["note"] = long["note"].where(long["value"].isna())
    long["best"] = _best(long, columns)
    return long[names]


def _robustness_order(long: pd.DataFrame, columns: Catalogue) -> list[str]:
    """Models best first by the first figure of the robustness leaderboard (mCE)."""
    return model_order(long, long["metric"].iloc[0], columns)


def robustness_leaderboard(results: RunResults) -> pd.DataFrame:
    """One row per model, columns (dataset, figure): mCE, relative mCE and retention as stored, the lowest
    mCE first; empty when the run has no corrupted rows."""
    long = robustness_long(results)
    if long.empty:
        return pd.DataFrame()
    return _wide(long, _robustness_order(long, robustness_catalogue(results)))


def robustness_part(results: RunResults, decimals: int) -> RobustnessPart | None:
    """The robustness tables of a run with corrupted rows (all rows of ``results``, not the clean ones
    alone); None for a run without."""
    long = robustness_long(results)
    if long.empty:
        return None
    columns = robustness_catalogue(results)
    order = _robustness_order(long, columns)
    accuracy = results_catalogue(results).get("mIoU")
    return RobustnessPart(_robustness_leaderboard_text(results, long, order, columns, decimals),
                          _severity_texts(results, order, columns, accuracy, decimals), results.summary, order,
                          accuracy)


def _noted_cell(value: float, column: Column | None, decimals: int, note: Any, footnotes: list[str],
                bold: bool = False) -> Cell:
    """``value`` formatted; a NaN as n/a with the number of its ``note`` (added to ``footnotes`` when new)."""
    if pd.notna(value):
        return Cell(format_value(column, value, decimals), bold=bold)
    if not isinstance(note, str) or not note:
        return Cell("n/a")
    if note not in footnotes:
        footnotes.append(note)
    return Cell(f"n/a [{footnotes.index(note) + 1}]")


def _robustness_leaderboard_text(results: RunResults, long: pd.DataFrame, order: list[str], columns: Catalogue,
                                 decimals: int) -> NotedTable:
    """A row per model, a column group per dataset; bold the best of each column; the caption names the
    reference and defines the figures from their declarations."""
    marks = trained_marks(results.summary)
    footnotes: list[str] = []

    def cells(row: pd.Series | None, name: str) -> list[Cell]:
        if row is None:
            return [Cell("-")]
        return [_noted_cell(row["value"], columns.get(name), decimals, row["note"], footnotes, bool(row["best"]))]

    table = _model_grid(long, order, marks, f"Robustness: {results.manifest.get('suite_name', 'segbench')}",
                        cells, lambda name: [column_header(name, columns.get(name))])
    reference = corruption_reference(results.manifest)
    against = f"reference model {reference} (its mCE is 1)" if reference else "no reference model (unnormalised)"
    definitions = "; ".join(f"{c.name}, {c.meaning}" for c in columns)
    caption = (f"Robustness against corruptions, {against}: {definitions}. Fractions in %. Bold: the best of "
               "each column.")
    if marks:
        caption += f" {trained_legend(marks)}."
    return NotedTable(table, caption, footnotes)


def _severity_texts(results: RunResults, order: list[str], columns: Catalogue, accuracy: Column | None,
                    decimals: int) -> list[NotedTable]:
    """A corruption x severity table (:func:`_severity_text`) per (model, dataset) with corrupted rows."""
    summary, tables = results.summary, []
    for dataset in summary["dataset"].unique():
        corrupted = summary[(summary["dataset"] == dataset) & (summary["corruption"] != CLEAN)]
        grid = (list(corrupted["corruption"].unique()), sorted(int(s) for s in corrupted["severity"].unique()))
        tables += [_severity_text(results, model, dataset, grid, columns, accuracy, decimals)
                   for model in order if model in set(corrupted["model"])]
    return tables


def _severity_text(results: RunResults, model: str, dataset: str, grid: tuple[list[str], list[int]],
                   columns: Catalogue, accuracy: Column | None, decimals: int) -> NotedTable:
    """A row per corruption of ``grid`` (corruptions, severities): the model's mIoU on the clean images and at
    each severity (the summary's), then the figures robustness.parquet declares per corruption (CE, ...)."""
    corruptions, severities = grid
    summary, robustness = results.summary, results.robustness
    miou = summary[(summary["model"] == model) & (summary["dataset"] == dataset)].set_index(
        ["corruption", "severity"])["mIoU"]
    stored = robustness[(robustness["model"] == model)
                        & (robustness["dataset"] == dataset)].set_index("corruption")
    figures = [c for c in columns if not c.leaderboard]
    footnotes: list[str] = []
    body = []
    for corruption in corruptions:
        keys = [(CLEAN, 0)] + [(corruption, s) for s in severities]
        row = [Cell(corruption)] + [Cell(format_value(accuracy, miou.get(k, np.nan), decimals)) for k in keys]
        if corruption in stored.index:
            row += [_noted_cell(stored.loc[corruption, c.name], c, decimals, stored.loc[corruption, "note"],
                                footnotes) for c in figures]
        else:
            row += [Cell("-") for _ in figures]
        body.append(row)
    unit = _unit_label(accuracy)
    accuracy_label = f"mIoU ({unit})" if unit else "mIoU"
    header = ["corruption", "clean", *(f"severity {s}" for s in severities),
              *(column_header(c.name, c) for c in figures)]
    groups = [("", 1), (accuracy_label, 1 + len(severities)), ("", len(figures))]
    caption = (f"mIoU on the clean images and at each severity of each corruption, then "
               f"{', '.join(c.name for c in figures)} as the robustness leaderboard defines them.")
    return NotedTable(TextTable(f"Robustness: {model} on {dataset}, {accuracy_label} by corruption and severity",
                                header, body, groups), caption, footnotes)


def _footnote_lines(noted: NotedTable) -> list[str]:
    return [f"[{number}] {note}" for number, note in enumerate(noted.footnotes, 1)]


def _robustness_markdown(part: RobustnessPart | None) -> list[str]:
    if part is None:
        return []
    return ["## Robustness", ""] + ["\n\n".join([to_markdown(noted.table).rstrip("\n"), noted.caption,
                                                 *_footnote_lines(noted)]) + "\n" for noted in part.tables()]


def _robustness_latex(part: RobustnessPart | None) -> list[str]:
    if part is None:
        return []
    return [to_latex(noted.table, " ".join([noted.table.title + ".", noted.caption, *_footnote_lines(noted)]),
                     noted.table.title) for noted in part.tables()]


def _robustness_html(part: RobustnessPart | None) -> list[str]:
    if part is None:
        return []

    def noted_html(noted: NotedTable) -> list[str]:
        return [f"<h3>{html.escape(noted.table.title)}</h3>", to_html(noted.table),
                *(f'<p class="note">{html.escape(line)}</p>' for line in [noted.caption, *_footnote_lines(noted)])]

    body = ["<h2>Robustness</h2>", *noted_html(part.leaderboard)]
    for dataset in part.summary["dataset"].unique():
        rows = part.summary[part.summary["dataset"] == dataset]
        if (rows["corruption"] != CLEAN).any():
            body += [f"<h3>mIoU against severity: {html.escape(dataset)}</h3>",
                     _png(_robustness_figure(rows, dataset, [m for m in part.models if m in set(rows["model"])],
                                             part.accuracy))]
    for noted in part.by_model:
        body += noted_html(noted)
    return body


def _robustness_figure(rows: pd.DataFrame, dataset: str, models: list[str], accuracy: Column | None) -> Any:
    """One panel per corruption: a dataset's mIoU against severity (0: the clean images), a line per model."""
    from matplotlib.figure import Figure

    corruptions = [c for c in rows["corruption"].unique() if c != CLEAN]
    clean = rows[rows["corruption"] == CLEAN].set_index("model")["mIoU"]
    scale = accuracy.shown(1.0) if accuracy is not None else 1.0
    ncols = min(5, len(corruptions))
    nrows = -(-len(corruptions) // ncols)
    figure = Figure(figsize=(3.2 * ncols, 2.8 * nrows + 0.6), layout="constrained")
    panels = figure.subplots(nrows, ncols, sharex=True, sharey=True, squeeze=False).ravel()
    unit = _unit_label(accuracy)
    for index, (axes, corruption) in enumerate(zip(panels, corruptions)):
        for model in models:
            mine = rows[(rows["model"] == model) & (rows["corruption"] == corruption)].sort_values("severity")
            severities = [0, *mine["severity"].astype(int)]
            values = np.array([clean.get(model, np.nan), *mine["mIoU"]], dtype=float)
            axes.plot(severities, scale * values, marker="o", label=model)
        axes.set_title(corruption, fontsize="medium")
        axes.set_xticks(sorted({0, *rows["severity"].astype(int)}))
        axes.set_xlabel("severity (0: clean)")
        if index % ncols == 0:
            axes.set_ylabel(f"mIoU ({unit})" if unit else "mIoU")
        axes.grid(alpha=0.3)
    for axes in panels[len(corruptions):]:
        axes.set_visible(False)
    handles, labels = panels[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="outside lower center", fontsize="small", ncols=min(len(models), 6))
    figure.suptitle(f"mIoU against severity: {dataset}")
    return figure
