"""Run folders: atomic writes, the manifest, cell folders, and loading the tables back into pandas.

A cell's folder appears only once it is complete (written under a temporary
name, then renamed), so an interrupted run never leaves a cell that looks
complete. The run-level tables are rebuilt from the complete cells' folders
when a run starts and when it ends, not after each cell: during a run they hold
the cells complete when it started, each finished cell is in ``cells/<id>/`` at
once, and they hold every complete cell once the manifest says the run ended.
``load`` reads a run that has not ended (running, or killed) from its cell
folders, so it shows every cell complete so far.
A run folder is written by one run at a time: the run holds an advisory lock
on ``.lock`` inside it, which the operating system releases when the process
ends, however it ends.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd

from segbench.atomic import atomic_write_bytes, temporary_folder
from segbench.corruptions import CLEAN, robustness_table
from segbench.errors import UserError

MANIFEST = "manifest.json"
LOCK = ".lock"
ROW_TABLES = ("per_class", "per_image")  # every complete cell has them
EXTRA_TABLES = ("efficiency", "confusion", "calibration")  # a cell has them when it measured or computed them
TABLES = ("summary", *ROW_TABLES, *EXTRA_TABLES)
PREDICTIONS = "predictions"
ROBUSTNESS = "robustness"
CORRUPTION_CACHE = "corruption_cache"  # the default cache of corrupted images, beside cells/
CELL_KEYS = ("model", "dataset", "corruption", "severity")
"""The columns that identify a cell's rows in every table (clean cells: corruption ``none``, severity 0)."""


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n").encode())


def atomic_write_table(path: Path, frame: pd.DataFrame) -> None:
    if path.suffix == ".csv":
        atomic_write_bytes(path, frame.to_csv(index=False).encode())
    else:
        atomic_write_bytes(path, frame.to_parquet(index=False))


@dataclass
class CellOutput:
    """What one evaluated cell leaves behind."""

    record: dict[str, Any]  # cell.json: ids, settings, provenance, metric options, timing
    summary: dict[str, Any]
    per_class: pd.DataFrame
    per_image: pd.DataFrame
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)  # EXTRA_TABLES' rows this cell has
    predictions: Path | None = None  # a staging folder of prediction PNGs, moved to cells/<id>/predictions


