"""The Cityscapes benchmark's iIoU and category figures against cityscapesScripts' own evaluation."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import segbench
from segbench.api import execute
from segbench.data.cityscapes import CityscapesDataset
from segbench.images import write_label
from segbench.metrics.cityscapes import CityscapesMetric
from layouts import TRAIN_TO_ID, save_grey, save_rgb, to_train_ids

H, W = 64, 128
STEMS = {"frankfurt": ["000000_000294", "000000_000576"], "lindau": ["000000_000019"]}
CAR, PERSON, RIDER, BICYCLE, TRUCK, CARAVAN = 26, 24, 25, 33, 27, 29


def scene(rng: np.random.Generator, index: int) -> tuple[np.ndarray, np.ndarray]:
    """labelIds and instanceIds of one image: stuff, ignored labels, instances of several sizes, a crowd."""
    ids = np.full((H, W), 11)  # building
    ids[:14] = 23  # sky
    ids[40:] = 7  # road
    ids[40:, 100:] = 8  # sidewalk
    ids[30:40, :20] = 21  # vegetation
    ids[30:40, 20:30] = 17  # pole
    ids[60:, :] = 1  # ego vehicle (ignored)
    ids[40:46, 60:80] = 9  # parking (ignored)
    ids[14:18, 90:128] = 0  # unlabeled (ignored)
    instances = ids.copy()
    boxes = [(CAR, 36, 4, 16, 30), (CAR, 44, 40, 6, 8), (CAR, 46, 84, 10, 14), (PERSON, 24, 50, 20, 6),
             (PERSON, 30, 58, 8, 3), (RIDER, 26, 104, 14, 5), (BICYCLE, 36, 102, 10, 10),
             (TRUCK, 20, 66, 20, 22), (CARAVAN, 22, 30, 10, 12)]
    counters: dict[int, int] = {}
    for label_id, top, left, height, width in boxes[index % 2::1] if index < 2 else boxes[::2]:
        top = min(top + int(rng.integers(0, 4)), H - height)
        ids[top:top + height, left:left + width] = label_id
        number = counters.setdefault(label_id, 0)
        counters[label_id] += 1
        instances[top:top + height, left:left + width] = label_id * 1000 + number
    ids[18:28, 110:124] = PERSON  # a crowd: the label id alone in the instance image
    instances[18:28, 110:124] = PERSON
    return ids, instances


def make_miniature(root: Path, seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    scenes = {}
    index = 0
    for city, frames in STEMS.items():
        for frame in frames:
            stem = f"{city}_{frame}"
            ids, instances = scene(rng, index)
            index += 1
            gt = root / "gtFine" / "val" / city
            save_rgb(root / "leftImg8bit" / "val" / city / f"{stem}_leftImg8bit.png",
                     rng.integers(0, 255, (H, W, 3)))
            save_grey(gt / f"{stem}_gtFine_labelIds.png", ids)
            Image.fromarray(instances.astype(np.uint16)).save(gt / f"{stem}_gtFine_instanceIds.png")
            scenes[f"{stem}_leftImg8bit"] = (ids, instances)
    return scenes


def predictions(label_ids: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Train ids: the truth with errors (noise, a shifted copy, vehicles confused with one another)."""
    truth = to_train_ids(label_ids)
    pred = np.where(truth == 255, rng.integers(0, 19, truth.shape), truth)
    pred = np.where(rng.random(truth.shape) < 0.15, rng.integers(0, 19, truth.shape), pred)
    pred[:, 3:40] = pred[:, :37].copy()  # a shift: instances on the left lose their edge
    pred[(truth == 14) & (rng.random(truth.shape) < 0.5)] = 13  # truck as car: category TP, class FN
    pred[(truth == 11) & (rng.random(truth.shape) < 0.3)] = 12  # person as rider
    return pred


def official(pred_files: list[str], gt_files: list[str], monkeypatch: pytest.MonkeyPatch) -> dict:
    import cityscapesscripts.evaluation.evalPixelLevelSemanticLabeling as evaluation

    monkeypatch.setattr(np, "in1d", np.isin, raising=False)  # the script's call, gone from numpy 2.4
    args = copy.copy(evaluation.args)
    args.quiet, args.JSONOutput, args.evalInstLevelScore, args.evalPixelAccuracy = True, False, True, False
    return evaluation.evaluateImgLists(pred_files, gt_files, args)


@pytest.fixture
def miniature(tmp_path: Path) -> dict:
    scenes = make_miniature(tmp_path / "cs")
    rng = np.random.default_rng(3)
    preds_dir, theirs = tmp_path / "preds", tmp_path / "official"
    preds_dir.mkdir()
    pred_files, gt_files, preds = [], [], {}
    for image_id, (ids, _) in scenes.items():
        pred = predictions(ids, rng)
        preds[image_id] = pred
        write_label(preds_dir / f"{image_id}.png", pred.astype(np.uint8))
        save_grey(theirs / f"{image_id}.png", TRAIN_TO_ID[pred])
        city = image_id.split("_")[0]
        pred_files.append(str(theirs / f"{image_id}.png"))
        gt_files.append(str(tmp_path / "cs" / "gtFine" / "val" / city /
                            image_id.replace("leftImg8bit", "gtFine_labelIds.png")))
    return {"root": tmp_path / "cs", "preds_dir": preds_dir, "pred_files": pred_files, "gt_files": gt_files,
            "scenes": scenes, "preds": preds}


