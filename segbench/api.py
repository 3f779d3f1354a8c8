"""The Python API, mirroring the CLI: ``segbench.run`` and ``segbench.load``."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any

import pandas as pd

from segbench import report
from segbench.check import check as check_runs
from segbench.errors import UserError
from segbench.registry import DATASETS, MODELS, DatasetType, ModelSource, load_plugins
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


def _type_and_ref(text: str, option: str, registry: Mapping[str, ModelSource | DatasetType]) -> tuple[str, str]:
    """``TYPE:REF`` of ``segbench eval --model/--dataset``: a registered type, with a REF exactly when its
    registration names the field REF fills (``eval_ref``)."""
    kind, colon, ref = text.partition(":")
    if kind not in registry:
        raise UserError(f"--{option} {text!r}: expected TYPE:REF, TYPE one of {', '.join(sorted(registry))}")
    field = registry[kind].eval_ref
    if field is None and colon:
        raise UserError(f"--{option} {text!r}: type {kind!r} takes no REF, write --{option} {kind}; the types "
                        f"that take one: {_types_with(registry, 'eval_ref')}")
    if field is not None and not ref:
        raise UserError(f"--{option} {text!r}: expected {kind}:{field.upper()}")
    return kind, ref


def _types_with(registry: Mapping[str, ModelSource | DatasetType], attribute: str) -> str:
    """The registered types whose registration names an ``eval_*`` field, for an error message."""
    return ", ".join(sorted(kind for kind, entry in registry.items() if getattr(entry, attribute) is not None))


def _entry(kind: str, ref: str, declared: ModelSource | DatasetType, name: str,
           num_classes: int | None) -> dict[str, Any]:
    """A suite entry of ``kind``: REF in its ``eval_ref`` field, ``num_classes`` where its config has one."""
    entry: dict[str, Any] = {"name": name, "type": kind}
    if declared.eval_ref is not None:
        entry[declared.eval_ref] = ref
    if num_classes is not None and "num_classes" in declared.config.model_fields:
        entry["num_classes"] = num_classes
    return entry


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
    ``python:module:function``, ``onnx:FILE``, ...), ``dataset`` TYPE:REF (``cityscapes:ROOT``, ...) or a
    TYPE that takes no REF (``synthetic``). Each registration names the field its REF fills (``eval_ref``);
    ``checkpoint`` fills the model's ``eval_checkpoint`` field, ``num_classes`` every config that has one."""
    load_plugins()
    model_type, ref = _type_and_ref(model, "model", MODELS)
    data_type, root = _type_and_ref(dataset, "dataset", DATASETS)
    source = MODELS[model_type]
    model_entry = _entry(model_type, ref, source, _entry_name(ref, model_type), num_classes)
    data_entry = _entry(data_type, root, DATASETS[data_type], data_type, num_classes)
    if checkpoint is not None:
        if source.eval_checkpoint is None:
            raise UserError(f"--checkpoint: model type {model_type!r} takes no checkpoint; the types that do: "
                            f"{_types_with(MODELS, 'eval_checkpoint')}")
        model_entry[source.eval_checkpoint] = checkpoint
    if num_classes is not None and "num_classes" not in model_entry and "num_classes" not in data_entry:
        raise UserError(f"--num-classes: neither model type {model_type!r} nor dataset type {data_type!r} "
                        "takes a number of classes")
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
        """One row per model, columns (dataset, metric), fractions as stored, the clean images' figures; see
        ``report.leaderboard``."""
        return report.leaderboard(self, metrics, sort=sort, ci=ci, resamples=resamples, seed=seed)

    def per_class_table(self, metric: str = "IoU") -> pd.DataFrame:
        """Rows (dataset, class_id, class_name), a column per model (``per_class`` is the long table)."""
        return report.per_class_table(self, metric)

    def robustness_leaderboard(self) -> pd.DataFrame:
        """mCE, relative mCE and retention: one row per model, columns (dataset, figure), as stored, the lowest
        mCE first; empty for a run without corruptions (``robustness`` is the long table)."""
        return report.robustness_leaderboard(self)

    def compare(self, other: RunResults, **limits: Any) -> pd.DataFrame:
        """``other`` checked against this run as the baseline: ``check.check(self, other, **limits).table``."""
        return check_runs(self, other, **limits).table


def load(run_dir: str | Path) -> Results:
    """Read a run folder's manifest and tables (:func:`segbench.store.load`)."""
    stored = load_run(run_dir)
    return Results(**{f.name: getattr(stored, f.name) for f in fields(stored)})