class RunStore:
    """One run folder: ``manifest.json``, the run-level tables, and ``cells/<id>/``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.cells_dir = self.root / "cells"

    def manifest_path(self) -> Path:
        return self.root / MANIFEST

    def read_manifest(self) -> dict[str, Any]:
        path = self.manifest_path()
        if not self.root.is_dir():
            raise UserError("not a run folder (" + ("a file" if self.root.exists() else "no such folder") + ")",
                            source=str(self.root))
        if not path.exists():
            raise UserError("not a run folder (no manifest.json)", source=str(self.root))
        try:
            manifest = json.loads(path.read_bytes().decode("utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise UserError(f"manifest.json is unreadable or corrupt ({type(error).__name__}: "
                            f"{getattr(error, 'strerror', None) or error})", source=str(self.root)) from None
        if not isinstance(manifest, dict) or not isinstance(manifest.get("cells"), dict):
            raise UserError("manifest.json is not a segbench manifest (no 'cells' mapping)",
                            source=str(self.root))
        return manifest

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        atomic_write_json(self.manifest_path(), manifest)

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Create the run folder if needed and hold its lock; nothing is touched when that is refused.

        An existing folder must be a run folder (or empty): a segbench run never
        writes into, or cleans up, a folder of the user's. A second run into a
        folder in use is refused at once, naming the holder's pid.
        """
        if self.root.exists() and not self.root.is_dir():
            raise UserError("the run folder is a file, not a folder", source=str(self.root))
        if self.root.is_dir() and not self.manifest_path().exists() and any(
                entry.name != LOCK for entry in self.root.iterdir()):
            raise UserError("not a segbench run folder (no manifest.json) and not empty: refusing to write "
                            "into it; give a new or empty folder", source=str(self.root))
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / LOCK, "a+") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                lock.seek(0)
                holder = lock.read().strip() or "unknown"
                raise UserError(f"the run folder is in use by another segbench run (pid {holder}); "
                                "wait for it to end, or give another folder", source=str(self.root)) from None
            lock.seek(0)
            lock.truncate()
            lock.write(f"{os.getpid()}\n")
            lock.flush()
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def remove_stale_temporaries(self) -> None:
        """Leftovers of an interrupted write: never complete, always safe to delete (under the lock)."""
        if self.cells_dir.is_dir():
            for path in self.cells_dir.glob(".*.tmp*"):
                shutil.rmtree(path, ignore_errors=True)
        for path in self.root.glob(".*.tmp"):
            path.unlink(missing_ok=True)

    def remove_cell(self, cell_id: str) -> None:
        """Drop a cell's stale result: a cell about to be redone has no figures until it succeeds."""
        shutil.rmtree(self.cells_dir / cell_id, ignore_errors=True)

    def cell_record(self, cell_id: str) -> dict[str, Any] | None:
        """The record of a complete cell, or None."""
        path = self.cells_dir / cell_id / "cell.json"
        try:
            record = json.loads(path.read_bytes().decode("utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):  # absent, or not ours: not complete
            return None
        return record if isinstance(record, dict) else None

    def write_cell(self, cell_id: str, output: CellOutput) -> None:
        """Write the whole cell folder under a temporary name, then swap it in."""
        self.cells_dir.mkdir(parents=True, exist_ok=True)
        tmp = temporary_folder(self.cells_dir, f".{cell_id}.")
        try:
            output.per_class.to_parquet(tmp / "per_class.parquet", index=False)
            output.per_image.to_parquet(tmp / "per_image.parquet", index=False)
            for name, frame in output.tables.items():
                frame.to_parquet(tmp / f"{name}.parquet", index=False)
            if output.predictions is not None:
                shutil.move(output.predictions, tmp / PREDICTIONS)
            (tmp / "cell.json").write_text(json.dumps(
                {**output.record, "summary": output.summary}, indent=2, default=str) + "\n")
            final = self.cells_dir / cell_id
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            if output.predictions is not None:
                shutil.rmtree(output.predictions, ignore_errors=True)
            raise

    def predictions_dir(self, cell_id: str) -> Path:
        """The saved predictions of a complete cell (when its suite had ``save_predictions``)."""
        return self.cells_dir / cell_id / PREDICTIONS

    def _cell_tables(self, cell_id: str) -> dict[str, Any] | None:
        """A complete cell's rows, read from its folder; None when the cell is not complete."""
        record = self.cell_record(cell_id)
        if record is None:
            return None
        folder = self.cells_dir / cell_id
        return {"summary": record["summary"], **{
            name: pd.read_parquet(folder / f"{name}.parquet") for name in ROW_TABLES + EXTRA_TABLES
            if name in ROW_TABLES or (folder / f"{name}.parquet").is_file()}}

    def tables(self, cell_ids: list[str], reference: str | None = None) -> dict[str, pd.DataFrame]:
        """The run-level tables of the complete cells among ``cell_ids``, each cell's files read once: the
        summary and row tables, each extra table that some cell has rows of, and ``robustness`` (normalised by
        the ``reference`` model) when some cells are corrupted."""
        cells = [tables for cid in cell_ids if (tables := self._cell_tables(cid)) is not None]
        summary = with_cell_keys(pd.DataFrame([cell["summary"] for cell in cells]))
        tables = {"summary": summary}
        for name in ROW_TABLES:
            frames = [with_cell_keys(cell[name]) for cell in cells]
            tables[name] = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
        for name in EXTRA_TABLES:
            frames = [cell[name] for cell in cells if name in cell]
            if any("corruption" in frame.columns for frame in frames):  # rows of corrupted cells among them
                frames = [with_cell_keys(frame) for frame in frames]
            if frames:
                tables[name] = pd.concat(frames, ignore_index=True)
        if "mIoU" in summary.columns and (summary["corruption"] != CLEAN).any():
            tables[ROBUSTNESS] = robustness_table(summary, reference)
        return tables

    def write_tables(self, cell_ids: list[str], reference: str | None = None) -> None:
        """Write :meth:`tables` (the summary also as csv); a table that no cell has rows of is removed.

        Nothing is kept: a run calls this when it starts and when it ends, never
        after a cell, so its bookkeeping per cell does not grow with the number
        of cells.
        """
        tables = self.tables(cell_ids, reference)
        for name in (*TABLES, ROBUSTNESS):
            if name in tables:
                atomic_write_table(self.root / f"{name}.parquet", tables[name])
            else:  # the cells that had rows were redone without them, or are gone
                (self.root / f"{name}.parquet").unlink(missing_ok=True)
            if name == "summary":
                atomic_write_table(self.root / "summary.csv", tables[name])


@dataclass
class RunResults:
    """A run folder loaded back: the manifest and the tables as DataFrames.

    The store knows no reports: ``segbench.load`` returns :class:`segbench.api.Results`,
    this with ``leaderboard``, ``per_class_table`` and ``compare``.
    """

    root: Path
    manifest: dict[str, Any]
    summary: pd.DataFrame
    per_class: pd.DataFrame
    per_image: pd.DataFrame
    efficiency: pd.DataFrame = field(default_factory=pd.DataFrame)
    confusion: pd.DataFrame = field(default_factory=pd.DataFrame)
    """One row per (model, dataset, label class, predicted class) with pixels > 0, ignore pixels excluded."""
    calibration: pd.DataFrame = field(default_factory=pd.DataFrame)
    """The reliability diagram: one row per (model, dataset, confidence bin) of the cells that ran the
    calibration group with class probabilities: bin, lower, upper, pixels, mean_confidence, accuracy."""
    robustness: pd.DataFrame = field(default_factory=pd.DataFrame)
    """CE, relative CE and mIoU per severity by (model, dataset, corruption), and mCE, relative mCE and
    retention in the rows of corruption ``all`` (runs with a ``corruptions`` section)."""

    def clean(self) -> "RunResults":
        """These results restricted to the clean images (what leaderboards show unless asked)."""
        def rows(frame: pd.DataFrame) -> pd.DataFrame:
            return frame[frame["corruption"] == CLEAN].reset_index(drop=True) if "corruption" in frame else frame
        return replace(self, **{name: rows(getattr(self, name)) for name in TABLES})

    def corrupted_as_datasets(self) -> "RunResults":
        """Each corrupted cell as a clean cell of a dataset of its own, ``<dataset>:<corruption>:<severity>``
        (:func:`dataset_label`), in the tables and the manifest's cell entries: what compares rows by
        (model, dataset) then keys them by (model, dataset, corruption, severity)."""
        def relabelled(frame: pd.DataFrame) -> pd.DataFrame:
            if "corruption" not in frame.columns or (frame["corruption"] == CLEAN).all():
                return frame
            labels = [dataset_label(*key) for key in zip(frame["dataset"], frame["corruption"], frame["severity"])]
            return frame.assign(dataset=labels, corruption=CLEAN, severity=0)
        cells = {cell_id: entry | {"dataset": dataset_label(entry["dataset"], entry.get("corruption", CLEAN),
                                                              entry.get("severity", 0)),
                                   "corruption": CLEAN, "severity": 0}
                 for cell_id, entry in self.manifest.get("cells", {}).items()}
        return replace(self, manifest=self.manifest | {"cells": cells},
                       **{name: relabelled(getattr(self, name)) for name in TABLES})


def dataset_label(dataset: str, corruption: str, severity: int) -> str:
    """How a corrupted cell's dataset is named where rows are keyed by (model, dataset): ``shapes:fog:3``."""
    return dataset if corruption == CLEAN else f"{dataset}:{corruption}:{int(severity)}"


def load(run_dir: str | Path) -> RunResults:
    """Read a run folder's manifest and tables. A run that has not ended (running now, or killed) is read
    from its cell folders, which hold every cell complete so far: its run-level files are those of its
    start."""
    store = RunStore(Path(run_dir))
    manifest = store.read_manifest()
    if manifest.get("status") == "running":
        tables = store.tables(list(manifest["cells"]), corruption_reference(manifest))
    else:
        tables = {name: _read_table(path) for name in (*TABLES, ROBUSTNESS)
                  if (path := store.root / f"{name}.parquet").is_file()}
        tables |= {name: with_cell_keys(tables[name]) for name in ("summary", *ROW_TABLES) if name in tables}
    return RunResults(store.root, manifest,
                      **{name: tables.get(name, pd.DataFrame()) for name in (*TABLES, ROBUSTNESS)})


def corruption_reference(manifest: dict[str, Any]) -> str | None:
    """The suite's corruptions reference model (robustness.parquet is normalised by its errors), as the
    manifest records it; None: no reference, or no corruptions."""
    return ((manifest.get("suite_resolved") or {}).get("corruptions") or {}).get("reference")


def with_cell_keys(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with the :data:`CELL_KEYS` columns after ``model`` and ``dataset``. Runs written before
    corruptions existed lack ``corruption`` and ``severity`` (their rows are clean), and so do the confusion,
    calibration and efficiency rows of clean cells (DESIGN.md's columns)."""
    if frame.empty or "model" not in frame.columns:
        return frame
    frame = frame.copy()
    if "corruption" not in frame.columns:
        frame.insert(2, "corruption", CLEAN)
    if "severity" not in frame.columns:
        frame.insert(3, "severity", 0)
    return frame


def _read_table(path: Path) -> pd.DataFrame:
    try:
        return pd.read_parquet(path)
    except Exception as error:  # pyarrow raises several types for truncated or foreign files
        raise UserError(f"cannot read the table ({type(error).__name__}): truncated or not a parquet file",
                        source=str(path)) from None


# ---------------------------------------------------------------- comparing the cells of different runs

def data_difference(records: dict[str, dict[str, Any]]) -> str | None:
    """How the data of cells of one dataset name differ, the cells' records (cell.json) by a label naming
    where each is from ("the baseline", "run r1"): image count and fingerprint. None when the fingerprints
    agree: the same data, whatever the cells' names."""
    prints = {label: str(record.get("dataset_fingerprint")) for label, record in records.items()}
    if len(set(prints.values())) <= 1:
        return None
    counts = {label: record.get("summary", {}).get("num_images") for label, record in records.items()}
    if len(set(counts.values())) == 1:
        count = f"{next(iter(counts.values()))} images in {'both' if len(counts) == 2 else 'each'}"
    else:
        count = ", ".join(f"{n}{' images' if i == 0 else ''} in {label}"
                          for i, (label, n) in enumerate(counts.items()))
    return f"{count}; fingerprint " + ", ".join(f"{p[:16]} in {label}" for label, p in prints.items())


def option_differences(before: dict[str, Any], after: dict[str, Any], names: tuple[str, str]) -> list[str]:
    """Where the metric options (group -> options) of two runs or cells differ: dotted paths with both
    values, each introduced by its side's name in ``names``. Only the groups both record are compared: a
    group on in one and off (null) in the other is a difference; a group one does not record at all (its
    segbench predates the group) gives figures only the other has, no other convention of the same ones."""
    both = before.keys() & after.keys()
    return _differences({name: before[name] for name in both}, {name: after[name] for name in both}, names)


def _differences(before: Any, after: Any, names: tuple[str, str], path: str = "") -> list[str]:
    if isinstance(before, dict) and isinstance(after, dict):
        return [d for key in sorted(before.keys() | after.keys())
                for d in _differences(before.get(key, "<absent>"), after.get(key, "<absent>"), names,
                                      f"{path}.{key}" if path else str(key))]
    return [] if before == after else [f"{path}: {names[0]} {before!r}, {names[1]} {after!r}"]
