"""Runs the cells of a suite: each model over each dataset, metric states folded per image.

The runner prints nothing: it reports progress to a :class:`Reporter` that the
CLI implements with rich.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import json
import os
import queue
import re
import signal
import sys
import threading
import time
import traceback
import uuid
import warnings
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Subset

from segbench.corruptions import CLEAN, CorruptedDataset, CorruptionCache
from segbench.data.base import Sample, SegDataset
from segbench.distributed import World, joined, portable, world_from_env
from segbench.environment import device_name, environment, resolve_device
from segbench.errors import UserError
from segbench.fingerprint import paths_fingerprint
from segbench.metrics.checks import validate_pair
from segbench.models.base import ModelAdapter, class_map_table
from segbench.prediction_writer import PredictionWriter, discard, join_folders
from segbench.profiling import Profiler, headline, sized_image
from segbench.registry import DATASETS, METRICS, MODELS, load_plugins
from segbench.store import CORRUPTION_CACHE, CellOutput, RunStore, corruption_reference
from segbench.suite import Cell, Suite
from segbench.types import DatasetInfo
from segbench.version import __version__


class Reporter:
    """Progress callbacks; this one ignores them."""

    def run_started(self, run_dir: Path) -> None: ...
    def cell_started(self, cell_id: str, total: int) -> None: ...
    def advance(self, count: int) -> None: ...
    def cell_finished(self, cell_id: str, status: str, error: str | None) -> None: ...
    def warn(self, message: str) -> None: ...


@dataclass
class RunOutcome:
    run_dir: Path
    statuses: dict[str, str] = field(default_factory=dict)  # cell id -> complete | skipped | failed
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(status != "failed" for status in self.statuses.values())


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def new_run_id() -> str:
    return datetime.now().strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:4]


def settings_digest(settings: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()


def build_datasets(suite: Suite) -> dict[str, SegDataset]:
    """Every dataset of the suite, opened before any work so a missing folder stops the run at once."""
    datasets = {}
    for i, config in enumerate(suite.datasets):
        try:
            datasets[config.name] = DATASETS[config.type].build(config)
        except UserError as error:
            error.field = error.field or f"datasets[{i}] ({config.name})"
            raise
    return datasets


def check_models(suite: Suite, datasets: dict[str, SegDataset]) -> None:
    """What each model source checks before any work (python factories import, mmseg knows the config), and
    that each model's classes fit each dataset's where its source tells them without building the model."""
    for i, config in enumerate(suite.models):
        source = MODELS[config.type]
        try:
            if source.check is not None:
                source.check(config)
            classes = None if source.classes is None else source.classes(config)
            if classes is not None:
                for dataset in datasets.values():
                    _check_classes(config, classes, dataset.info)
        except UserError as error:
            error.field = f"models[{i}].{error.field or 'type'} ({config.name})"
            raise


def _check_classes(config: Any, classes: int, info: DatasetInfo) -> None:
    """A model predicting ``classes`` classes against a dataset: through the class_map where the model's
    type has one (which a count that differs needs), else the counts must be equal."""
    if "class_map" in type(config).model_fields:
        class_map_table(config.class_map, classes, info)
    else:
        same_classes(config.name, classes, info, field="num_classes")


def same_classes(model: str, classes: int, info: DatasetInfo, field: str | None = None) -> None:
    """A UserError unless the model predicts the dataset's number of classes."""
    if classes != info.num_classes:
        raise UserError(f"model {model!r} predicts {classes} classes but dataset {info.name!r} has "
                        f"{info.num_classes}", field=field)


@dataclass
class Shard:
    """What one rank made of its part of a cell: metric states (tensors on the CPU), or its error."""

    metrics: dict[str, Any] = field(default_factory=dict)
    image_ids: list[str] = field(default_factory=list)
    invalid: dict[str, int] = field(default_factory=dict)  # image id -> invalid label pixels
    predictions: Path | None = None  # this rank's staged prediction PNGs (save_predictions)
    error: str | None = None
    traceback: str | None = None
    workers: dict[str, int] = field(default_factory=dict)  # the loader's processes and the metric threads


