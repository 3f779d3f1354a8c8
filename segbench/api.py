"""The Python API, mirroring the CLI: ``segbench.run`` and ``segbench.load``."""

from __future__ import annotations

import json
import re
from dataclasses import fields
from pathlib import Path
from typing import Any

import pandas as pd

from segbench import report
from segbench.check import check as check_runs
from segbench.errors import UserError
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


def latest_run_dir(out: str | Path, suite_name: str) -> Path:
    """The newest run folder of suite ``suite_name`` under ``out``: by its manifest's ``created`` time, then
    by its folder name (run ids begin with the date); a UserError when there is none."""
    parent = Path(out) / suite_name
    runs = []
    for folder in sorted(parent.iterdir()) if parent.is_dir() else []:
        manifest = folder / "manifest.json"
        if not manifest.is_file():
            continue
        try:
            created = str(json.loads(manifest.read_text()).get("created") or "")
        except (OSError, ValueError, AttributeError):
            created = ""
        runs.append((created, folder.name, folder))
    if not runs:
        raise UserError(f"--continue: no run folder of suite {suite_name!r} in {parent} to continue; "
                        "run it without --continue first (or give --out where its runs are)")
    return max(runs)[2]


def execute(suite: str | Path | dict | Suite, *, run_dir: str | Path | None = None,
            out: str | Path = "results", device: str | None = None, resume: bool = True,
            reporter: Reporter | None = None, continue_latest: bool = False) -> RunOutcome:
    """Run a suite and return its outcome; ``continue_latest``: into the newest run folder of the suite
    under ``out`` (:func:`latest_run_dir`) instead of a new one."""
    if continue_latest and run_dir is not None:
        raise UserError("--continue and --run-dir exclude each other: --run-dir already names the run "
                        "folder to resume")
    resolved, source = resolve_suite(suite)
    target = latest_run_dir(out, resolved.name) if continue_latest else run_dir_for(resolved, run_dir, out)
    return run_suite(resolved, target, device=device, resume=resume, reporter=reporter,
                     suite_source=source)


MODEL_REF_FIELDS = {"mmseg": "config", "python": "factory", "builtin": "arch", "predictions": "root"}
"""The field that ``TYPE:REF`` of ``segbench eval --model`` fills, where it is not ``path``."""
CHECKPOINT_FIELDS = {"builtin": "weights"}
"""The field that ``--checkpoint`` fills, where it is not ``checkpoint``."""
NO_ROOT_DATASETS = ("synthetic",)


def _type_and_ref(text: str, what: str, example: str) -> tuple[str, str]:
    kind, _, ref = text.partition(":")
    if not kind or not _ or (not ref and kind not in NO_ROOT_DATASETS):
        raise UserError(f"--{what} {text!r}: expected TYPE:REF, e.g. {example}", field=what)
    return kind, ref


def _entry_name(ref: str, fallback: str) -> str:
    """A suite entry name from a reference: the file's stem or the function's name, in allowed characters."""
    stem = Path(ref.rstrip("/")).name.split(":")[-1]
    for suffix in (".py", ".onnx", ".pt", ".pth", ".ts"):
        stem = stem.removesuffix(suffix)
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", stem).strip("-._").replace("__", "_")
    return name or fallback


def eval_suite(model: str, dataset: str, *, checkpoint: str | None = None, num_classes: int | None = None,
               device: str = "auto") -> dict[str, Any]:
    """The one-model, one-dataset suite of ``segbench eval``: ``model`` is TYPE:REF (``mmseg:CONFIG``,
    ``python:module:function``, ``onnx:FILE``, ``torchscript:FILE``, ``hf:FOLDER``, ``builtin:ARCH``),
    ``dataset`` TYPE:ROOT (``cityscapes:ROOT``, ``ade20k:ROOT``, ``folder:ROOT``, ``synthetic``)."""
    model_type, ref = _type_and_ref(model, "model", "mmseg:CONFIG, python:nets:build or onnx:model.onnx")
    data_type, root = _type_and_ref(dataset if ":" in dataset else dataset + ":", "dataset",
                                    "cityscapes:data/cityscapes, ade20k:ROOT or folder:ROOT")
    model_entry: dict[str, Any] = {"name": _entry_name(ref, model_type), "type": model_type,
                                   MODEL_REF_FIELDS.get(model_type, "path"): ref}
    if checkpoint is not None:
        model_entry[CHECKPOINT_FIELDS.get(model_type, "checkpoint")] = checkpoint
    if num_classes is not None and model_type not in ("mmseg", "builtin", "hf", "predictions"):
        model_entry["num_classes"] = num_classes
    data_entry: dict[str, Any] = {"name": data_type, "type": data_type}
    if root:
        data_entry["root"] = root
    if num_classes is not None and data_type == "folder":
        data_entry["num_classes"] = num_classes
    return {"name": "eval", "device": device, "datasets": [data_entry], "models": [model_entry]}


def run(suite: str | Path | dict | Suite, *, run_dir: str | Path | None = None,
        out: str | Path = "results", device: str | None = None, resume: bool = True,
        continue_latest: bool = False) -> Path:
    """Evaluate a suite (file path, mapping or Suite); returns the run folder.

    Failed cells are recorded in the manifest (``status: failed``), as the CLI does.
    ``continue_latest`` resumes the suite's newest run folder under ``out`` (``segbench run --continue``).
    """
    return execute(suite, run_dir=run_dir, out=out, device=device, resume=resume,
                   continue_latest=continue_latest).run_dir


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
