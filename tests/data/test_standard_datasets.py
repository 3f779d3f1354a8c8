"""Cityscapes, ADE20K and Pascal VOC readers on generated miniature copies of their layouts."""

import copy
from pathlib import Path

import cityscapesscripts.evaluation.evalPixelLevelSemanticLabeling as evaluation
import numpy as np
import pytest
from PIL import Image

import segbench
from segbench.data.ade20k import ADE20KDataset
from segbench.data.cityscapes import CityscapesDataset
from segbench.data.classes import VOC_PALETTE
from segbench.data.io import write_label
from segbench.data.pascal_voc import PascalVOCDataset
from segbench.errors import UserError

H, W = 12, 20
CITIES = {"frankfurt": ["000000_000294", "000000_000576"], "lindau": ["000000_000019"]}


def save_rgb(path: Path, rng: np.random.Generator) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 255, (H, W, 3), dtype=np.uint8)).save(path)


def save_grey(path: Path, values: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(values.astype(np.uint8), mode="L").save(path)


def make_cityscapes(root: Path, train_ids: bool, seed: int = 0) -> dict[str, np.ndarray]:
    """labelIds drawn from every id 0..33 (ignored ones included); returns them by image id."""
    rng = np.random.default_rng(seed)
    label_ids = {}
    for city, frames in CITIES.items():
        for frame in frames:
            stem = f"{city}_{frame}"
            save_rgb(root / "leftImg8bit" / "val" / city / f"{stem}_leftImg8bit.png", rng)
            ids = rng.integers(0, 34, (H, W))
            save_grey(root / "gtFine" / "val" / city / f"{stem}_gtFine_labelIds.png", ids)
            if train_ids:
                lut = np.full(256, 255)
                lut[[7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33]] = range(19)
                save_grey(root / "gtFine" / "val" / city / f"{stem}_gtFine_labelTrainIds.png", lut[ids])
            label_ids[f"{stem}_leftImg8bit"] = ids
    return label_ids


def test_cityscapes_converts_label_ids_with_the_official_table(tmp_path):
    label_ids = make_cityscapes(tmp_path, train_ids=False)
    data = CityscapesDataset("cs", tmp_path)
    assert data.label_kind == "labelIds"
    assert data.ids() == ["frankfurt_000000_000294_leftImg8bit", "frankfurt_000000_000576_leftImg8bit",
                          "lindau_000000_000019_leftImg8bit"]
    sample = data.load(2)
    ids = label_ids[sample.id]
    expected = {7: 0, 8: 1, 26: 13, 33: 18, 0: 255, 1: 255, 6: 255, 9: 255, 29: 255, 30: 255}
    for label_id, train_id in expected.items():
        assert np.all(sample.label[ids == label_id] == train_id), label_id
    assert data.info.num_classes == 19 and data.info.class_names[13] == "car"


def test_cityscapes_prefers_label_train_ids(tmp_path):
    make_cityscapes(tmp_path, train_ids=True)
    for path in tmp_path.rglob("*_labelTrainIds.png"):  # make them distinguishable
        save_grey(path, np.full((H, W), 5))
    data = CityscapesDataset("cs", tmp_path)
    assert data.label_kind == "labelTrainIds"
    assert np.all(data.load(0).label == 5)


def test_cityscapes_incomplete_layout_is_a_clear_error(tmp_path):
    make_cityscapes(tmp_path, train_ids=False)
    next(tmp_path.rglob("lindau_*_gtFine_labelIds.png")).unlink()
    with pytest.raises(UserError, match="lindau_000000_000019_leftImg8bit.png") as info:
        CityscapesDataset("cs", tmp_path)
    assert "Preparing datasets" in str(info.value)
    with pytest.raises(UserError, match="folder not found"):
        CityscapesDataset("cs", tmp_path / "nowhere")
    (tmp_path / "leftImg8bit" / "test").mkdir()
    with pytest.raises(UserError, match="gtFine"):
        CityscapesDataset("cs", tmp_path, split="test")


def test_cityscapes_iou_equals_the_official_evaluation(tmp_path):
    """Per-class IoU of segbench equals cityscapesscripts' pixel-level evaluation on the same files."""
    label_ids = make_cityscapes(tmp_path / "cs", train_ids=False)
    rng = np.random.default_rng(1)
    train_to_id = np.array([7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33])
    preds_dir = tmp_path / "preds"
    preds_dir.mkdir()
    pred_files, gt_files = [], []
    for image_id in label_ids:
        pred = rng.integers(0, 19, (H, W))
        pred[:6] = np.where(rng.random((6, W)) < 0.7, _train_ids(label_ids[image_id][:6]), pred[:6])
        pred = np.where(pred == 255, 0, pred)
        write_label(preds_dir / f"{image_id}.png", pred.astype(np.uint8))
        save_grey(tmp_path / "official" / f"{image_id}.png", train_to_id[pred])
        city = image_id.split("_")[0]
        pred_files.append(str(tmp_path / "official" / f"{image_id}.png"))
        gt_files.append(str(tmp_path / "cs" / "gtFine" / "val" / city /
                            image_id.replace("leftImg8bit", "gtFine_labelIds.png")))

    suite = {"name": "cs", "device": "cpu", "num_workers": 0,
             "datasets": [{"name": "cs", "type": "cityscapes", "root": str(tmp_path / "cs")}],
             "models": [{"name": "saved", "type": "predictions", "root": str(preds_dir)}]}
    per_class = segbench.load(segbench.run(suite, run_dir=tmp_path / "run")).per_class

    args = copy.copy(evaluation.args)
    args.quiet, args.evalInstLevelScore, args.JSONOutput = True, False, False
    official = evaluation.evaluateImgLists(pred_files, gt_files, args)["classScores"]
    ours = dict(zip(per_class["class_name"], per_class["IoU"]))
    assert len(ours) == 19
    for name, iou in ours.items():  # the official list also holds the ignored labels, as NaN
        assert iou == pytest.approx(official[name], abs=1e-12, nan_ok=True), name
    assert np.isfinite(list(ours.values())).sum() >= 15


def _train_ids(ids: np.ndarray) -> np.ndarray:
    lut = np.full(256, 255)
    lut[[7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33]] = range(19)
    return lut[ids]


def make_ade(root: Path) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    stored = {}
    for stem in ("ADE_val_00000001", "ADE_val_00000002"):
        path = root / "ADEChallengeData2016" / "images" / "validation" / f"{stem}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (H, W, 3), dtype=np.uint8)).save(path)
        stored[stem] = rng.integers(0, 151, (H, W))
        save_grey(root / "ADEChallengeData2016" / "annotations" / "validation" / f"{stem}.png", stored[stem])
    return stored


def test_ade20k_reduces_the_zero_label(tmp_path):
    stored = make_ade(tmp_path)
    for root in (tmp_path, tmp_path / "ADEChallengeData2016"):
        data = ADE20KDataset("ade", root)
        sample = data.load(1)
        raw = stored[sample.id]
        assert np.all(sample.label[raw == 0] == 255)
        assert np.array_equal(sample.label[raw > 0], raw[raw > 0] - 1)
        assert data.info.num_classes == 150 and data.info.class_names[0] == "wall"


def test_ade20k_missing_annotation(tmp_path):
    make_ade(tmp_path)
    next(tmp_path.rglob("ADE_val_00000002.png")).unlink()
    with pytest.raises(UserError, match="ADE_val_00000002.jpg"):
        ADE20KDataset("ade", tmp_path)


def make_voc(root: Path) -> np.ndarray:
    voc = root / "VOCdevkit" / "VOC2012"
    rng = np.random.default_rng(0)
    label = rng.integers(0, 21, (H, W))
    label[0] = 255  # the object outlines VOC marks as ignore
    for stem in ("2007_000033", "2007_000042"):
        path = voc / "JPEGImages" / f"{stem}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (H, W, 3), dtype=np.uint8)).save(path)
        (voc / "SegmentationClass").mkdir(exist_ok=True)
        write_label(voc / "SegmentationClass" / f"{stem}.png", label.astype(np.uint8), VOC_PALETTE)
    (voc / "ImageSets" / "Segmentation").mkdir(parents=True)
    (voc / "ImageSets" / "Segmentation" / "val.txt").write_text("2007_000033\n2007_000042\n")
    return label


def test_pascal_voc_reads_palette_labels_as_indices(tmp_path):
    label = make_voc(tmp_path)
    assert Image.open(next(tmp_path.rglob("2007_000033.png"))).mode == "P"
    data = PascalVOCDataset("voc", tmp_path)
    assert data.ids() == ["2007_000033", "2007_000042"]
    assert np.array_equal(data.load(0).label, label)
    assert data.info.num_classes == 21


def test_pascal_voc_split_ids_without_files(tmp_path):
    make_voc(tmp_path)
    split = next(tmp_path.rglob("val.txt"))
    split.write_text(split.read_text() + "2007_999999\n")
    with pytest.raises(UserError, match="2007_999999"):
        PascalVOCDataset("voc", tmp_path)