class Interrupted(Exception):
    """Ctrl-C stopped the run; the manifest says ``interrupted`` and a resume picks it up."""

    def __init__(self, run_dir: Path) -> None:
        super().__init__(f"interrupted; resume with --run-dir {run_dir}")
        self.run_dir = run_dir


class CellFailed(Exception):
    """A rank could not evaluate its shard; carries that rank's traceback."""

    def __init__(self, message: str, traceback_text: str) -> None:
        super().__init__(message)
        self.traceback = traceback_text


def evaluate_cell(cell: Cell, dataset: SegDataset, suite: Suite, device: torch.device,
                  reporter: Reporter, profiled: dict[tuple, tuple] | None = None,
                  world: World = World(), staging: Path | None = None) -> CellOutput | None:
    """Evaluate this rank's shard, then on rank 0 merge all shards into the cell's output (None elsewhere).

    Saved predictions are staged in a temporary folder under ``staging`` (the
    run's cells/ folder; None: the system's temporary folder) that
    ``RunStore.write_cell`` moves into the cell folder.
    """
    started = time.perf_counter()
    adapter, shard = _evaluate_shard(cell, dataset, suite, device, reporter, world, staging)
    shards = world.gather(shard)
    if not world.main:
        return None
    failed = {rank: part for rank, part in enumerate(shards) if part.error is not None}
    if failed:
        discard([part.predictions for part in shards])
        messages = [f"rank {rank}: {part.error}" if world.size > 1 else part.error
                    for rank, part in failed.items()]
        raise CellFailed("; ".join(messages), next(iter(failed.values())).traceback)
    metrics = _merged(shards, dataset)
    invalid = {image_id: count for part in shards for image_id, count in part.invalid.items()}
    output = _cell_output(cell, dataset, adapter.provenance(), metrics, invalid,
                          time.perf_counter() - started)
    output.record["world_size"] = world.size
    output.record["workers"] = shards[0].workers
    output.predictions = join_folders([part.predictions for part in shards])
    if cell.efficiency is not None:
        _add_efficiency(output, cell, adapter, dataset, device, {} if profiled is None else profiled)
    return output