def test_the_four_numbers_equal_the_official_evaluation(tmp_path, miniature, monkeypatch):
    suite = {"name": "cs", "device": "cpu", "num_workers": 0,
             "datasets": [{"name": "cs", "type": "cityscapes", "root": str(miniature["root"])}],
             "models": [{"name": "saved", "type": "predictions", "root": str(miniature["preds_dir"])}]}
    outcome = execute(suite, run_dir=tmp_path / "run")
    assert outcome.ok, outcome.errors
    results = segbench.load(outcome.run_dir)
    summary = results.summary.iloc[0]
    theirs = official(miniature["pred_files"], miniature["gt_files"], monkeypatch)

    assert summary["mIoU"] == pytest.approx(theirs["averageScoreClasses"], abs=1e-12)
    assert summary["iIoU"] == pytest.approx(theirs["averageScoreInstClasses"], abs=1e-12)
    assert summary["mIoU_category"] == pytest.approx(theirs["averageScoreCategories"], abs=1e-12)
    assert summary["iIoU_category"] == pytest.approx(theirs["averageScoreInstCategories"], abs=1e-12)
    ours = dict(zip(results.per_class["class_name"], results.per_class["iIoU"]))
    assert len(ours) == 19
    for name, iiou in ours.items():  # NaN for the classes without instances, in both
        assert iiou == pytest.approx(theirs["classInstScores"][name], abs=1e-12, nan_ok=True), name
    finite = [name for name, value in ours.items() if not math.isnan(value)]
    assert sorted(finite) == sorted(["person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle"])
    assert ours["bus"] == ours["train"] == ours["motorcycle"] == 0  # no instance, only false positives
    # the figures are not trivial: instance weighting and categories change them
    assert 0 < summary["iIoU"] < 1 and summary["iIoU"] != pytest.approx(summary["mIoU"], abs=1e-3)
    assert theirs["categoryInstScores"]["vehicle"] > theirs["classInstScores"]["truck"]

    record = json.loads((outcome.run_dir / "cells" / "saved__cs" / "cell.json").read_text())
    assert record["metric_options"]["cityscapes"]["applicable"] is True


def test_the_reader_hands_over_instances_and_fingerprints_them(tmp_path, miniature):
    data = CityscapesDataset("cs", miniature["root"])
    sample = data.load(0)
    assert np.array_equal(sample.extras["instances"], miniature["scenes"][sample.id][1])
    with_instances = data.fingerprint()
    for path in miniature["root"].rglob("*_instanceIds.png"):
        path.unlink()
        break
    without = CityscapesDataset("cs", miniature["root"])
    assert without.load(0).extras == {} and not without.has_instances
    assert without.fingerprint() != with_instances
    for path in miniature["root"].rglob("*_instanceIds.png"):
        path.unlink()
    assert CityscapesDataset("cs", miniature["root"]).fingerprint() == without.fingerprint()


def test_not_applicable_without_instances(tmp_path, nets):
    suite = {"name": "t", "device": "cpu", "num_workers": 0,
             "datasets": [{"name": "shapes", "type": "synthetic", "num_images": 3, "height": 16, "width": 24}],
             "models": [{"name": "oracle", "type": "python", "factory": "tiny_nets:pointwise",
                         "kwargs": {"num_classes": 6}, "num_classes": 6}]}
    outcome = execute(suite, run_dir=tmp_path / "run")
    assert outcome.ok, outcome.errors
    results = segbench.load(outcome.run_dir)
    for column in ("iIoU", "mIoU_category", "iIoU_category"):
        assert column not in results.summary.columns
    assert "iIoU" not in results.per_class.columns
    cell = next((outcome.run_dir / "cells").iterdir())
    options = json.loads((cell / "cell.json").read_text())["metric_options"]["cityscapes"]
    assert options["applicable"] is False and "gtFine_instanceIds" in options["reason"]


def test_merging_halves_equals_one_pass(miniature):
    data = CityscapesDataset("cs", miniature["root"])
    whole, head, tail = CityscapesMetric(19), CityscapesMetric(19), CityscapesMetric(19)
    for i in range(len(data)):
        sample = data.load(i)
        args = (torch.from_numpy(miniature["preds"][sample.id]), torch.from_numpy(sample.label), sample.id)
        whole.update(*args, instances=sample.extras["instances"])
        (head if i < 1 else tail).update(*args, instances=sample.extras["instances"])
    head.merge(tail)
    merged, one_pass = head.compute(), whole.compute()
    assert merged.summary == one_pass.summary and all(not math.isnan(v) for v in one_pass.summary.values())
    assert np.array_equal(merged.per_class["iIoU"], one_pass.per_class["iIoU"], equal_nan=True)
    half = CityscapesMetric(19)
    half.update(*args)  # an image without instance ids makes the whole state not applicable
    head.merge(half)
    assert head.compute().summary == {} and head.options()["applicable"] is False
