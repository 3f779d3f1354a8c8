"""Sharded runs under torchrun (gloo, CPU) against the single-process run, column by column; workers per rank."""

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from segbench import runner
from segbench.distributed import World, portable, world_from_env
from segbench.metrics.confusion import AccuracyMetric
from segbench.store import load

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
TIMING = {"eval_seconds"}

ONE_RANK_FAILS = '''
import os

import torch
from torch import nn


class FailsOnRank1(nn.Module):
    def __init__(self, num_classes):
        super().__init__()
        self.conv = nn.Conv2d(3, num_classes, kernel_size=1)

    def forward(self, x):
        if os.environ.get("RANK") == "1":
            raise RuntimeError("rank 1 lost its way")
        return self.conv(x)


def fails_on_rank_1(num_classes):
    torch.manual_seed(0)
    return FailsOnRank1(num_classes)
'''


@pytest.mark.parametrize("count", [0, 1, 2, 7, 10])
@pytest.mark.parametrize("size", [1, 2, 3, 8])
def test_shards_cover_every_item_once_in_order(count, size):
    shards = [World(rank, size).shard(count) for rank in range(size)]
    assert [i for shard in shards for i in shard] == list(range(count))
    assert max(map(len, shards)) - min(map(len, shards)) <= 1


def test_states_that_travel_between_ranks_merge_into_the_one_pass_state():
    """What the gather does to a state: portable, pickled, unpickled, merged in rank order."""
    rng = np.random.default_rng(0)
    images = [(torch.from_numpy(rng.integers(0, 4, (9, 11))), torch.from_numpy(rng.integers(0, 4, (9, 11))))
              for _ in range(5)]
    one_pass, halves = AccuracyMetric(4), [AccuracyMetric(4), AccuracyMetric(4)]
    for i, (pred, label) in enumerate(images):
        one_pass.update(pred, label, str(i))
        halves[i * 2 // len(images)].update(pred, label, str(i))
    first, second = (pickle.loads(pickle.dumps(portable(half))) for half in halves)
    first.merge(second)
    assert torch.equal(first.confusion, one_pass.confusion)
    assert first.records == one_pass.records


@pytest.mark.parametrize(("cores", "ranks_per_node", "loaders", "threads"), [
    (16, None, 4, 5), (16, 1, 4, 5), (16, 2, 4, 4), (16, 3, 4, 2), (16, 4, 3, 2), (16, 16, 0, 1), (3, 4, 0, 1),
])
def test_auto_workers_are_sized_from_the_cores_of_each_rank_on_the_node(monkeypatch, cores, ranks_per_node,
                                                                         loaders, threads):
    """min(4, rank's cores - 1) DataLoader processes; min(5 groups, max(1, rank's cores // 2)) metric threads."""
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cores)), raising=False)
    if ranks_per_node is None:  # not under torchrun
        monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    else:
        monkeypatch.setenv("LOCAL_WORLD_SIZE", str(ranks_per_node))
    assert world_from_env().local_size == (ranks_per_node or 1)
    assert (runner.loader_workers("auto"), runner.metric_workers("auto", 5)) == (loaders, threads)
    assert (runner.loader_workers(2), runner.metric_workers(3, 5)) == (2, 3)  # numbers are taken as given


def write_suite(path: Path, models: list[dict], images: int = 7, **extra) -> Path:
    suite = {
        "name": "sharded", "device": "cpu", "batch_size": 2, "num_workers": 0,
        "datasets": [{"name": "shapes", "type": "synthetic", "num_images": images,
                      "height": 32, "width": 48, "seed": 3}],
        "models": models, **extra,
    }
    path.write_text(yaml.safe_dump(suite, sort_keys=False))
    return path


def run(args: list[str], timeout: int = 240, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, env={**os.environ, **env})