def _evaluate_shard(cell: Cell, dataset: SegDataset, suite: Suite, device: torch.device,
                    reporter: Reporter, world: World,
                    staging: Path | None = None) -> tuple[ModelAdapter | None, Shard]:
    """This rank's images of the cell through the model and the metric states; errors are returned.

    The metric groups score batch n on :class:`MetricLanes` threads while the
    model computes batch n+1 (``metric_workers: 0``: inline, after each batch).
    """
    writer, lanes = None, None
    try:
        info = dataset.info
        metrics = {name: METRICS[name].state(info.num_classes, info.ignore_index, device, **options.model_dump())
                   for name, options in cell.metrics if options is not None}
        indices = world.shard(len(dataset))
        shard = Shard(workers={"num_workers": loader_workers(suite.num_workers),
                               "metric_workers": metric_workers(suite.metric_workers, len(metrics))})
        loader = DataLoader(Subset(dataset, indices), batch_size=suite.batch_size,
                            num_workers=shard.workers["num_workers"],
                            collate_fn=_as_tensors if shard.workers["num_workers"] else list,
                            pin_memory=device.type == "cuda",
                            worker_init_fn=functools.partial(die_with_parent, os.getpid()))
        batches = iter(loader)  # the loader's workers decode the first batches while the model is built
        adapter = MODELS[cell.model.type].build(cell.model, info, device)
        same_classes(cell.model.name, adapter.num_classes, info)
        if cell.save_predictions:
            writer = PredictionWriter(staging, cell.id, info.colours())
        needs = {name: METRICS[name].needs for name in metrics}
        check = functools.partial(validate_pair, num_classes=info.num_classes, ignore_index=info.ignore_index,
                                  invalid_labels=cell.dataset.invalid_labels)
        lanes = MetricLanes(metrics, needs, shard.workers["metric_workers"], cell.id, check)
        reporter.cell_started(cell.id, len(indices))
        for loaded in batches:
            samples = [_as_arrays(sample) for sample in loaded]
            lanes.raise_error()  # a metric thread failed: stop reading and predicting
            images, ids = [s.image for s in samples], [s.id for s in samples]
            if any("confidence" in group for group in needs.values()):
                predictions, confidences = adapter.predict_with_confidence(images, ids)
            else:
                predictions, confidences = adapter.predict(images, ids), None
            batch = []
            for i, (sample, prediction) in enumerate(zip(samples, predictions)):
                label = torch.from_numpy(sample.label).to(device, non_blocking=True)
                shard.image_ids.append(sample.id)
                if writer is not None:
                    writer.submit(sample.id, prediction)
                inputs = {**sample.extras, "confidence": None if confidences is None else confidences[i]}
                batch.append((prediction, label, sample.id, inputs))
            lanes.submit(batch)
            reporter.advance(len(samples))
        lanes.close()
        shard.invalid = lanes.invalid
        if writer is not None:
            shard.predictions = writer.close()
        shard.metrics = {name: portable(metric) for name, metric in metrics.items()}
        return adapter, shard
    except (Exception, SystemExit) as error:  # travels to rank 0, which fails the cell with it
        _stop(writer, lanes)
        failed = Shard(error=_describe(error), traceback=traceback.format_exc())
        # the frames of a DataLoader error hold its iterator in a reference cycle (torch's reraise): cleared,
        # the iterator ends its workers and queue threads now, not at the next garbage collection
        traceback.clear_frames(error.__traceback__)
        return None, failed
    except BaseException:  # Ctrl-C: no thread of the cell outlives it
        _stop(writer, lanes)
        raise


def _as_tensors(samples: list[Sample]) -> list[Sample]:
    """The DataLoader workers' collate: arrays as tensors, which leave the worker processes through shared
    memory instead of being pickled (unpickling a 1024x2048 image, label and instance map cost the main
    thread about 80 ms). A decoded image is often a read-only array: the tensor only carries it, nothing
    writes into it, so torch's warning about that is not shown."""
    def tensor(array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(array))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return [Sample(s.id, tensor(s.image), tensor(s.label), {k: tensor(v) for k, v in s.extras.items()})
                for s in samples]


def _as_arrays(sample: Sample) -> Sample:
    """A sample of :func:`_as_tensors` with its arrays back (views, no copy); one of a loader without
    workers as it is."""
    if isinstance(sample.image, np.ndarray):
        return sample
    return Sample(sample.id, sample.image.numpy(), sample.label.numpy(),
                  {k: v.numpy() for k, v in sample.extras.items()})


def _stop(writer: PredictionWriter | None, lanes: MetricLanes | None) -> None:
    if lanes is not None:
        lanes.abort()
    if writer is not None:
        writer.abort()


