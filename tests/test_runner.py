"""The runner end to end, in-process: exact numbers, failing cells, resume, bad input."""

import json
import subprocess
import sys
import threading
from pathlib import Path
from textwrap import dedent

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

import segbench
from segbench.api import execute
from segbench.images import write_label
from segbench.data.synthetic import SyntheticDataset
from segbench.errors import UserError
from segbench.config import IMAGENET_MEAN, IMAGENET_STD
from segbench.registry import load_plugins

load_plugins()  # tests below read METRICS directly, also when they run on their own

def suite_dict(models, datasets=None, **extra):
    datasets = datasets or [{"name": "shapes", "type": "synthetic", "num_images": 5,
                             "height": 24, "width": 40}]
    return {"name": "t", "device": "cpu", "batch_size": 2, "num_workers": 0,
            "datasets": datasets, "models": models, **extra}


POINTWISE = {"name": "pw", "type": "python", "factory": "tiny_nets:pointwise",
             "kwargs": {"num_classes": 6}, "num_classes": 6}


def brute_force_miou(preds, labels, num_classes, ignore=255):
    """The definition read literally: per class, masks over the whole dataset."""
    pred = np.concatenate([p.ravel() for p in preds])
    label = np.concatenate([lab.ravel() for lab in labels])
    keep = label != ignore
    pred, label = pred[keep], label[keep]
    ious = []
    for c in range(num_classes):
        union = np.sum((pred == c) | (label == c))
        if union:
            ious.append(np.sum((pred == c) & (label == c)) / union)
    return float(np.mean(ious)), float(np.mean(pred == label))


