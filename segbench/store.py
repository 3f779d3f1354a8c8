"""Run folders: atomic writes, the manifest, cell folders, and loading the tables back into pandas.

A cell's folder appears only once it is complete (written under a temporary
name, then renamed), so an interrupted run never leaves a cell that looks
complete. Run-level tables are rebuilt from the complete cells after each cell.
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from segbench.atomic import atomic_write_bytes, temporary_folder
from segbench.errors import UserError

MANIFEST = "manifest.json"
LOCK = ".lock"
ROW_TABLES = ("per_class", "per_image")  # every complete cell has them
EXTRA_TABLES = ("efficiency", "confusion", "calibration")  # a cell has them when it measured or computed them
TABLES = ("summary", *ROW_TABLES, *EXTRA_TABLES)
PREDICTIONS = "predictions"


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
        self._tables: dict[str, dict[str, Any]] = {}  # complete cells' rows, read from disk at most once

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
        self._tables.pop(cell_id, None)
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
            summary = json.loads(json.dumps(output.summary, default=str))  # as cell.json keeps it
            (tmp / "cell.json").write_text(json.dumps(
                {**output.record, "summary": summary}, indent=2, default=str) + "\n")
            final = self.cells_dir / cell_id
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
            self._tables[cell_id] = {"summary": summary, "per_class": output.per_class,
                                     "per_image": output.per_image, **output.tables}
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            if output.predictions is not None:
                shutil.rmtree(output.predictions, ignore_errors=True)
            raise

    def predictions_dir(self, cell_id: str) -> Path:
        """The saved predictions of a complete cell (when its suite had ``save_predictions``)."""
        return self.cells_dir / cell_id / PREDICTIONS

    def _cell_tables(self, cell_id: str) -> dict[str, Any] | None:
        """A complete cell's rows: kept from ``write_cell``, or read from its folder once."""
        if cell_id not in self._tables:
            record = self.cell_record(cell_id)
            if record is None:
                return None
            folder = self.cells_dir / cell_id
            self._tables[cell_id] = {"summary": record["summary"], **{
                name: pd.read_parquet(folder / f"{name}.parquet") for name in ROW_TABLES + EXTRA_TABLES
                if name in ROW_TABLES or (folder / f"{name}.parquet").is_file()}}
        return self._tables[cell_id]

    def write_tables(self, cell_ids: list[str]) -> None:
        """Write the run-level tables of the complete cells among ``cell_ids``.

        Each cell's rows are read from disk at most once per store (those this
        store wrote, never), so writing after each cell costs no reads of the
        earlier cells' files.
        """
        cells = [tables for cid in cell_ids if (tables := self._cell_tables(cid)) is not None]
        summary = pd.DataFrame([cell["summary"] for cell in cells])
        atomic_write_table(self.root / "summary.parquet", summary)
        atomic_write_table(self.root / "summary.csv", summary)
        for name in ROW_TABLES:
            frames = [cell[name] for cell in cells]
            atomic_write_table(self.root / f"{name}.parquet",
                               pd.concat(frames, ignore_index=True) if frames else pd.DataFrame())
        for name in EXTRA_TABLES:
            frames = [cell[name] for cell in cells if name in cell]
            if frames:
                atomic_write_table(self.root / f"{name}.parquet", pd.concat(frames, ignore_index=True))
            else:  # the cells that had rows were redone without them, or are gone
                (self.root / f"{name}.parquet").unlink(missing_ok=True)


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


def load(run_dir: str | Path) -> RunResults:
    """Read a run folder's manifest and tables."""
    store = RunStore(Path(run_dir))
    manifest = store.read_manifest()
    tables = {}
    for name in TABLES:
        path = store.root / f"{name}.parquet"
        tables[name] = _read_table(path) if path.is_file() else pd.DataFrame()
    return RunResults(store.root, manifest, **tables)


def _read_table(path: Path) -> pd.DataFrame:
    try:
        return pd.read_parquet(path)
    except Exception as error:  # pyarrow raises several types for truncated or foreign files
        raise UserError(f"cannot read the table ({type(error).__name__}): truncated or not a parquet file",
                        source=str(path)) from None