def _cores() -> int:
    """This rank's cores: those the process may run on, split evenly among the ranks of its node (torchrun
    starts several on one node, each sizing its own workers)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return world_from_env().share(cores)


def loader_workers(setting: int | str) -> int:
    """``num_workers``: ``auto`` leaves one of this rank's cores (:func:`_cores`) to the rank's own process,
    and takes at most 4."""
    return min(4, _cores() - 1) if setting == "auto" else int(setting)


def metric_workers(setting: int | str, groups: int) -> int:
    """``metric_workers``: ``auto`` is one thread per metric group, at most half this rank's cores
    (:func:`_cores`), at least 1."""
    if setting != "auto":
        return int(setting)
    return min(groups, max(1, _cores() // 2))


IN_FLIGHT = 2
"""Batches waiting for a metric thread beside the one it scores; a full queue makes the forward pass wait."""
_DONE = None


def lanes_of(names: list[str], workers: int) -> list[list[str]]:
    """The metric groups of each thread: groups that declare shared work (``shares``) together, on a thread
    of their own when there are threads enough, the other groups dealt out in turn."""
    tags = [METRICS[name].shares for name in names]
    units = [[name for name, tag in zip(names, tags) if tag == shared]
             for shared in dict.fromkeys(filter(None, tags))]
    units += [[name] for name, tag in zip(names, tags) if not tag]
    count = max(1, min(workers, len(units)))
    if count == 1:
        lanes = [names]
    else:  # the first unit (the shared work, the heaviest) alone, the others dealt out to the rest
        rest = count - 1
        lanes = [units[0]] + [[name for unit in units[1:][i::rest] for name in unit] for i in range(rest)]
    return [[name for name in names if name in lane] for lane in lanes]  # the cell's group order


class _Pair:
    """One image's prediction and label for the metric groups; the label is checked (``check``) once, by the
    first lane that scores the image, the others waiting for it and taking its result or its error."""

    def __init__(self, prediction: torch.Tensor, label: torch.Tensor, image_id: str, inputs: dict[str, Any],
                 check: Callable[..., tuple[torch.Tensor, int]], invalid: dict[str, int]) -> None:
        self.prediction, self.image_id, self.inputs = prediction, image_id, inputs
        self._label, self._check, self._invalid = label, check, invalid
        self._lock = threading.Lock()
        self._checked: torch.Tensor | Exception | None = None

    def label(self) -> torch.Tensor:
        with self._lock:
            if self._checked is None:
                try:
                    self._checked, self._invalid[self.image_id] = self._check(self.prediction, self._label,
                                                                              image_id=self.image_id)
                except Exception as error:  # every lane raises it; the first one fails the cell
                    self._checked = error
        if isinstance(self._checked, Exception):
            raise self._checked
        return self._checked


class MetricLanes:
    """The metric groups' updates, on threads beside the forward pass: a bounded pipeline of batches.

    Each thread ("lane") owns some groups and a FIFO queue of batches; it
    scores each batch's images in order, so every group's state receives the
    images in dataset order and its results are those of the inline loop, to
    the bit, whatever the number of threads. The compiled boundary search
    and torch's kernels release the GIL. The check of each (prediction,
    label) pair (``check``: :func:`validate_pair` with the dataset's
    settings, keyword ``image_id``) runs there too, once per image, before
    any group sees it: ``invalid`` holds the label pixels it remapped, per
    image in dataset order. ``workers`` 0: no thread, ``submit`` checks and
    scores the batch at once. A thread's error is raised by the next
    ``submit`` or ``raise_error`` or by ``close``; ``close`` and ``abort``
    leave no thread running.
    """

    def __init__(self, metrics: dict[str, Any], needs: dict[str, tuple[str, ...]], workers: int,
                 cell_id: str, check: Callable[..., tuple[torch.Tensor, int]]) -> None:
        self.metrics, self.needs, self.check = metrics, needs, check
        self.invalid: dict[str, int] = {}
        self._error: BaseException | None = None
        self._lock = threading.Lock()
        self._aborted = threading.Event()
        self._lanes = lanes_of(list(metrics), workers) if workers > 0 else []
        self._queues = [queue.Queue(maxsize=IN_FLIGHT) for _ in self._lanes]
        self._threads = [threading.Thread(target=self._work, args=(lane, q), name=f"metrics-{cell_id}-{i}",
                                          daemon=True)
                         for i, (lane, q) in enumerate(zip(self._lanes, self._queues))]
        for thread in self._threads:
            thread.start()

    def submit(self, batch: list[tuple[torch.Tensor, torch.Tensor, str, dict[str, Any]]]) -> None:
        """Queue one batch of (prediction, label, image id, inputs), labels unchecked; waits while a lane's
        queue is full."""
        self.raise_error()
        pairs = [_Pair(*item, self.check, self.invalid) for item in batch]
        if not self._threads:
            self._score(list(self.metrics), pairs)
        for lane_queue in self._queues:
            lane_queue.put(pairs)

    def close(self) -> None:
        """Wait until every queued batch is scored; raise a thread's error."""
        self._join()
        self.raise_error()

    def abort(self) -> None:
        """Stop: the threads skip what is queued and end (each finishes the image it is scoring)."""
        self._aborted.set()
        self._join()

    def raise_error(self) -> None:
        if self._error is not None:
            raise self._error

    def _join(self) -> None:
        for lane_queue in self._queues:
            lane_queue.put(_DONE)  # never blocks for long: a lane drains its queue even after an error
        for thread in self._threads:
            thread.join()
        self._queues, self._threads = [], []

    def _score(self, lane: list[str], pairs: list[_Pair]) -> None:
        for pair in pairs:
            label = pair.label()
            for name in lane:
                extra = {need: pair.inputs.get(need) for need in self.needs[name]}
                self.metrics[name].update(pair.prediction, label, pair.image_id, **extra)

    def _work(self, lane: list[str], lane_queue: queue.Queue) -> None:
        while (pairs := lane_queue.get()) is not _DONE:
            if self._error is None and not self._aborted.is_set():
                try:
                    self._score(lane, pairs)
                except BaseException as error:  # raised in the evaluating thread, failing the cell
                    with self._lock:
                        self._error = self._error or error