def test_two_ranks_with_metric_threads_give_the_single_inline_process_results_column_for_column(tmp_path, nets):
    """Every default group (boundary and distance among them) and calibration: the shards' states are built on
    3 metric threads per rank, then merged on rank 0; the reference scores inline in one process.

    The model's float outputs (calibration's confidences) can differ in their last bits with the size of the batch
    an image is in and with torch's thread count, which torchrun sets to 1: both runs compute each image alone
    on one thread, so that the model gives both the same numbers and any difference is segbench's."""
    models = [{"name": "fcn", "type": "builtin", "arch": "fcn"},
              {"name": "pointwise", "type": "python", "factory": "tiny_nets:pointwise",
               "kwargs": {"num_classes": 6}, "num_classes": 6}]
    suites = {workers: write_suite(tmp_path / f"suite{workers}.yaml", models, batch_size=1,
                                   metric_workers=workers, metrics={"calibration": {}})
              for workers in (0, 3)}
    single = run([sys.executable, "-m", "segbench", "run", str(suites[0]), "--run-dir", str(tmp_path / "one")],
                 OMP_NUM_THREADS="1")
    assert single.returncode == 0, single.stderr
    sharded = run([*TORCHRUN, "-m", "segbench", "run", str(suites[3]), "--run-dir", str(tmp_path / "two")],
                  OMP_NUM_THREADS="1")
    assert sharded.returncode == 0, sharded.stderr
    assert sharded.stdout.strip().splitlines()[-1] == str(tmp_path / "two")  # rank 0 alone prints
    one, two = load(tmp_path / "one"), load(tmp_path / "two")
    assert two.manifest["world_size"] == 2 and one.manifest["world_size"] == 1
    assert {"BF", "mBIoU", "HD95", "ECE"} <= set(one.per_image.columns)
    assert one.summary[["mBF", "mBIoU", "mHD95", "ECE", "MCE"]].notna().all().all()
    for _, images in two.per_image.groupby("model"):  # each image once, in dataset order
        assert list(images["image_id"]) == [f"synth_{i:05d}" for i in range(7)]
    for name in ("summary", "per_class", "per_image", "confusion", "calibration"):
        ours, theirs = getattr(two, name), getattr(one, name)
        columns = [c for c in theirs.columns if c not in TIMING]
        assert list(ours.columns) == list(theirs.columns) and len(theirs) > 0
        pd.testing.assert_frame_equal(ours[columns], theirs[columns], check_exact=True)
    for run_dir, workers, world_size in ((tmp_path / "one", 0, 1), (tmp_path / "two", 3, 2)):
        cell = json.loads((run_dir / "cells" / "fcn__shapes" / "cell.json").read_text())
        assert (cell["world_size"], cell["workers"]["metric_workers"]) == (world_size, workers)


def test_a_failing_rank_fails_the_cell_with_its_error_and_the_run_goes_on(tmp_path, nets):
    (nets / "rank_nets.py").write_text(ONE_RANK_FAILS)
    suite = write_suite(tmp_path / "suite.yaml", [
        {"name": "flaky", "type": "python", "factory": "rank_nets:fails_on_rank_1",
         "kwargs": {"num_classes": 6}, "num_classes": 6},
        {"name": "pointwise", "type": "python", "factory": "tiny_nets:pointwise",
         "kwargs": {"num_classes": 6}, "num_classes": 6},
    ], images=5)
    result = run([*TORCHRUN, "-m", "segbench", "run", str(suite), "--run-dir", str(tmp_path / "run")],
                 timeout=180)
    assert result.returncode == 1, result.stderr
    manifest = load(tmp_path / "run").manifest
    flaky = manifest["cells"]["flaky__shapes"]
    assert flaky["status"] == "failed"
    assert flaky["error"] == "rank 1: RuntimeError: rank 1 lost its way"
    assert "FailsOnRank1" in flaky["traceback"] or "forward" in flaky["traceback"]
    assert manifest["cells"]["pointwise__shapes"]["status"] == "complete"
    assert not (tmp_path / "run" / "cells" / "flaky__shapes").exists()
    assert "failed: flaky__shapes: rank 1: RuntimeError" in result.stderr


def test_corrupted_cells_are_sharded_like_any_other(tmp_path, nets):
    """Each rank corrupts its own images (into the one cache folder); rank 0 merges: the single process's rows."""
    pytest.importorskip("imagecorruptions")
    models = [{"name": "pointwise", "type": "python", "factory": "tiny_nets:pointwise",
               "kwargs": {"num_classes": 6}, "num_classes": 6}]
    suite = write_suite(tmp_path / "suite.yaml", models, images=5,
                        corruptions={"names": ["gaussian_noise", "fog"], "severities": [2]})
    runs = {"one": [sys.executable], "two": TORCHRUN}
    for name, launcher in runs.items():
        result = run([*launcher, "-m", "segbench", "run", str(suite), "--run-dir", str(tmp_path / name)])
        assert result.returncode == 0, result.stderr
    one, two = load(tmp_path / "one"), load(tmp_path / "two")
    assert list(two.summary["corruption"]) == ["none", "gaussian_noise", "fog"]
    for table in ("summary", "per_image", "robustness"):
        ours, theirs = getattr(two, table), getattr(one, table)
        columns = [c for c in theirs.columns if c not in TIMING]
        pd.testing.assert_frame_equal(ours[columns], theirs[columns], check_exact=True)
    assert len(list((tmp_path / "two" / "corruption_cache").rglob("*.png"))) == 5 * 2
