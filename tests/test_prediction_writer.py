"""Saved predictions: the background writer, the round trip through the `predictions` type, palettes."""

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

import segbench
from segbench.types import DatasetInfo
from segbench.data.classes import CITYSCAPES_PALETTE
from segbench.images import DISTINCT_PALETTE
from segbench.data.folder import FolderDataset
from segbench.images import read_label, write_label
from segbench.data.synthetic import SyntheticDataset
from segbench.prediction_writer import PredictionWriter, join_folders
from segbench.runner import CellFailed, Reporter, evaluate_cell
from segbench.store import RunStore
from segbench.suite import parse_suite

DATASET = {"name": "shapes", "type": "synthetic", "num_images": 5, "height": 24, "width": 40}
FCN = {"name": "fcn", "type": "builtin", "arch": "fcn"}
METRIC_COLUMNS = ["aAcc", "mAcc", "mIoU", "fwIoU", "mDice", "mBF", "mBIoU", "mHD", "mHD95"]
CLASS_COLUMNS = ["class_id", "class_name", "IoU", "Acc", "Dice", "Precision", "Recall", "BF", "BIoU", "HD", "HD95"]


def suite_dict(models, **extra):
    return {"name": "t", "device": "cpu", "batch_size": 2, "num_workers": 0,
            "datasets": [DATASET], "models": models, **extra}


def test_writer_writes_palette_pngs_under_the_names_the_predictions_type_reads(tmp_path):
    palette = [(10, 20, 30), (200, 0, 0), (0, 200, 0)]
    writer = PredictionWriter(tmp_path / "cells", "m__d", palette)
    maps = {"a": np.array([[0, 1], [2, 1]]), "city/b": np.array([[2, 2], [0, 0]])}
    for image_id, values in maps.items():
        writer.submit(image_id, torch.from_numpy(values))
    folder = writer.close()

    assert folder.parent == tmp_path / "cells" and folder.name.startswith(".m__d.predictions.")
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.png")) == ["a.png", "city/b.png"]
    for image_id, values in maps.items():
        np.testing.assert_array_equal(read_label(folder / f"{image_id}.png"), values)
    with Image.open(folder / "a.png") as image:
        assert image.mode == "P"
        assert image.getpalette()[:9] == [10, 20, 30, 200, 0, 0, 0, 200, 0]


def test_several_writer_threads_write_every_prediction(tmp_path, monkeypatch):
    monkeypatch.setattr("segbench.prediction_writer.THREADS", 3)
    writer = PredictionWriter(tmp_path, "c", [(0, 0, 0), (255, 255, 255)])
    maps = {f"im{i:02d}": np.random.default_rng(i).integers(0, 2, (6, 7)) for i in range(20)}
    for image_id, values in maps.items():
        writer.submit(image_id, torch.from_numpy(values))
    folder = writer.close()
    assert len(writer._threads) == 3 and not any(thread.is_alive() for thread in writer._threads)
    for image_id, values in maps.items():
        np.testing.assert_array_equal(read_label(folder / f"{image_id}.png"), values)


def test_the_copy_to_the_cpu_runs_on_the_writer_threads(tmp_path):
    """submit only queues the prediction: the evaluating thread, which feeds the device, copies nothing."""
    import threading

    class Prediction:  # a tensor that records the threads converting it
        def __init__(self, values):
            self.tensor, self.threads = torch.from_numpy(values), []

        def detach(self):
            return self

        def to(self, *args, **kwargs):
            self.threads.append(threading.current_thread().name)
            return self.tensor.to(*args, **kwargs)

    writer = PredictionWriter(tmp_path, "c", [(0, 0, 0), (255, 255, 255), (9, 9, 9)])
    values = np.array([[0, 1, 2], [2, 1, 0]])
    prediction = Prediction(values)
    writer.submit("a", prediction)
    folder = writer.close()
    assert len(prediction.threads) == 1 and prediction.threads[0].startswith("predictions-c-")
    np.testing.assert_array_equal(read_label(folder / "a.png"), values)


def test_an_error_in_the_writer_fails_submit_or_close(tmp_path):
    writer = PredictionWriter(tmp_path, "c", [(0, 0, 0)])
    writer.submit("flat", torch.zeros(5, dtype=torch.int64))  # 1-D: write_label refuses it, in the thread
    with pytest.raises(RuntimeError, match="writing predictions .* failed: ValueError: label must be a 2-D"):
        writer.close()


def test_a_file_that_cannot_be_written_is_the_atomic_write_s_one_line(tmp_path, monkeypatch):
    """A full disk: the cell fails with the line naming the file, not wrapped in a second error."""
    import segbench.atomic
    from segbench.errors import UserError

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(segbench.atomic.os, "replace", full)
    writer = PredictionWriter(tmp_path, "c", [(0, 0, 0)])
    writer.submit("a", torch.zeros((2, 3), dtype=torch.int64))
    with pytest.raises(UserError) as raised:
        writer.close()
    assert str(raised.value).endswith("a.png: cannot write: No space left on device")
    assert "writing predictions" not in str(raised.value)