def die_with_parent(parent: int, worker_id: int) -> None:
    """A DataLoader worker's start: on Linux, ask the kernel to kill it when the run's process dies.

    Without it, workers of a run killed with SIGKILL live on, orphaned, until
    their next check of the parent (after the batch they are decoding).
    """
    if sys.platform.startswith("linux"):
        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(1)


def _merged(shards: list[Shard], dataset: SegDataset) -> dict[str, Any]:
    """The shards' states merged in rank order; every image of the dataset exactly once, in order."""
    metrics = shards[0].metrics
    for shard in shards[1:]:
        for name, metric in metrics.items():
            metric.merge(shard.metrics[name])
    seen = [image_id for shard in shards for image_id in shard.image_ids]
    if seen != dataset.ids():
        raise RuntimeError(f"the ranks evaluated {len(seen)} images ({len(set(seen))} distinct), not the "
                           f"{len(dataset)} of rank 0's dataset in its order: do all ranks see the same data?")
    return metrics


def _add_efficiency(output: CellOutput, cell: Cell, adapter: ModelAdapter, dataset: SegDataset,
                    device: torch.device, profiled: dict[tuple, tuple]) -> None:
    """The profiling pass, after the accuracy pass: once per (model, input size, classes) in a run.

    The input size is the dataset's first image's unless the suite fixes one.
    A cell whose model was already profiled at that size earlier in this run
    takes its summary columns from those rows (``efficiency_measured_in`` in
    cell.json names the cell) and writes no efficiency.parquet of its own, so
    the run's efficiency.parquet holds each measurement once.
    """
    started = time.perf_counter()
    image = sized_image(dataset.load(0).image, cell.efficiency.input_size)
    key = (cell.model.name, image.shape, adapter.num_classes)
    if key not in profiled:
        rows = Profiler(cell.efficiency, device).profile(adapter, image)
        profiled[key] = (cell.id, rows)
        output.tables["efficiency"] = pd.DataFrame([{"model": cell.model.name, "dataset": cell.dataset.name,
                                                     **row} for row in rows])
    measured_in, rows = profiled[key]
    output.summary |= headline(rows, cell.efficiency)
    output.record |= {"efficiency_measured_in": measured_in,
                      "efficiency_seconds": time.perf_counter() - started}


def summary_trained(trained: Any) -> bool | None:
    """The summary's ``trained``: True, False, or None (null) where the provenance says "unknown" (a python
    model without a checkpoint): a parquet column holds booleans and nulls, not booleans and text."""
    return trained if isinstance(trained, bool) else None


