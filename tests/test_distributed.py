"""Sharded runs under torchrun (gloo, CPU) against the single-process run, column by column."""

import json
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from segbench.distributed import World, portable
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


def write_suite(path: Path, models: list[dict], images: int = 7) -> Path:
    suite = {
        "name": "sharded", "device": "cpu", "batch_size": 2, "num_workers": 0,
        "datasets": [{"name": "shapes", "type": "synthetic", "num_images": images,
                      "height": 32, "width": 48, "seed": 3}],
        "models": models,
    }
    path.write_text(yaml.safe_dump(suite, sort_keys=False))
    return path


def run(args: list[str], timeout: int = 240) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout)


def test_two_ranks_give_the_single_process_results_column_for_column(tmp_path, nets):
    suite = write_suite(tmp_path / "suite.yaml", [
        {"name": "fcn", "type": "builtin", "arch": "fcn"},
        {"name": "pointwise", "type": "python", "factory": "tiny_nets:pointwise",
         "kwargs": {"num_classes": 6}, "num_classes": 6},
    ])
    single = run([sys.executable, "-m", "segbench", "run", str(suite), "--run-dir", str(tmp_path / "one")])
    assert single.returncode == 0, single.stderr
    sharded = run([*TORCHRUN, "-m", "segbench", "run", str(suite), "--run-dir", str(tmp_path / "two")])
    assert sharded.returncode == 0, sharded.stderr
    assert sharded.stdout.strip().splitlines()[-1] == str(tmp_path / "two")  # rank 0 alone prints
    one, two = load(tmp_path / "one"), load(tmp_path / "two")
    assert two.manifest["world_size"] == 2 and one.manifest["world_size"] == 1
    for _, images in two.per_image.groupby("model"):  # each image once, in dataset order
        assert list(images["image_id"]) == [f"synth_{i:05d}" for i in range(7)]
    for name in ("summary", "per_class", "per_image", "confusion"):
        ours, theirs = getattr(two, name), getattr(one, name)
        columns = [c for c in theirs.columns if c not in TIMING]
        assert list(ours.columns) == list(theirs.columns)
        pd.testing.assert_frame_equal(ours[columns], theirs[columns], check_exact=True)
    cell = json.loads((tmp_path / "two" / "cells" / "fcn__shapes" / "cell.json").read_text())
    assert cell["world_size"] == 2


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