def test_python_model_numbers_are_exact(tmp_path, nets):
    run_dir = segbench.run(suite_dict([POINTWISE]), run_dir=tmp_path / "run")
    results = segbench.load(run_dir)

    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 6, kernel_size=1)
    data = SyntheticDataset(num_images=5, height=24, width=40)
    preds, labels = [], []
    for i in range(len(data)):
        sample = data.load(i)
        x = (torch.from_numpy(sample.image).float() - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
        with torch.no_grad():
            preds.append(conv(x.permute(2, 0, 1)[None]).argmax(1)[0].numpy())
        labels.append(sample.label)
    miou, aacc = brute_force_miou(preds, labels, 6)

    row = results.summary.iloc[0]
    assert (row["model"], row["dataset"]) == ("pw", "shapes")
    assert row["mIoU"] == pytest.approx(miou, abs=1e-12)
    assert row["aAcc"] == pytest.approx(aacc, abs=1e-12)
    assert len(set(np.concatenate([p.ravel() for p in preds]))) > 1  # the check means something
    assert list(results.per_image["image_id"]) == data.ids()
    assert len(results.per_class) == 6
    assert list(results.per_class["class_name"]) == data.info.class_names


def test_per_image_counts_recompute_the_summary(tmp_path, nets):
    results = segbench.load(segbench.run(suite_dict([POINTWISE]), run_dir=tmp_path / "run"))
    inter = np.sum(np.stack(results.per_image["area_intersect"].to_list()), axis=0)
    union = np.sum(np.stack(results.per_image["area_union"].to_list()), axis=0)
    defined = union > 0
    assert results.summary["mIoU"].iloc[0] == pytest.approx(np.mean(inter[defined] / union[defined]))
    assert np.allclose(results.per_class["IoU"].to_numpy()[defined], inter[defined] / union[defined])


def test_failing_cell_is_recorded_and_the_others_finish(tmp_path, nets):
    models = [{"name": "bad", "type": "python", "factory": "tiny_nets:exploding", "num_classes": 6},
              POINTWISE]
    outcome = execute(suite_dict(models), run_dir=tmp_path / "run")
    assert outcome.statuses == {"bad__shapes": "failed", "pw__shapes": "complete"}
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["cells"]["bad__shapes"]["status"] == "failed"
    assert "boom in forward" in manifest["cells"]["bad__shapes"]["error"]
    assert not (tmp_path / "run" / "cells" / "bad__shapes").exists()
    assert list(segbench.load(tmp_path / "run").summary["model"]) == ["pw"]


def test_resume_skips_complete_cells_and_redoes_changed_ones(tmp_path, nets):
    run_dir = tmp_path / "run"
    segbench.run(suite_dict([POINTWISE]), run_dir=run_dir)
    cell_json = run_dir / "cells" / "pw__shapes" / "cell.json"
    first = cell_json.stat().st_mtime_ns
    outcome = execute(suite_dict([POINTWISE]), run_dir=run_dir)
    assert outcome.statuses == {"pw__shapes": "skipped"}
    assert cell_json.stat().st_mtime_ns == first
    changed = {**POINTWISE, "inference": {"flip": True}}
    outcome = execute(suite_dict([changed]), run_dir=run_dir)
    assert outcome.statuses == {"pw__shapes": "complete"}
    outcome = execute(suite_dict([changed]), run_dir=run_dir, resume=False)
    assert outcome.statuses == {"pw__shapes": "complete"}


def test_a_class_count_mismatch_exits_2_before_work_and_writes_nothing(tmp_path, nets, folder_data):
    """The 3-class model fits the folder dataset and not the 6-class synthetic one: each pair is checked."""
    model = {**POINTWISE, "kwargs": {"num_classes": 3}, "num_classes": 3}
    mine = {"name": "mine", "type": "folder", "root": str(folder_data), "num_classes": 3}
    suite = tmp_path / "s.yaml"
    suite.write_text(json.dumps(suite_dict([model], datasets=[mine, *suite_dict([])["datasets"]])))
    result = subprocess.run([sys.executable, "-m", "segbench", "run", str(suite), "--run-dir", str(tmp_path / "run")],
                            capture_output=True, text=True)
    assert result.returncode == 2, result.stderr
    assert result.stderr == ("error: models[0].num_classes (pw): model 'pw' predicts 3 classes but dataset "
                             "'shapes' has 6\n")  # one line, nothing before it
    assert not (tmp_path / "run").exists()


@pytest.fixture
def folder_data(tmp_path):
    """A 3-class folder dataset of two 6x8 images."""
    root = tmp_path / "mine"
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    rng = np.random.default_rng(0)
    for stem in ("a", "b"):
        Image.fromarray(rng.integers(0, 255, (6, 8, 3), dtype=np.uint8)).save(root / "images" / f"{stem}.png")
        write_label(root / "labels" / f"{stem}.png", rng.integers(0, 3, (6, 8)).astype(np.uint8))
    return root


def folder_suite(root, preds_root, **dataset_extra):
    return suite_dict([{"name": "saved", "type": "predictions", "root": str(preds_root)}],
                      datasets=[{"name": "mine", "type": "folder", "root": str(root), "num_classes": 3,
                                 **dataset_extra}])


def test_predictions_model_evaluates_saved_pngs(tmp_path, folder_data):
    preds = tmp_path / "preds"
    preds.mkdir()
    for stem in ("a", "b"):  # perfect predictions, except one pixel of b
        label = np.array(Image.open(folder_data / "labels" / f"{stem}.png"))
        if stem == "b":
            label[0, 0] = (label[0, 0] + 1) % 3
        write_label(preds / f"{stem}.png", label)
    results = segbench.load(segbench.run(folder_suite(folder_data, preds), run_dir=tmp_path / "run"))
    assert results.summary["aAcc"].iloc[0] == pytest.approx(95 / 96)


def test_label_out_of_range_names_image_and_values(tmp_path, folder_data):
    write_label(folder_data / "labels" / "b.png", np.full((6, 8), 7, dtype=np.uint8))
    outcome = execute(folder_suite(folder_data, folder_data / "labels"),
                                   run_dir=tmp_path / "run")
    error = outcome.errors["saved__mine"]
    assert "'b'" in error and "7" in error


def test_invalid_labels_can_be_mapped_to_ignore_and_counted(tmp_path, folder_data):
    label = np.zeros((6, 8), dtype=np.uint8)
    label[0, :3] = 9
    write_label(folder_data / "labels" / "b.png", label)
    preds = tmp_path / "preds"
    preds.mkdir()
    for stem in ("a", "b"):
        write_label(preds / f"{stem}.png", np.zeros((6, 8), dtype=np.uint8))
    run_dir = segbench.run(folder_suite(folder_data, preds, invalid_labels="ignore"),
                           run_dir=tmp_path / "run")
    results = segbench.load(run_dir)
    assert results.summary["invalid_label_pixels"].iloc[0] == 3
    assert dict(zip(results.per_image["image_id"], results.per_image["invalid_label_pixels"])) == {"a": 0, "b": 3}


def test_prediction_of_another_size_fails_the_cell(tmp_path, folder_data):
    preds = tmp_path / "preds"
    preds.mkdir()
    for stem in ("a", "b"):
        write_label(preds / f"{stem}.png", np.zeros((5, 8), dtype=np.uint8))
    outcome = execute(folder_suite(folder_data, preds), run_dir=tmp_path / "run")
    assert "5x8" in outcome.errors["saved__mine"] and "6x8" in outcome.errors["saved__mine"]


def test_missing_dataset_folder_writes_nothing(tmp_path):
    suite = folder_suite(tmp_path / "absent", tmp_path)
    with pytest.raises(UserError, match="not found"):
        segbench.run(suite, run_dir=tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_python_model_that_does_not_import_writes_nothing(tmp_path):
    model = {"name": "x", "type": "python", "factory": "no_such_module_xyz:build", "num_classes": 6}
    with pytest.raises(UserError) as info:
        segbench.run(suite_dict([model]), run_dir=tmp_path / "run")
    assert "no_such_module_xyz" in str(info.value) and info.value.field.startswith("models[0]")
    assert not (tmp_path / "run").exists()


def test_suite_file_paths_and_manifest_provenance(tmp_path, nets):
    suite_file = tmp_path / "s.yaml"
    suite_file.write_text(dedent("""\
        name: prov
        device: cpu
        num_workers: 0
        datasets:
          - {name: shapes, type: synthetic, num_images: 2, height: 16, width: 16}
        models:
          - {name: pw, type: python, factory: "tiny_nets:pointwise", kwargs: {num_classes: 6}, num_classes: 6}
        """))
    run_dir = segbench.run(suite_file, out=tmp_path / "results")
    assert run_dir.parent == tmp_path / "results" / "prov"
    manifest = segbench.load(run_dir).manifest
    assert manifest["suite"]["text"] == suite_file.read_text()
    assert manifest["environment"]["versions"]["torch"] == torch.__version__
    assert len(manifest["datasets"]["shapes"]["fingerprint"]) == 64
    assert manifest["cells"]["pw__shapes"]["status"] == "complete"


def test_run_folders_get_the_modes_of_a_plain_write(tmp_path, monkeypatch):
    """Temporary files and folders are 0600/0700; what a run leaves must be readable by the team."""
    monkeypatch.setattr("segbench.atomic.UMASK", 0o022)
    suite = {"name": "modes", "device": "cpu", "num_workers": 0, "save_predictions": True,
             "datasets": [{"name": "shapes", "type": "synthetic", "num_images": 2, "height": 16, "width": 24}],
             "models": [{"name": "fcn", "type": "builtin", "arch": "fcn"}]}
    run_dir = segbench.run(suite, run_dir=tmp_path / "run")
    cell = run_dir / "cells" / "fcn__shapes"
    for path in (run_dir / "manifest.json", run_dir / "summary.parquet", cell / "cell.json",
                 cell / "predictions" / "synth_00000.png"):
        assert path.stat().st_mode & 0o777 == 0o644, path
    for folder in (cell, cell / "predictions"):
        assert folder.stat().st_mode & 0o777 == 0o755, folder


# ---------------------------------------------------------------- nothing lost, nothing stale

def test_resume_redoes_a_cell_whose_checkpoint_was_overwritten_in_place(tmp_path, nets):
    """Same path, same size, other weights: the old numbers must not survive as 'complete, skipped'."""
    checkpoint = tmp_path / "latest.pth"
    torch.save(torch.nn.Conv2d(3, 6, kernel_size=1).state_dict(), checkpoint)
    model = {**POINTWISE, "checkpoint": str(checkpoint)}
    run_dir = tmp_path / "run"
    first = segbench.load(segbench.run(suite_dict([model]), run_dir=run_dir)).summary["mIoU"].iloc[0]
    torch.manual_seed(7)
    torch.save(torch.nn.Conv2d(3, 6, kernel_size=1).state_dict(), checkpoint)
    outcome = execute(suite_dict([model]), run_dir=run_dir)
    assert outcome.statuses == {"pw__shapes": "complete"}
    results = segbench.load(run_dir)
    assert results.summary["mIoU"].iloc[0] != first
    record = json.loads((run_dir / "cells" / "pw__shapes" / "cell.json").read_text())
    from segbench.fingerprint import file_sha256
    assert record["provenance"]["checkpoint_sha256"] == file_sha256(checkpoint)
    assert execute(suite_dict([model]), run_dir=run_dir).statuses == {"pw__shapes": "skipped"}


def test_resume_redoes_a_cell_whose_saved_predictions_changed(tmp_path, folder_data):
    preds = tmp_path / "preds"
    preds.mkdir()
    for stem in ("a", "b"):
        write_label(preds / f"{stem}.png", np.array(Image.open(folder_data / "labels" / f"{stem}.png")))
    run_dir = tmp_path / "run"
    assert segbench.load(segbench.run(folder_suite(folder_data, preds), run_dir=run_dir)).summary[
        "aAcc"].iloc[0] == 1.0
    write_label(preds / "b.png", np.zeros((6, 8), dtype=np.uint8))
    outcome = execute(folder_suite(folder_data, preds), run_dir=run_dir)
    assert outcome.statuses == {"saved__mine": "complete"}
    assert segbench.load(run_dir).summary["aAcc"].iloc[0] < 1.0


def test_a_failed_redo_leaves_no_stale_figures(tmp_path, nets):
    run_dir = tmp_path / "run"
    segbench.run(suite_dict([POINTWISE]), run_dir=run_dir)
    broken = {**POINTWISE, "kwargs": {"num_classes": 3}}  # settings change, and the redo fails
    outcome = execute(suite_dict([broken], metrics={"boundary": {"tolerance": "2px"}}), run_dir=run_dir)
    assert outcome.statuses == {"pw__shapes": "failed"}
    results = segbench.load(run_dir)
    assert results.summary.empty and results.per_class.empty and results.per_image.empty
    assert not (run_dir / "cells" / "pw__shapes").exists()
    assert results.manifest["cells"]["pw__shapes"]["status"] == "failed"
    # a gate against a run without figures compares nothing: it cannot pass
    gate = subprocess.run([sys.executable, "-m", "segbench", "check", str(run_dir), str(run_dir)],
                          capture_output=True, text=True)
    assert gate.returncode == 2 and "no complete cell" in gate.stderr and "Traceback" not in gate.stderr


def test_system_exit_in_user_code_fails_the_cell_and_the_run_goes_on(tmp_path, nets):
    exiting = {"name": "exits", "type": "python", "factory": "tiny_nets:raising",
               "kwargs": {"error": "SystemExit", "args": [3]}, "num_classes": 6}
    scripted = {"name": "argparse", "type": "python", "factory": "tiny_nets:parses_arguments",
                "kwargs": {"num_classes": 6}, "num_classes": 6}
    outcome = execute(suite_dict([exiting, scripted, POINTWISE]), run_dir=tmp_path / "run")
    assert outcome.statuses == {"exits__shapes": "failed", "argparse__shapes": "failed",
                                "pw__shapes": "complete"}
    assert outcome.errors["exits__shapes"] == "SystemExit: the model's or dataset's code called sys.exit(3)"
    assert outcome.errors["argparse__shapes"] == ("SystemExit: the model's or dataset's code called "
                                                  "sys.exit(2)")
    manifest = segbench.load(tmp_path / "run").manifest
    assert [manifest["cells"][c]["status"] for c in outcome.statuses] == ["failed", "failed", "complete"]


def test_a_factory_module_that_exits_on_import_is_a_user_error(tmp_path, nets):
    (nets / "script_nets.py").write_text("import sys\nsys.exit('usage: script_nets.py DATA')\n")
    model = {"name": "s", "type": "python", "factory": "script_nets:build", "num_classes": 6}
    with pytest.raises(UserError, match="cannot import module 'script_nets'.*SystemExit"):
        segbench.run(suite_dict([model]), run_dir=tmp_path / "run")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_non_finite_scores_fail_the_cell_naming_model_and_image(tmp_path, nets, value):
    model = {"name": "odd", "type": "python", "factory": "tiny_nets:non_finite",
             "kwargs": {"num_classes": 6, "value": value}, "num_classes": 6}
    outcome = execute(suite_dict([model]), run_dir=tmp_path / "run")
    assert outcome.statuses == {"odd__shapes": "failed"}
    assert outcome.errors["odd__shapes"] == ("DataError: model 'odd' returned non-finite scores (NaN or inf) "
                                             "for image 'synth_00001'")


def test_ctrl_c_stops_the_run_and_the_manifest_says_interrupted(tmp_path, nets):
    from segbench.runner import Interrupted

    stopping = {"name": "stop", "type": "python", "factory": "tiny_nets:raising",
                "kwargs": {"error": "KeyboardInterrupt"}, "num_classes": 6}
    run_dir = tmp_path / "run"
    with pytest.raises(Interrupted) as info:
        execute(suite_dict([POINTWISE, stopping, {**POINTWISE, "name": "pw2"}]), run_dir=run_dir)
    assert info.value.run_dir == run_dir
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "interrupted"
    assert {c: e["status"] for c, e in manifest["cells"].items()} == {
        "pw__shapes": "complete", "stop__shapes": "interrupted", "pw2__shapes": "pending"}
    outcome = execute(suite_dict([POINTWISE, {**POINTWISE, "name": "pw2"}]), run_dir=run_dir)
    assert outcome.statuses == {"pw__shapes": "skipped", "pw2__shapes": "complete"}
    assert json.loads((run_dir / "manifest.json").read_text())["status"] == "finished"


def test_ctrl_c_between_cells_is_recorded_and_resumable(tmp_path, nets):
    from segbench.runner import Interrupted, Reporter

    class StopAfterFirstCell(Reporter):
        def cell_finished(self, cell_id, status, error):
            raise KeyboardInterrupt

    run_dir = tmp_path / "run"
    with pytest.raises(Interrupted):
        execute(suite_dict([POINTWISE, {**POINTWISE, "name": "pw2"}]), run_dir=run_dir,
                reporter=StopAfterFirstCell())
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "interrupted"
    assert {c: e["status"] for c, e in manifest["cells"].items()} == {"pw__shapes": "complete",
                                                                      "pw2__shapes": "pending"}


def test_a_worker_error_is_described_once(tmp_path, folder_data):
    (folder_data / "images" / "b.png").write_bytes(b"not a png")
    suite = folder_suite(folder_data, folder_data / "labels")
    suite["num_workers"] = 1
    before = set(threading.enumerate())
    error = execute(suite, run_dir=tmp_path / "run").errors["saved__mine"]
    assert error.startswith("DataError: ") and "segbench.errors" not in error and "b.png" in error
    # the failed loader's queue thread ended with the cell, not at some later garbage collection
    assert [t.name for t in threading.enumerate() if t not in before] == []


def test_the_loader_decodes_while_the_model_is_built(tmp_path, nets, monkeypatch):
    """The DataLoader's workers start before the model's build (seconds for a real net), so the first batch
    is decoded meanwhile; the figures are those of a loader without workers."""
    import multiprocessing

    import tiny_nets

    children = []

    def pointwise(num_classes):
        children.append(len(multiprocessing.active_children()))
        return original(num_classes)

    original = tiny_nets.pointwise
    monkeypatch.setattr(tiny_nets, "pointwise", pointwise)
    with_workers = execute(suite_dict([POINTWISE], num_workers=1), run_dir=tmp_path / "workers")
    inline = execute(suite_dict([POINTWISE]), run_dir=tmp_path / "inline")
    assert with_workers.ok and inline.ok
    assert children[0] >= 1 and children[-1] == 0  # a worker was running when the model was built
    pd.testing.assert_frame_equal(segbench.load(tmp_path / "workers").per_image,
                                  segbench.load(tmp_path / "inline").per_image)


def test_a_checkpoint_that_does_not_fit_is_one_line(tmp_path, nets):
    checkpoint = tmp_path / "other.pth"
    torch.save(torch.nn.Conv2d(3, 4, kernel_size=1).state_dict(), checkpoint)
    outcome = execute(suite_dict([{**POINTWISE, "checkpoint": str(checkpoint)}]), run_dir=tmp_path / "run")
    error = outcome.errors["pw__shapes"]
    assert "\n" not in error
    assert error.startswith(f"UserError: {checkpoint}: checkpoint does not fit the model: size mismatch for weight")


def test_the_run_tables_are_written_when_the_run_starts_and_ends_never_after_a_cell(tmp_path, nets, monkeypatch):
    """200 cells: after a cell only its folder and the manifest are written, so the bookkeeping of a cell
    costs the same whatever the number of earlier cells; each cell's files are read once per write."""
    from collections import Counter

    import pandas as pd

    from segbench import store

    events = []
    read, write_table, write_cell = pd.read_parquet, store.atomic_write_table, store.RunStore.write_cell
    monkeypatch.setattr(pd, "read_parquet", lambda path, *a, **k: events.append(("read", Path(path)))
                        or read(path, *a, **k))
    monkeypatch.setattr(store, "atomic_write_table", lambda path, frame: events.append(("table", path.name))
                        or write_table(path, frame))
    monkeypatch.setattr(store.RunStore, "write_cell", lambda self, cell_id, output: events.append(
        ("cell", cell_id)) or write_cell(self, cell_id, output))
    models = [{**POINTWISE, "name": f"m{i}"} for i in range(20)]
    datasets = [{"name": f"d{i}", "type": "synthetic", "num_images": 1, "height": 8, "width": 8, "seed": i}
                for i in range(10)]
    suite = suite_dict(models, datasets, metrics={"boundary": None, "distance": None})
    run_dir = tmp_path / "run"

    def bookkeeping():
        """The events before the first cell, between the cells, and after the last; then forgotten."""
        cells = [i for i, (kind, _) in enumerate(events) if kind == "cell"]
        first, last = cells[0], cells[-1]
        parts = events[:first], [e for e in events[first:last] if e[0] != "cell"], events[last + 1:]
        events.clear()
        return parts

    assert execute(suite, run_dir=run_dir).ok
    before, between, after = bookkeeping()
    row_tables = ["summary.parquet", "summary.csv", "per_class.parquet", "per_image.parquet"]
    assert before == [("table", name) for name in row_tables]  # no complete cell yet
    assert between == []
    assert [name for kind, name in after if kind == "table"] == row_tables + ["confusion.parquet"]
    reads = Counter(path.relative_to(run_dir) for kind, path in after if kind == "read")
    assert len(reads) == 3 * 200 and set(reads.values()) == {1}  # per_class, per_image, confusion
    tables = segbench.load(run_dir)
    assert len(tables.summary) == 200 and len(tables.per_image) == 200 and len(tables.per_class) == 1200

    events.clear()  # a resume that redoes one model's 10 cells reads each kept cell when it starts and ends
    suite["models"][0] = {**POINTWISE, "name": "m0", "inference": {"flip": True}}
    outcome = execute(suite, run_dir=run_dir)
    assert sum(status == "complete" for status in outcome.statuses.values()) == 10
    before, between, after = bookkeeping()
    assert between == []
    assert len([e for e in before if e[0] == "read"]) == 3 * 190
    assert len([e for e in after if e[0] == "read"]) == 3 * 200
    assert len(segbench.load(run_dir).summary) == 200


def test_an_interrupted_run_has_the_tables_of_every_cell_complete_before_it(tmp_path, nets):
    from segbench.runner import Interrupted, Reporter

    class Loads(Reporter):
        """How many rows the run's summary has when each cell finishes."""

        def __init__(self):
            self.rows, self.file_rows = [], []

        def cell_finished(self, cell_id, status, error):
            self.rows.append(len(segbench.load(run_dir).summary))
            self.file_rows.append(len(pd.read_parquet(run_dir / "summary.parquet")))

    failing = {"name": "bad", "type": "python", "factory": "tiny_nets:raising",
               "kwargs": {"error": "RuntimeError"}, "num_classes": 6}
    stopping = {"name": "stop", "type": "python", "factory": "tiny_nets:raising",
                "kwargs": {"error": "KeyboardInterrupt"}, "num_classes": 6}
    run_dir = tmp_path / "run"
    loads = Loads()
    with pytest.raises(Interrupted):
        execute(suite_dict([POINTWISE, failing, {**POINTWISE, "name": "pw2"}, stopping]), run_dir=run_dir,
                reporter=loads)
    assert loads.file_rows == [0, 0, 0]  # during a run the file holds the cells complete when it started
    assert loads.rows == [1, 1, 2]  # and load, which reads a running run's cell folders, every one so far
    results = segbench.load(run_dir)
    assert results.manifest["status"] == "interrupted"
    assert results.manifest["cells"]["bad__shapes"]["status"] == "failed"
    assert sorted(results.summary["model"]) == ["pw", "pw2"]
    assert sorted(set(results.per_class["model"])) == sorted(set(results.per_image["model"])) == ["pw", "pw2"]


def test_a_killed_run_loads_every_cell_it_completed(tmp_path, nets):
    """kill -9 ends a run before it writes its tables: the manifest still says running, and load reads the
    cell folders."""
    run_dir = tmp_path / "run"
    assert execute(suite_dict([POINTWISE, {**POINTWISE, "name": "pw2"}]), run_dir=run_dir).ok
    finished = segbench.load(run_dir)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    (run_dir / "manifest.json").write_text(json.dumps({**manifest, "status": "running"}))
    for name in ("summary", "per_class", "per_image"):  # as the run's start wrote them: no cell complete yet
        pd.DataFrame().to_parquet(run_dir / f"{name}.parquet")
    killed = segbench.load(run_dir)
    for name in ("summary", "per_class", "per_image"):
        pd.testing.assert_frame_equal(getattr(killed, name), getattr(finished, name))


def test_an_unexpected_error_ends_the_run_with_the_tables_of_the_complete_cells(tmp_path, nets):
    from segbench.runner import Reporter

    class Breaks(Reporter):
        def cell_finished(self, cell_id, status, error):
            if cell_id == "pw2__shapes":
                raise RuntimeError("the reporter broke")

    run_dir = tmp_path / "run"
    with pytest.raises(RuntimeError, match="the reporter broke"):
        execute(suite_dict([POINTWISE, {**POINTWISE, "name": "pw2"}, {**POINTWISE, "name": "pw3"}]),
                run_dir=run_dir, reporter=Breaks())
    results = segbench.load(run_dir)
    assert results.manifest["status"] == "failed"
    assert sorted(results.summary["model"]) == ["pw", "pw2"]
    assert sorted(set(results.per_image["model"])) == ["pw", "pw2"]


def test_confusion_table_is_the_literal_matrix_without_ignore_pixels(tmp_path, folder_data):
    label_b = np.array(Image.open(folder_data / "labels" / "b.png"))
    label_b[0, :4] = 255
    write_label(folder_data / "labels" / "b.png", label_b)
    preds = tmp_path / "preds"
    preds.mkdir()
    rng = np.random.default_rng(3)
    predictions = {stem: rng.integers(0, 3, (6, 8)).astype(np.uint8) for stem in ("a", "b")}
    for stem, pred in predictions.items():
        write_label(preds / f"{stem}.png", pred)
    results = segbench.load(segbench.run(folder_suite(folder_data, preds), run_dir=tmp_path / "run"))

    literal = np.zeros((3, 3), dtype=np.int64)
    for stem, pred in predictions.items():
        label = np.array(Image.open(folder_data / "labels" / f"{stem}.png"))
        for y, x in np.ndindex(label.shape):
            if label[y, x] != 255:
                literal[label[y, x], pred[y, x]] += 1
    table = results.confusion
    assert list(table.columns) == ["model", "dataset", "label_class_id", "predicted_class_id", "pixels"]
    assert (table["pixels"] > 0).all() and set(table["model"]) == {"saved"} and set(table["dataset"]) == {"mine"}
    matrix = np.zeros((3, 3), dtype=np.int64)
    matrix[table["label_class_id"], table["predicted_class_id"]] = table["pixels"]
    assert (matrix == literal).all() and matrix.sum() == 2 * 48 - 4
    assert (matrix.sum(axis=1) == results.per_class["area_label"].to_numpy()).all()


def test_python_model_without_checkpoint_is_trained_unknown_and_not_warned(tmp_path, nets):
    from segbench.runner import Reporter

    class Warnings(Reporter):
        def __init__(self):
            self.messages, self.run_dirs = [], []

        def warn(self, message):
            self.messages.append(message)

        def run_started(self, run_dir):
            self.run_dirs.append(run_dir)

    reporter = Warnings()
    outcome = execute(suite_dict([POINTWISE]), run_dir=tmp_path / "run", reporter=reporter)
    record = json.loads((tmp_path / "run" / "cells" / "pw__shapes" / "cell.json").read_text())
    assert record["provenance"]["trained"] == "unknown"
    assert segbench.load(outcome.run_dir).summary["trained"].isna().all()  # null in the table: neither
    assert reporter.messages == [] and reporter.run_dirs == [tmp_path / "run"]


# ---------------------------------------------------------------- metric workers (issue 19)

def _scored(tmp_path, name, metric_workers):
    """A run with every default group and calibration on, its groups scored on ``metric_workers`` threads."""
    datasets = [{"name": "shapes", "type": "synthetic", "num_images": 7, "height": 24, "width": 40}]
    suite = suite_dict([POINTWISE], datasets, metric_workers=metric_workers, metrics={"calibration": {}})
    run_dir = tmp_path / name
    assert execute(suite, run_dir=run_dir).ok
    record = json.loads((run_dir / "cells" / "pw__shapes" / "cell.json").read_text())
    return segbench.load(run_dir), record


def test_results_are_identical_for_any_number_of_metric_workers(tmp_path, nets):
    import pandas as pd

    runs = {workers: _scored(tmp_path, f"w{workers}", workers) for workers in (0, 1, 3)}
    (inline, inline_record) = runs[0]
    assert len(inline.per_image) == 7 and inline.per_image["image_id"].is_unique
    for workers, (results, record) in runs.items():
        assert record["workers"]["metric_workers"] == workers
        assert record["settings_digest"] == inline_record["settings_digest"]
        summary, expected = (frame.drop(columns="eval_seconds") for frame in (results.summary, inline.summary))
        pd.testing.assert_frame_equal(summary, expected, check_exact=True)
        pd.testing.assert_frame_equal(results.per_class, inline.per_class, check_exact=True)
        pd.testing.assert_frame_equal(results.per_image, inline.per_image, check_exact=True)
        for table in ("confusion", "calibration"):
            pd.testing.assert_frame_equal(getattr(results, table), getattr(inline, table), check_exact=True)


def _invalid_label_data(root: Path, bad: int) -> dict[str, int]:
    """Five 12x16 images of 3 classes, labels with ignore pixels and ``bad`` values in some, saved random
    predictions; the count of ``bad`` label pixels per image."""
    rng = np.random.default_rng(7)
    counts = {}
    for i in range(5):
        stem = f"im{i}"
        label = rng.integers(0, 3, (12, 16))
        label[rng.random((12, 16)) < 0.1] = 255
        label[i, : 2 * i] = bad  # image i has 2 i of them
        counts[stem] = 2 * i
        Image.fromarray(rng.integers(0, 255, (12, 16, 3), dtype=np.uint8)).save(root / "images" / f"{stem}.png")
        write_label(root / "labels" / f"{stem}.png", label.astype(np.uint8))
        write_label(root / "preds" / f"{stem}.png", rng.integers(0, 3, (12, 16)).astype(np.uint8))
    return counts


def _checked_run(tmp_path, monkeypatch, workers, invalid_labels):
    """The invalid-label data scored on ``workers`` metric threads: (outcome, run folder, threads that checked
    each pair)."""
    import threading

    from segbench import runner

    root = tmp_path / "data"
    for folder in ("images", "labels", "preds"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    counts = _invalid_label_data(root, bad=7)
    threads = []

    def validate_pair(*args, **kwargs):
        threads.append(threading.current_thread().name)
        return original(*args, **kwargs)

    original = runner.validate_pair
    monkeypatch.setattr(runner, "validate_pair", validate_pair)
    suite = suite_dict([{"name": "saved", "type": "predictions", "root": str(root / "preds")}],
                       datasets=[{"name": "mine", "type": "folder", "root": str(root), "num_classes": 3,
                                  "invalid_labels": invalid_labels}], metric_workers=workers)
    run_dir = tmp_path / f"run-{workers}-{invalid_labels}"
    return execute(suite, run_dir=run_dir), run_dir, threads, counts


def test_labels_are_checked_on_the_metric_threads_and_results_stay_identical(tmp_path, monkeypatch):
    import pandas as pd

    runs = {}
    for workers in (0, 1, 3):
        outcome, run_dir, threads, counts = _checked_run(tmp_path, monkeypatch, workers, "ignore")
        assert outcome.ok and len(threads) == 5  # each pair checked once, whatever the number of threads
        assert all(name.startswith("metrics-") for name in threads) if workers else threads == ["MainThread"] * 5
        runs[workers] = segbench.load(run_dir)
        per_image = runs[workers].per_image
        assert dict(zip(per_image["image_id"], per_image["invalid_label_pixels"])) == counts
        assert runs[workers].summary["invalid_label_pixels"].iloc[0] == sum(counts.values()) == 20
    inline = runs[0]
    for results in runs.values():
        pd.testing.assert_frame_equal(results.summary.drop(columns="eval_seconds"),
                                      inline.summary.drop(columns="eval_seconds"), check_exact=True)
        for table in ("per_class", "per_image", "confusion"):
            pd.testing.assert_frame_equal(getattr(results, table), getattr(inline, table), check_exact=True)


@pytest.mark.parametrize("workers", [0, 3])
def test_an_invalid_label_checked_on_a_metric_thread_fails_the_cell(tmp_path, monkeypatch, workers):
    import threading

    before = threading.active_count()
    outcome, _, threads, _ = _checked_run(tmp_path, monkeypatch, workers, "error")
    assert outcome.errors["saved__mine"] == ("DataError: image 'im1': label values [7] are outside [0, 3) and "
                                             "not the ignore index 255")
    assert threading.active_count() == before


def test_changing_metric_workers_redoes_nothing(tmp_path, nets):
    run_dir = tmp_path / "run"
    assert execute(suite_dict([POINTWISE], metric_workers=0), run_dir=run_dir).ok
    outcome = execute(suite_dict([POINTWISE], metric_workers=3), run_dir=run_dir)
    assert outcome.statuses == {"pw__shapes": "skipped"}


@pytest.mark.parametrize("workers", [0, 2])
def test_a_metric_group_failing_fails_its_cell_and_leaves_no_thread(tmp_path, nets, monkeypatch, workers):
    import threading

    from segbench.registry import METRICS

    state = METRICS["distance"].state
    original, calls, threads = state.update, [], set()

    def update(self, pred, label, image_id, **extra):
        calls.append(image_id)
        threads.add(threading.current_thread().name)
        if len(calls) == 3:
            raise RuntimeError(f"distance broke on {image_id}")
        return original(self, pred, label, image_id, **extra)

    monkeypatch.setattr(state, "update", update)
    before = threading.active_count()
    outcome = execute(suite_dict([POINTWISE, {**POINTWISE, "name": "pw2"}], metric_workers=workers),
                      run_dir=tmp_path / "run")
    assert outcome.statuses == {"pw__shapes": "failed", "pw2__shapes": "complete"}
    assert outcome.errors["pw__shapes"] == "RuntimeError: distance broke on synth_00002"
    assert threading.active_count() == before
    assert all(name.startswith("metrics-") for name in threads) == (workers > 0)
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert "distance broke on synth_00002" in manifest["cells"]["pw__shapes"]["traceback"]


def test_system_exit_in_a_metric_thread_fails_the_cell(tmp_path, nets, monkeypatch):
    import sys
    import threading

    from segbench.registry import METRICS

    monkeypatch.setattr(METRICS["boundary"].state, "update", lambda self, *a, **k: sys.exit(3))
    before = threading.active_count()
    outcome = execute(suite_dict([POINTWISE], metric_workers=2), run_dir=tmp_path / "run")
    assert outcome.errors["pw__shapes"] == "SystemExit: the model's or dataset's code called sys.exit(3)"
    assert threading.active_count() == before


def test_ctrl_c_with_metric_threads_leaves_no_thread(tmp_path, nets, monkeypatch):
    import threading

    from segbench.registry import METRICS
    from segbench.runner import Interrupted

    state = METRICS["accuracy"].state
    original, calls = state.update, []

    def update(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 3:  # Ctrl-C reaches the main thread while a metric thread is scoring
            import _thread
            _thread.interrupt_main()
        return original(self, *args, **kwargs)

    monkeypatch.setattr(state, "update", update)
    before = threading.active_count()
    with pytest.raises(Interrupted):
        execute(suite_dict([POINTWISE], metric_workers=2), run_dir=tmp_path / "run")
    assert threading.active_count() == before
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["cells"]["pw__shapes"]["status"] == "interrupted"


def test_worker_settings_accept_auto_and_integers(monkeypatch):
    from segbench import runner
    from segbench.suite import parse_suite

    suite = parse_suite(suite_dict([POINTWISE], num_workers="auto"))
    assert (suite.num_workers, suite.metric_workers) == ("auto", "auto")
    assert parse_suite(suite_dict([POINTWISE], metric_workers=3)).metric_workers == 3
    with pytest.raises(UserError, match="metric_workers"):
        parse_suite(suite_dict([POINTWISE], metric_workers=-1))
    monkeypatch.setattr(runner, "_cores", lambda: 16)
    assert (runner.loader_workers("auto"), runner.metric_workers("auto", 5)) == (4, 5)
    assert runner.metric_workers("auto", 12) == 8 and runner.loader_workers(0) == 0
    monkeypatch.setattr(runner, "_cores", lambda: 1)
    assert (runner.loader_workers("auto"), runner.metric_workers("auto", 5)) == (0, 1)


def test_groups_that_share_work_share_a_thread():
    from segbench.runner import lanes_of

    names = ["accuracy", "boundary", "cityscapes", "distance", "fine_grained"]
    assert lanes_of(names, 1) == [names]
    lanes = lanes_of(names, 3)
    assert ["boundary", "distance"] in lanes and sorted(sum(lanes, [])) == sorted(names) and len(lanes) == 3
    assert len(lanes_of(names, 10)) == 4


def test_samples_leave_the_loader_workers_as_tensors_and_come_back_as_the_same_arrays(recwarn):
    from segbench.data.base import Sample
    from segbench.runner import _as_arrays, _as_tensors

    image = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)[:, ::-1]  # a view with a negative stride
    image.flags.writeable = False  # as a decoded PIL image is
    label = np.array([[0, 1, 255], [2, 2, 1]], dtype=np.int64)
    instances = np.array([[0, 26001, 26001], [0, 0, 24000]], dtype=np.int32)
    (shipped,) = _as_tensors([Sample("a", image, label, {"instances": instances})])
    assert isinstance(shipped.image, torch.Tensor) and isinstance(shipped.extras["instances"], torch.Tensor)
    back = _as_arrays(shipped)
    for before, after in ((image, back.image), (label, back.label), (instances, back.extras["instances"])):
        assert after.dtype == before.dtype and np.array_equal(after, before)
    assert back.id == "a" and not [w for w in recwarn if "not writable" in str(w.message)]


def test_every_stored_column_but_the_keys_is_declared(tmp_path):
    from segbench.report import results_catalogue

    suite = {"name": "t", "device": "cpu", "batch_size": 2, "num_workers": 0,
             "datasets": [{"name": "shapes", "type": "synthetic", "num_images": 2, "height": 32, "width": 48}],
             "models": [{"name": "fcn", "type": "builtin", "arch": "fcn"}],
             "efficiency": {"warmup": 0, "iters": 1}, "metrics": {"calibration": {}}}
    results = segbench.load(execute(suite, run_dir=tmp_path / "run").run_dir)
    catalogue = results_catalogue(results)
    keys = {"model", "dataset", "corruption", "severity", "class_id", "class_name", "image_id"}
    for table in ("summary", "per_class", "per_image"):
        undeclared = [c for c in getattr(results, table).columns if c not in keys and catalogue.get(c, table) is None]
        assert undeclared == [], table
