"""The Python API, mirroring the CLI: ``segbench.run`` and ``segbench.load``."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any

import pandas as pd

from segbench import report
from segbench.check import check as check_runs
from segbench.runner import Reporter, RunOutcome, new_run_id, run_suite
from segbench.store import RunResults
from segbench.store import load as load_run
from segbench.suite import Suite, parse_suite, read_suite


def resolve_suite(suite: str | Path | dict | Suite) -> tuple[Suite, dict[str, Any] | None]:
    """A validated suite and the suite as given (file contents or mapping)."""
    if isinstance(suite, Suite):
        return suite, None
    if isinstance(suite, dict):
        return parse_suite(suite, base_dir=Path.cwd()), suite
    return read_suite(suite)


def run_dir_for(suite: Suite, run_dir: str | Path | None, out: str | Path) -> Path:
    """``run_dir`` exactly when given, else ``out/<suite name>/<new run id>``."""
    return Path(run_dir) if run_dir is not None else Path(out) / suite.name / new_run_id()


def execute(suite: str | Path | dict | Suite, *, run_dir: str | Path | None = None,
            out: str | Path = "results", device: str | None = None, resume: bool = True,
            reporter: Reporter | None = None) -> RunOutcome:
    resolved, source = resolve_suite(suite)
    target = run_dir_for(resolved, run_dir, out)
    return run_suite(resolved, target, device=device, resume=resume, reporter=reporter,
                     suite_source=source)


def run(suite: str | Path | dict | Suite, *, run_dir: str | Path | None = None,
        out: str | Path = "results", device: str | None = None, resume: bool = True) -> Path:
    """Evaluate a suite (file path, mapping or Suite); returns the run folder.

    Failed cells are recorded in the manifest (``status: failed``), as the CLI does.
    """
    return execute(suite, run_dir=run_dir, out=out, device=device, resume=resume).run_dir


class Results(RunResults):
    """A run folder loaded back (:class:`segbench.store.RunResults`), with the report's views of it.

    Defined here, above the reports and checks, because the store knows no reports.
    """

    def leaderboard(self, metrics: list[str] | None = None, *, sort: str = "mIoU", ci: bool = False,
                    resamples: int = 1000, seed: int = 0) -> pd.DataFrame:
        """One row per model, columns (dataset, metric), fractions as stored; see ``report.leaderboard``."""
        return report.leaderboard(self, metrics, sort=sort, ci=ci, resamples=resamples, seed=seed)

    def per_class_table(self, metric: str = "IoU") -> pd.DataFrame:
        """Rows (dataset, class_id, class_name), a column per model (``per_class`` is the long table)."""
        return report.per_class_table(self, metric)

    def compare(self, other: RunResults, **limits: Any) -> pd.DataFrame:
        """``other`` checked against this run as the baseline: ``check.check(self, other, **limits).table``."""
        return check_runs(self, other, **limits).table


def load(run_dir: str | Path) -> Results:
    """Read a run folder's manifest and tables (:func:`segbench.store.load`)."""
    stored = load_run(run_dir)
    return Results(**{f.name: getattr(stored, f.name) for f in fields(stored)})
