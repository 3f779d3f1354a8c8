"""Run folders: atomic writes, the manifest, cell folders, and loading the tables back into pandas.

A cell's folder appears only once it is complete (written under a temporary
name, then renamed), so an interrupted run never leaves a cell that looks
complete. Run-level tables are rebuilt from the complete cells after each cell.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from segbench.atomic import atomic_write_bytes, temporary_folder
from segbench.errors import UserError

MANIFEST = "manifest.json"
TABLES = ("summary", "per_class", "per_image", "efficiency")
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
    efficiency: pd.DataFrame | None = None  # rows of the profiling pass, when this cell ran it
    predictions: Path | None = None  # a staging folder of prediction PNGs, moved to cells/<id>/predictions


class RunStore:
    """One run folder: ``manifest.json``, the run-level tables, and ``cells/<id>/``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.cells_dir = self.root / "cells"

    def manifest_path(self) -> Path:
        return self.root / MANIFEST

    def read_manifest(self) -> dict[str, Any]:
        try:
            return json.loads(self.manifest_path().read_text())
        except FileNotFoundError:
            raise UserError("not a run folder (no manifest.json)", source=str(self.root)) from None
        except json.JSONDecodeError as error:
            raise UserError(f"manifest.json is corrupt: {error}", source=str(self.root)) from None

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        atomic_write_json(self.manifest_path(), manifest)

    def remove_stale_temporaries(self) -> None:
        """Leftovers of an interrupted write: never complete, always safe to delete."""
        if self.cells_dir.is_dir():
            for path in self.cells_dir.glob(".*.tmp*"):
                shutil.rmtree(path, ignore_errors=True)
        for path in self.root.glob(".*.tmp"):
            path.unlink(missing_ok=True)

    def cell_record(self, cell_id: str) -> dict[str, Any] | None:
        """The record of a complete cell, or None."""
        path = self.cells_dir / cell_id / "cell.json"
        if not path.is_file():
            return None
        return json.loads(path.read_text())

    def write_cell(self, cell_id: str, output: CellOutput) -> None:
        """Write the whole cell folder under a temporary name, then swap it in."""
        self.cells_dir.mkdir(parents=True, exist_ok=True)
        tmp = temporary_folder(self.cells_dir, f".{cell_id}.")
        try:
            output.per_class.to_parquet(tmp / "per_class.parquet", index=False)
            output.per_image.to_parquet(tmp / "per_image.parquet", index=False)
            if output.efficiency is not None:
                output.efficiency.to_parquet(tmp / "efficiency.parquet", index=False)
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

    def write_tables(self, cell_ids: list[str]) -> None:
        """Rebuild the run-level tables from the complete cells among ``cell_ids``."""
        records = {cid: record for cid in cell_ids if (record := self.cell_record(cid)) is not None}
        complete = list(records)
        summary = pd.DataFrame([record["summary"] for record in records.values()])
        atomic_write_table(self.root / "summary.parquet", summary)
        atomic_write_table(self.root / "summary.csv", summary)
        for name in ("per_class", "per_image"):
            frames = [pd.read_parquet(self.cells_dir / cid / f"{name}.parquet") for cid in complete]
            table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
            atomic_write_table(self.root / f"{name}.parquet", table)
        efficiency = [pd.read_parquet(path) for cid in complete
                      if (path := self.cells_dir / cid / "efficiency.parquet").is_file()]
        if efficiency:
            atomic_write_table(self.root / "efficiency.parquet", pd.concat(efficiency, ignore_index=True))


@dataclass
class RunResults:
    """A run folder loaded back: the manifest and the tables as DataFrames."""

    root: Path
    manifest: dict[str, Any]
    summary: pd.DataFrame
    per_class: pd.DataFrame
    per_image: pd.DataFrame
    efficiency: pd.DataFrame = field(default_factory=pd.DataFrame)

    def leaderboard(self, metrics: list[str] | None = None, *, sort: str = "mIoU", ci: bool = False,
                    resamples: int = 1000, seed: int = 0) -> pd.DataFrame:
        """One row per model, columns (dataset, metric), fractions as stored; see ``report.leaderboard``."""
        from segbench.report import leaderboard
        return leaderboard(self, metrics, sort=sort, ci=ci, resamples=resamples, seed=seed)

    def per_class_table(self, metric: str = "IoU") -> pd.DataFrame:
        """Rows (dataset, class_id, class_name), a column per model (``per_class`` is the long table)."""
        from segbench.report import per_class_table
        return per_class_table(self, metric)

    def compare(self, other: RunResults, **limits: Any) -> pd.DataFrame:
        """``other`` checked against this run as the baseline: ``check.check(self, other, **limits).table``."""
        from segbench.check import check
        return check(self, other, **limits).table


def load(run_dir: str | Path) -> RunResults:
    """Read a run folder's manifest and tables."""
    store = RunStore(Path(run_dir))
    manifest = store.read_manifest()
    tables = {}
    for name in TABLES:
        path = store.root / f"{name}.parquet"
        tables[name] = pd.read_parquet(path) if path.is_file() else pd.DataFrame()
    return RunResults(store.root, manifest, **tables)
