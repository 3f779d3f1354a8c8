"""Run folders under careless and hostile use: concurrent runs, kill -9, foreign folders, broken files."""

import errno
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from textwrap import dedent

import pytest

from typer.testing import CliRunner

import segbench
from segbench.cli import app
from segbench.atomic import atomic_write_bytes
from segbench.errors import UserError

SLOW_SUITE = dedent("""\
    name: slow
    device: cpu
    batch_size: 1
    num_workers: {workers}
    save_predictions: true
    datasets:
      - {{name: shapes, type: synthetic, num_images: {images}, height: 16, width: 16}}
    models:
      - {{name: slow, type: python, factory: "tiny_nets:slow", kwargs: {{num_classes: 6, seconds: {seconds}}}, num_classes: 6}}
    """)


def start_run(suite: Path, run_dir: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "segbench", "run", str(suite), "--run-dir", str(run_dir)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ)


def wait_for(condition, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def cell_running(run_dir: Path) -> bool:
    try:
        manifest = json.loads((run_dir / "manifest.json").read_text())
    except (OSError, ValueError):
        return False
    return any(cell.get("status") == "running" for cell in manifest["cells"].values())


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def alive(pid: int) -> bool:
    """Running, not a zombie waiting for a parent that does not reap."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_a_second_run_into_a_folder_in_use_is_refused_and_the_first_loses_nothing(tmp_path, nets):
    suite = tmp_path / "slow.yaml"
    suite.write_text(SLOW_SUITE.format(workers=0, images=12, seconds=0.75))
    run_dir = tmp_path / "run"
    first = start_run(suite, run_dir)
    wait_for(lambda: cell_running(run_dir))
    second = subprocess.run([sys.executable, "-m", "segbench", "run", str(suite), "--run-dir", str(run_dir)],
                            capture_output=True, text=True, timeout=120)
    assert second.returncode == 2
    assert f"in use by another segbench run (pid {first.pid})" in second.stderr
    assert len(second.stderr.strip().splitlines()) == 1
    out, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    predictions = sorted(p.name for p in (run_dir / "cells" / "slow__shapes" / "predictions").iterdir())
    assert len(predictions) == 12
    assert json.loads((run_dir / "manifest.json").read_text())["cells"]["slow__shapes"]["status"] == "complete"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the kernel's parent-death signal is Linux's")
def test_kill_9_takes_the_dataloader_workers_along_and_leaves_the_folder_unlocked(tmp_path, nets):
    suite = tmp_path / "slow.yaml"
    suite.write_text(SLOW_SUITE.format(workers=2, images=40, seconds=0.5))
    run_dir = tmp_path / "run"
    process = start_run(suite, run_dir)
    wait_for(lambda: cell_running(run_dir) and len(children(process.pid)) >= 2)
    workers = children(process.pid)
    time.sleep(1.0)  # the workers have filled their prefetch queues and wait
    process.send_signal(signal.SIGKILL)
    process.wait()
    killed = time.monotonic()
    while any(alive(pid) for pid in workers) and time.monotonic() - killed < 10:
        time.sleep(0.05)
    assert not any(alive(pid) for pid in workers)
    assert time.monotonic() - killed < 2.0  # not after their next 5-second check of the parent

    suite.write_text(SLOW_SUITE.format(workers=2, images=40, seconds=0.0))
    result = subprocess.run([sys.executable, "-m", "segbench", "run", str(suite), "--run-dir", str(run_dir)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_a_folder_that_is_not_a_run_is_refused_and_untouched(tmp_path, nets):
    folder = tmp_path / "mine"
    folder.mkdir()
    for name in ("notes.txt", "draft.tmp", ".scratch.tmp"):
        (folder / name).write_text(name)
    suite = {"name": "t", "device": "cpu", "num_workers": 0,
             "datasets": [{"name": "shapes", "type": "synthetic", "num_images": 2, "height": 16, "width": 16}],
             "models": [{"name": "pw", "type": "python", "factory": "tiny_nets:pointwise",
                         "kwargs": {"num_classes": 6}, "num_classes": 6}]}
    with pytest.raises(UserError, match="not a segbench run folder"):
        segbench.run(suite, run_dir=folder)
    assert sorted(p.name for p in folder.iterdir()) == [".scratch.tmp", "draft.tmp", "notes.txt"]
    assert all((folder / name).read_text() == name for name in ("notes.txt", "draft.tmp", ".scratch.tmp"))

    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(UserError, match="is a file"):
        segbench.run(suite, run_dir=a_file)
    assert a_file.read_text() == "x"

    empty = tmp_path / "empty"
    empty.mkdir()
    assert segbench.run(suite, run_dir=empty) == empty


def test_a_full_disk_is_one_error_naming_the_file(tmp_path, monkeypatch):
    """A real ENOSPC: the temporary file is /dev/full."""
    target = tmp_path / "manifest.json"
    target.write_text("old")

    def full_disk(dir, prefix, suffix):
        path = Path(dir) / f"{prefix}x{suffix}"
        path.touch()
        return os.open("/dev/full", os.O_WRONLY), str(path)

    monkeypatch.setattr(tempfile, "mkstemp", full_disk)
    with pytest.raises(UserError) as info:
        atomic_write_bytes(target, b"new" * 10000)
    assert str(info.value) == f"{target}: cannot write: {os.strerror(errno.ENOSPC)}"
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifest.json"]


def broken_run_folders(root: Path, make_run) -> dict[str, Path]:
    """Run folders as a careless user or a broken disk leaves them."""
    folders = {}
    for name, content in (("list", b"[]"), ("binary", b"\x89PNG\r\n\x1a\n\x00\xff"), ("text", b"hello")):
        folder = root / name
        folder.mkdir(parents=True)
        (folder / "manifest.json").write_bytes(content)
        folders[name] = folder
    folders["manifest-folder"] = root / "manifest-folder"
    (folders["manifest-folder"] / "manifest.json").mkdir(parents=True)
    folders["a-file"] = root / "a-file"
    folders["a-file"].write_text("x")
    truncated = make_run(root / "truncated")
    data = (truncated / "summary.parquet").read_bytes()
    (truncated / "summary.parquet").write_bytes(data[: len(data) // 2])
    folders["truncated"] = truncated
    return folders


@pytest.mark.parametrize("command", ["report", "check", "show"])
def test_report_check_and_show_on_broken_folders_say_one_line_and_exit_2(tmp_path, fake_runs, command):
    import numpy as np

    def make_run(root):
        root.mkdir()
        return fake_runs.write(root, {("m", "d"): fake_runs.confusions(0, 3)})

    good = make_run(tmp_path / "good")
    for name, folder in broken_run_folders(tmp_path / "broken", make_run).items():
        args = {"report": [str(folder)], "check": [str(good), str(folder)],
                "show": [str(folder), "--out", str(tmp_path / "g.html")]}[command]
        result = CliRunner().invoke(app, [command, *args])
        assert result.exit_code == 2, (name, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and str(folder) in lines[0], (name, lines)
        assert "Traceback" not in result.stderr
    assert np.isfinite(segbench.load(good).summary["mIoU"]).all()


def test_the_store_keeps_no_cell_rows_and_writes_the_tables_from_the_cell_folders(tmp_path):
    """A run's memory does not grow with its cells: the rows live in cells/<id>/ only."""
    import gc
    import weakref

    import pandas as pd

    from segbench.store import CellOutput, RunStore

    store = RunStore(tmp_path / "run")
    store.root.mkdir()
    store.write_manifest({"cells": {}})
    keys = {"model": "m", "dataset": "d"}
    per_image = pd.DataFrame({**keys, "image_id": ["a", "b"], "aAcc": [0.5, 1.0]})
    per_class = pd.DataFrame({**keys, "class_id": [0], "IoU": [0.25]})
    store.write_cell("m__d", CellOutput({"cell_id": "m__d"}, {**keys, "aAcc": 0.75}, per_class, per_image))
    written = weakref.ref(per_image)
    del per_image, per_class
    gc.collect()
    assert written() is None

    store.write_tables(["m__d", "never_ran"])
    results = segbench.load(store.root)
    assert results.summary[["model", "dataset", "corruption", "aAcc"]].to_dict("records") == [
        {"model": "m", "dataset": "d", "corruption": "none", "aAcc": 0.75}]
    assert results.per_image["aAcc"].tolist() == [0.5, 1.0] and results.per_class["IoU"].tolist() == [0.25]