def _cell_output(cell: Cell, dataset: SegDataset, provenance: dict[str, Any], metrics: dict,
                 invalid: dict[str, int], seconds: float) -> CellOutput:
    info = dataset.info
    keys = cell.keys
    # confusion and calibration rows have DESIGN.md's columns, and the corruption's only where it is one
    table_keys = keys if cell.corruption != CLEAN else {"model": cell.model.name, "dataset": cell.dataset.name}
    summary: dict[str, Any] = dict(keys)
    per_class = pd.DataFrame({**keys, "class_id": range(info.num_classes),
                              "class_name": info.class_names})
    per_image = pd.DataFrame({**keys, "image_id": dataset.ids()})
    tables = {}
    for metric in metrics.values():
        result = metric.compute()
        summary |= result.summary
        for column, values in result.per_class.items():
            per_class[column] = values
        rows = pd.DataFrame(result.per_image)
        per_image = per_image.merge(rows, on="image_id", how="left")
        tables |= {name: pd.DataFrame({**table_keys, **columns}) for name, columns in result.tables.items()}
    per_image["invalid_label_pixels"] = per_image["image_id"].map(invalid).fillna(0).astype("int64")
    summary |= {"num_images": len(dataset), "invalid_label_pixels": int(sum(invalid.values())),
                "trained": summary_trained(provenance.get("trained")), "eval_seconds": seconds}
    summary |= {f"published_{key}": value for key, value in provenance.get("published", {}).items()}
    record = {"cell_id": cell.id, **keys, "settings": cell.settings(),
              "settings_digest": settings_digest(cell.settings()),
              "dataset_fingerprint": dataset.fingerprint(), "provenance": provenance,
              "metric_options": {name: m.options() for name, m in metrics.items()},
              "finished": _now(), "eval_seconds": seconds}
    return CellOutput(record, summary, per_class, per_image, tables)


def _is_done(store: RunStore, cell: Cell, fingerprint: str, inputs: str | None, device: torch.device) -> bool:
    """Complete with the same settings, data and input files, and, when it has efficiency figures, on this
    device model."""
    record = store.cell_record(cell.id)
    if record is None or cell.efficiency is not None and (
            record["summary"].get("efficiency_device_name") != device_name(device)):
        return False
    return (record.get("settings_digest") == settings_digest(cell.settings())
            and record.get("dataset_fingerprint") == fingerprint
            and record.get("inputs_fingerprint") == inputs)


def run_suite(suite: Suite, run_dir: Path, *, device: str | None = None, resume: bool = True,
              reporter: Reporter | None = None, suite_source: dict[str, Any] | None = None) -> RunOutcome:
    """Evaluate every cell of ``suite`` into ``run_dir``; user mistakes raise before anything is written.

    Under torchrun every rank calls this: the datasets are sharded across the
    ranks, rank 0 merges and writes (into its ``run_dir``, holding its lock),
    and every rank returns rank 0's outcome. Ctrl-C raises :class:`Interrupted`.

    Each finished cell is in ``cells/<id>/`` at once; the run-level tables hold
    the cells complete when the run started until it ends, and every complete
    cell once the manifest's status says how it ended: ``finished``,
    ``interrupted``, or ``failed`` (an unexpected error, raised again).
    """
    load_plugins()
    reporter = reporter or Reporter()
    world = world_from_env()
    torch_device = world.device(resolve_device(device or suite.device))
    datasets = build_datasets(suite)
    check_models(suite, datasets)
    with joined(world, torch_device), ExitStack() as stack:
        run_dir = world.broadcast(run_dir)
        plan, refusal = None, None
        if world.main:
            try:
                plan = _plan(suite, run_dir, resume, suite_source, torch_device, datasets, world, stack)
            except UserError as error:  # every rank stops with it, none waits for rank 0
                refusal = error
        shared = world.broadcast((refusal or plan.to_run) if world.main else None)
        if isinstance(shared, UserError):
            raise shared
        try:  # from here on the manifest exists: a Ctrl-C anywhere is recorded and resumable
            if world.main:
                reporter.run_started(run_dir)
            return _run_cells(suite, run_dir, shared, plan, datasets, torch_device, reporter, world)
        except KeyboardInterrupt:
            if world.main:
                plan.ended("interrupted")
            raise Interrupted(run_dir) from None
        except BaseException:
            if world.main:
                plan.ended("failed")
            raise