def test_abort_deletes_the_staging_folder_and_stale_ones_are_removed(tmp_path):
    store = RunStore(tmp_path)
    writer = PredictionWriter(store.cells_dir, "m__d", [(0, 0, 0)])
    writer.submit("x", torch.zeros(2, 2, dtype=torch.int64))
    writer.abort()
    assert list(store.cells_dir.iterdir()) == []

    stale = PredictionWriter(store.cells_dir, "m__d", [(0, 0, 0)]).close()  # as an interrupted run leaves it
    (stale / "x.png").write_bytes(b"partial")
    store.remove_stale_temporaries()
    assert list(store.cells_dir.iterdir()) == []


def test_ranks_staging_folders_join_into_one(tmp_path):
    folders = []
    for rank, image_ids in enumerate([["a", "b"], ["c"]]):
        writer = PredictionWriter(tmp_path, f"cell.r{rank}", [(0, 0, 0), (9, 9, 9)])
        for image_id in image_ids:
            writer.submit(image_id, torch.ones(3, 3, dtype=torch.int64))
        folders.append(writer.close())
    folder = join_folders(folders)
    assert folder == folders[0] and not folders[1].exists()
    assert sorted(p.name for p in folder.iterdir()) == ["a.png", "b.png", "c.png"]


def test_saved_predictions_evaluated_again_give_identical_tables(tmp_path):
    run = segbench.run(suite_dict([FCN], save_predictions=True), run_dir=tmp_path / "run")
    folder = tmp_path / "run" / "cells" / "fcn__shapes" / "predictions"
    assert sorted(p.name for p in folder.iterdir()) == [f"synth_{i:05d}.png" for i in range(5)]
    again = segbench.run(suite_dict([{"name": "fcn", "type": "predictions", "root": str(folder)}]),
                         run_dir=tmp_path / "again")

    first, second = segbench.load(run), segbench.load(again)
    pd.testing.assert_frame_equal(first.summary[METRIC_COLUMNS], second.summary[METRIC_COLUMNS])
    pd.testing.assert_frame_equal(first.per_class[CLASS_COLUMNS], second.per_class[CLASS_COLUMNS])
    assert 0.3 < first.summary["mIoU"].iloc[0] < 1  # a real model, not an empty table


def test_a_model_can_opt_out_and_the_digest_stays_without_the_option(tmp_path):
    models = [FCN, {**FCN, "name": "fcn2", "save_predictions": False}]
    saving = parse_suite(suite_dict(models, save_predictions=True))
    plain = parse_suite(suite_dict([FCN]))
    assert [c.save_predictions for c in saving.cells()] == [True, False]
    assert saving.cells()[0].settings() == plain.cells()[0].settings() | {"save_predictions": True}
    assert "save_predictions" not in plain.cells()[0].settings()
    assert "save_predictions" not in plain.cells()[0].settings()["model"]

    run = segbench.run(suite_dict(models, save_predictions=True), run_dir=tmp_path / "run")
    assert (run / "cells" / "fcn__shapes" / "predictions").is_dir()
    assert not (run / "cells" / "fcn2__shapes" / "predictions").exists()


def test_resume_redoes_a_cell_that_saved_no_predictions(tmp_path):
    segbench.run(suite_dict([FCN]), run_dir=tmp_path / "run")
    assert not (tmp_path / "run" / "cells" / "fcn__shapes" / "predictions").exists()
    segbench.run(suite_dict([FCN], save_predictions=True), run_dir=tmp_path / "run")
    assert len(list((tmp_path / "run" / "cells" / "fcn__shapes" / "predictions").iterdir())) == 5


def test_a_failing_cell_leaves_no_staged_predictions(tmp_path):
    folder = tmp_path / "preds"
    folder.mkdir()
    for i in range(3):  # 3 of the 5 images: the cell fails on the fourth
        write_label(folder / f"synth_{i:05d}.png", SyntheticDataset(num_images=5, height=24, width=40)
                    .load(i).label.clip(0, 5).astype(np.uint8))
    suite = parse_suite(suite_dict([{"name": "p", "type": "predictions", "root": str(folder)}],
                                   save_predictions=True))
    [cell] = suite.cells()
    dataset = SyntheticDataset("shapes", num_images=5, height=24, width=40)
    staging = tmp_path / "cells"
    with pytest.raises(CellFailed, match="prediction file not found for image 'synth_00003'"):
        evaluate_cell(cell, dataset, suite, torch.device("cpu"), Reporter(), staging=staging)
    assert list(staging.iterdir()) == []


def test_palettes_standard_fixed_and_the_labels_own(tmp_path):
    assert DatasetInfo("c", 19, [""] * 19, palette=list(CITYSCAPES_PALETTE)).colours()[13] == (0, 0, 142)
    fixed = DatasetInfo("f", 40, [""] * 40).colours()
    assert fixed[:19] == DISTINCT_PALETTE and len(set(fixed)) == 40
    assert (150, 150, 150) not in fixed  # grey marks ignored pixels

    own = [(1, 2, 3), (40, 50, 60), (200, 100, 0)]
    for folder in ("images", "labels"):
        (tmp_path / folder).mkdir()
    Image.fromarray(np.zeros((2, 2, 3), np.uint8)).save(tmp_path / "images" / "a.png")
    write_label(tmp_path / "labels" / "a.png", np.array([[0, 1], [2, 255]]), own)
    assert FolderDataset("mine", tmp_path, num_classes=3).info.colours() == own
    write_label(tmp_path / "labels" / "a.png", np.array([[0, 1], [2, 255]]))  # grey: no palette of its own
    assert FolderDataset("mine", tmp_path, num_classes=3).info.colours() == DISTINCT_PALETTE[:3]
