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
from segbench.images import write_label
from segbench.data.pascal_voc import PascalVOCDataset
from segbench.data.mmseg_dataset import MMSegDataset
from segbench.errors import UserError
from layouts import TRAIN_TO_ID, make_cityscapes, save_grey, to_train_ids

H, W = 12, 20


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
    preds_dir = tmp_path / "preds"
    preds_dir.mkdir()
    pred_files, gt_files = [], []
    for image_id in label_ids:
        pred = rng.integers(0, 19, (H, W))
        pred[:6] = np.where(rng.random((6, W)) < 0.7, to_train_ids(label_ids[image_id][:6]), pred[:6])
        pred = np.where(pred == 255, 0, pred)
        write_label(preds_dir / f"{image_id}.png", pred.astype(np.uint8))
        save_grey(tmp_path / "official" / f"{image_id}.png", TRAIN_TO_ID[pred])
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


def assert_same_samples(ours, theirs):
    assert ours.ids() == theirs.ids()
    assert ours.info.class_names == [n.strip() for n in theirs.info.class_names]  # mmseg: "bed "
    for i in range(len(ours)):
        mine, mmseg = ours.load(i), theirs.load(i)
        assert np.array_equal(mine.image, mmseg.image)
        assert np.array_equal(mine.label, mmseg.label), mine.id


def test_native_readers_agree_with_mmseg_datasets(tmp_path):
    """The same files read natively and through mmseg's dataset classes give the same samples."""
    make_cityscapes(tmp_path / "cs", train_ids=True)  # mmseg reads labelTrainIds only
    assert_same_samples(CityscapesDataset("cs", tmp_path / "cs"),
                        MMSegDataset("cs", "cityscapes", tmp_path / "cs"))
    make_ade(tmp_path / "ade")
    assert_same_samples(ADE20KDataset("ade", tmp_path / "ade"),
                        MMSegDataset("ade", "ade20k", tmp_path / "ade" / "ADEChallengeData2016"))
    make_voc(tmp_path / "voc")
    voc = tmp_path / "voc" / "VOCdevkit" / "VOC2012"
    assert_same_samples(PascalVOCDataset("voc", tmp_path / "voc"), MMSegDataset("voc", "pascal_voc12", voc))


def test_mmseg_dataset_unknown_config_lists_names(tmp_path):
    with pytest.raises(UserError, match="cityscapes"):
        MMSegDataset("x", "no_such_dataset", tmp_path)