def _run_cells(suite: Suite, run_dir: Path, to_run: dict[str, str | None], plan: _Plan | None,
               datasets: dict[str, SegDataset], device: torch.device, reporter: Reporter,
               world: World) -> RunOutcome:
    outcome = RunOutcome(run_dir)
    profiled: dict[tuple, tuple] = {}  # efficiency rows by (model, input size, classes), for this session
    for cell in suite.cells():
        if cell.id not in to_run:
            outcome.statuses[cell.id] = "skipped"
            reporter.cell_finished(cell.id, "skipped", None)
            continue
        try:
            if world.main:
                plan.started(cell)
            output = evaluate_cell(cell, _cell_dataset(cell, datasets, suite, run_dir), suite, device, reporter,
                                   profiled, world, staging=run_dir / "cells")
            if world.main:
                output.record["inputs_fingerprint"] = to_run[cell.id]
                plan.store.write_cell(cell.id, output)
                _warn_untrained(output, cell, reporter)
                plan.finished(cell, "complete", seconds=output.record["eval_seconds"])
            outcome.statuses[cell.id] = "complete"
        except KeyboardInterrupt:
            if world.main:
                plan.finished(cell, "interrupted")
            raise
        except (Exception, SystemExit) as error:  # a failing cell is recorded and the run goes on
            outcome.statuses[cell.id] = "failed"
            outcome.errors[cell.id] = _describe(error)
            if world.main:
                plan.finished(cell, "failed", error=outcome.errors[cell.id],
                              traceback=getattr(error, "traceback", None) or traceback.format_exc())
        reporter.cell_finished(cell.id, outcome.statuses[cell.id], outcome.errors.get(cell.id))
    if world.main:
        plan.ended("finished")
    return world.broadcast(outcome)


def _cell_dataset(cell: Cell, datasets: dict[str, SegDataset], suite: Suite, run_dir: Path) -> SegDataset:
    """The images a cell evaluates: its dataset's, corrupted when the cell is a corrupted one (in the
    DataLoader's workers, kept in the suite's cache folder or the run folder's ``corruption_cache/``)."""
    clean = datasets[cell.dataset.name]
    if cell.corruption == CLEAN:
        return clean
    section = suite.corruptions
    cache = CorruptionCache(section.cache or run_dir / CORRUPTION_CACHE)
    return CorruptedDataset(clean, cell.corruption, cell.severity, section.seed, cache)


@dataclass
class _Plan:
    """Rank 0's bookkeeping of a run: the store, the manifest, and the cells left to evaluate (each with
    the fingerprint of the files it reads)."""

    store: RunStore
    manifest: dict[str, Any]
    cell_ids: list[str]
    to_run: dict[str, str | None]
    reference: str | None = None  # the corruptions' reference model, which normalises robustness.parquet

    def started(self, cell: Cell) -> None:
        self.manifest["cells"][cell.id] |= {"status": "running", "started": _now(), "error": None,
                                            "traceback": None}
        self.store.write_manifest(self.manifest)

    def finished(self, cell: Cell, status: str, **details: Any) -> None:
        """Record a cell's end; its folder is already written, the run-level tables wait for :meth:`ended`."""
        self.manifest["cells"][cell.id] |= {"status": status, "finished": _now(), **details}
        self.manifest["updated"] = _now()
        self.store.write_manifest(self.manifest)

    def ended(self, status: str) -> None:
        """Write the run-level tables of every complete cell, then the manifest that says the run ended."""
        self.store.write_tables(self.cell_ids, self.reference)
        self.manifest |= {"status": status, "updated": _now()}
        self.store.write_manifest(self.manifest)


def _plan(suite: Suite, run_dir: Path, resume: bool, suite_source: dict[str, Any] | None,
          device: torch.device, datasets: dict[str, SegDataset], world: World, stack: ExitStack) -> _Plan:
    """Take the run folder (its lock held until ``stack`` closes) and decide what to run.

    A cell to run loses its earlier result here, so the run's tables never show
    figures of settings or files that are no longer the suite's, even when the
    redo fails or is interrupted.
    """
    store = RunStore(run_dir)
    stack.enter_context(store.locked())
    store.remove_stale_temporaries()
    manifest = _start_manifest(store, suite, suite_source, device, datasets, world)
    to_run = {}
    for cell in suite.cells():
        inputs = paths_fingerprint(cell.model.input_paths(cell.dataset.name))
        fingerprint = manifest["datasets"][cell.dataset.name]["fingerprint"]
        if resume and _is_done(store, cell, fingerprint, inputs, device):
            manifest["cells"][cell.id]["status"] = "complete"
        else:
            to_run[cell.id] = inputs
            store.remove_cell(cell.id)
            manifest["cells"][cell.id] |= {"status": "pending", "error": None, "traceback": None}
    reference = corruption_reference(manifest)
    store.write_tables(list(manifest["cells"]), reference)
    store.write_manifest(manifest)
    return _Plan(store, manifest, [cell.id for cell in suite.cells()], to_run, reference)


def _warn_untrained(output: CellOutput, cell: Cell, reporter: Reporter) -> None:
    if output.summary["trained"] is False:
        reporter.warn(f"{cell.id}: model {cell.model.name!r} has random weights (no checkpoint); "
                      "its numbers are not those of a trained model (column 'trained' is False)")


def _describe(error: BaseException) -> str:
    """One line for the user; DataLoader workers wrap errors in a traceback, whose last line is the point."""
    if isinstance(error, CellFailed):
        return str(error)
    if isinstance(error, SystemExit):
        return f"SystemExit: the model's or dataset's code called sys.exit({error.code!r})"
    name = type(error).__name__
    text = str(error).strip()
    if "Original Traceback" in text:  # that last line is "module.Type: message"
        text = re.sub(rf"^([\w.]+\.)?{re.escape(name)}: ", "", text.splitlines()[-1])
    return f"{name}: {text}"


def _start_manifest(store: RunStore, suite: Suite, suite_source: dict[str, Any] | None,
                    device: torch.device, datasets: dict[str, SegDataset], world: World) -> dict[str, Any]:
    previous = store.read_manifest() if store.manifest_path().is_file() else {}
    manifest = {
        "segbench_version": __version__,
        "run_id": previous.get("run_id") or store.root.name,
        "created": previous.get("created") or _now(),
        "updated": _now(),
        "suite_name": suite.name,
        "suite_digest": suite.digest(),
        "suite": suite_source if suite_source is not None else suite.model_dump(mode="json"),
        "suite_resolved": suite.model_dump(mode="json"),
        "environment": environment(device),
        "world_size": world.size,
        "efficiency_scope": "each model measured on one device (rank 0's), never summed across ranks",
        "status": "running",
        "datasets": {name: {"fingerprint": ds.fingerprint(), "num_images": len(ds),
                            "num_classes": ds.info.num_classes, "class_names": ds.info.class_names,
                            "ignore_index": ds.info.ignore_index}
                     for name, ds in datasets.items()},
        "cells": {},
    }
    old_cells = previous.get("cells", {})
    for cell in suite.cells():
        manifest["cells"][cell.id] = old_cells.get(cell.id, {}) | {
            **cell.keys}
        manifest["cells"][cell.id].setdefault("status", "pending")
    return manifest
