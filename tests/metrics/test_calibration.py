"""Pixel-level calibration: torchmetrics as the peer, exact merging, ignore pixels, and the run end to end."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from torchmetrics.functional.classification import multiclass_calibration_error

import segbench
from segbench.api import execute
from segbench.metrics.calibration import CalibrationMetric

K = 5


def random_images(seed: int, images: int, k: int = K, shape: tuple[int, int] = (9, 11)):
    """Per image: class probabilities K x H x W (float32, below 1), and a label with some ignore pixels."""
    generator = torch.Generator().manual_seed(seed)
    out = []
    for i in range(images):
        logits = torch.randn((k, *shape), generator=generator) * (1 + i % 3)
        probabilities = logits.softmax(dim=0)
        label = torch.randint(0, k, shape, generator=generator)
        correct = torch.rand(shape, generator=generator) < 0.5
        label = torch.where(correct, probabilities.argmax(dim=0), label)  # better than chance
        label[torch.rand(shape, generator=generator) < 0.15] = 255
        out.append((probabilities, label))
    out[1][1][:] = 255  # an image without labelled pixels
    return out


def fold(metric: CalibrationMetric, images, start: int = 0) -> CalibrationMetric:
    for i, (probabilities, label) in enumerate(images):
        confidence, pred = probabilities.max(dim=0)  # the group sees the top label and its probability only
        metric.update(pred, label, f"img{start + i}", confidence=confidence)
    return metric


def torchmetrics_figures(images, norm: str, bins: int = 15) -> float:
    preds = torch.cat([p.reshape(K, -1).T for p, _ in images])
    target = torch.cat([label.reshape(-1) for _, label in images])
    return float(multiclass_calibration_error(preds, target, num_classes=K, n_bins=bins, norm=norm,
                                              ignore_index=255))


@pytest.mark.parametrize("seed, count, bins", [(0, 6, 15), (1, 10, 15), (2, 4, 7)])
def test_ece_and_mce_equal_torchmetrics(seed: int, count: int, bins: int) -> None:
    images = random_images(seed, count)
    result = fold(CalibrationMetric(K, bins=bins), images).compute()
    assert result.summary["ECE"] == pytest.approx(torchmetrics_figures(images, "l1", bins), abs=1e-6)
    assert result.summary["MCE"] == pytest.approx(torchmetrics_figures(images, "max", bins), abs=1e-6)


def test_per_image_ece_equals_torchmetrics_on_the_image() -> None:
    images = random_images(3, 5)
    records = {r["image_id"]: r for r in fold(CalibrationMetric(K), images).compute().per_image}
    assert np.isnan(records["img1"]["ECE"])  # no labelled pixel
    for i, image in enumerate(images):
        if i != 1:
            assert records[f"img{i}"]["ECE"] == pytest.approx(torchmetrics_figures([image], "l1"), abs=1e-6)


def test_ignore_pixels_are_left_out() -> None:
    images = random_images(4, 3)
    table = fold(CalibrationMetric(K), images).compute().tables["calibration"]
    assert table["pixels"].sum() == sum(int((label != 255).sum()) for _, label in images)
    # an ignore pixel's confidence or prediction changes nothing
    changed = [(p.clone(), label) for p, label in images]
    for probabilities, label in changed:
        probabilities[:, label == 255] = torch.tensor([1.0] + [0.0] * (K - 1))[:, None]
    assert fold(CalibrationMetric(K), changed).compute().summary == \
        fold(CalibrationMetric(K), images).compute().summary


def test_merged_shards_equal_one_pass_to_the_bit() -> None:
    images = random_images(5, 9)
    whole = fold(CalibrationMetric(K), images)
    first, second = fold(CalibrationMetric(K), images[:4]), fold(CalibrationMetric(K), images[4:], start=4)
    first.merge(second)
    assert (first.pixels, first.correct, first.sums) == (whole.pixels, whole.correct, whole.sums)
    merged, one = first.compute(), whole.compute()
    assert merged.summary == one.summary  # exact, not approximately
    assert merged.per_image == one.per_image
    for column, values in one.tables["calibration"].items():
        np.testing.assert_array_equal(merged.tables["calibration"][column], values)
    reversed_ = fold(CalibrationMetric(K), images[4:], start=4)
    reversed_.merge(fold(CalibrationMetric(K), images[:4]))
    assert reversed_.compute().summary == one.summary  # any order


def test_merging_other_bins_is_refused() -> None:
    with pytest.raises(ValueError, match="cannot merge"):
        CalibrationMetric(K, bins=15).merge(CalibrationMetric(K, bins=10))


def test_a_confidence_of_one_falls_in_the_last_bin() -> None:
    pred = torch.zeros((1, 4), dtype=torch.int64)
    label = torch.tensor([[0, 0, 1, 1]])
    metric = CalibrationMetric(2, bins=15)
    metric.update(pred, label, "a", confidence=torch.tensor([[1.0, 1.0, 0.95, 0.5]]))
    result = metric.compute()
    table = pd.DataFrame(result.tables["calibration"])
    assert len(table) == 15 and table["pixels"].tolist()[-1] == 3 and table["pixels"].sum() == 4
    last = table.iloc[-1]
    assert last["mean_confidence"] == pytest.approx(2.95 / 3) and last["accuracy"] == pytest.approx(2 / 3)
    expected = 3 / 4 * abs(2 / 3 - 2.95 / 3) + 1 / 4 * abs(0 - 0.5)
    assert result.summary["ECE"] == pytest.approx(expected)


def test_without_confidence_the_group_is_not_applicable() -> None:
    metric = CalibrationMetric(K)
    metric.update(torch.zeros((2, 2), dtype=torch.int64), torch.zeros((2, 2), dtype=torch.int64), "a",
                  confidence=None)
    result = metric.compute()
    assert result.summary == {} and result.tables == {} and result.per_image == [{"image_id": "a"}]
    assert metric.options()["applicable"] is False and "probabilities" in metric.options()["why_not_applicable"]
    empty = CalibrationMetric(K)
    empty.merge(metric)
    assert empty.options()["applicable"] is False


# ---------------------------------------------------------------- end to end

def suite(models, **extra):
    return {"name": "cal", "device": "cpu", "batch_size": 2, "num_workers": 0,
            "datasets": [{"name": "shapes", "type": "synthetic", "num_images": 5, "height": 24, "width": 40}],
            "models": models, "metrics": {"calibration": {}}, **extra}


POINTWISE = {"name": "pw", "type": "python", "factory": "tiny_nets:pointwise", "kwargs": {"num_classes": 6},
             "num_classes": 6}


def test_a_run_writes_the_reliability_diagram(tmp_path, nets) -> None:
    flip = {**POINTWISE, "name": "flip", "inference": {"flip": True}}
    outcome = execute(suite([POINTWISE, flip]), run_dir=tmp_path / "run")
    assert set(outcome.statuses.values()) == {"complete"}
    results = segbench.load(tmp_path / "run")
    table = results.calibration
    assert list(table.columns) == ["model", "dataset", "bin", "lower", "upper", "pixels", "mean_confidence",
                                   "accuracy"]
    assert table.groupby("model").size().to_dict() == {"pw": 15, "flip": 15}
    labelled = int(results.per_image[results.per_image["model"] == "pw"]["area_label"].map(sum).sum())
    assert table.groupby("model")["pixels"].sum().to_dict() == {"pw": labelled, "flip": labelled}
    assert results.summary.set_index("model")["ECE"].between(0, 1).all()
    assert results.per_image["ECE"].notna().all()


def test_with_flip_the_confidence_is_the_averaged_probability(tmp_path, nets) -> None:
    from segbench.config import InferenceConfig
    from segbench.models.torch_adapter import TorchAdapter
    from tiny_nets import pointwise

    net = pointwise(6)
    adapter = TorchAdapter("flip", net, 6, [0.5] * 3, [0.25] * 3, InferenceConfig(flip=True),
                           torch.device("cpu"), {})
    images = [np.random.default_rng(0).integers(0, 256, (8, 10, 3), dtype=np.uint8)]
    predictions, confidences = adapter.predict_with_confidence(images, ["a"])
    assert torch.equal(predictions[0], adapter.predict(images, ["a"])[0])
    batch = adapter.preprocess(images)
    with torch.no_grad():
        averaged = (net(batch).softmax(1) + net(batch.flip(-1)).flip(-1).softmax(1)) / 2
    torch.testing.assert_close(confidences[0], averaged.max(dim=1).values[0])
    plain = TorchAdapter("pw", net, 6, [0.5] * 3, [0.25] * 3, InferenceConfig(), torch.device("cpu"), {})
    predictions, confidences = plain.predict_with_confidence(images, ["a"])
    with torch.no_grad():
        torch.testing.assert_close(confidences[0], net(batch).softmax(1).max(dim=1).values[0])
    assert torch.equal(predictions[0], plain.predict(images, ["a"])[0])


def test_saved_predictions_complete_without_calibration(tmp_path, nets) -> None:
    first = execute(suite([POINTWISE], save_predictions=True, metrics={}), run_dir=tmp_path / "first")
    assert first.statuses == {"pw__shapes": "complete"}
    saved = {"name": "saved", "type": "predictions", "num_classes": 6,
             "root": str(tmp_path / "first" / "cells" / "pw__shapes" / "predictions")}
    outcome = execute(suite([saved]), run_dir=tmp_path / "run")
    assert outcome.statuses == {"saved__shapes": "complete"}
    results = segbench.load(tmp_path / "run")
    assert "ECE" not in results.summary and "ECE" not in results.per_image and results.calibration.empty
    record = json.loads((tmp_path / "run" / "cells" / "saved__shapes" / "cell.json").read_text())
    assert record["metric_options"]["calibration"]["applicable"] is False


# ---------------------------------------------------------------- the other adapters hand over probabilities

def _helpers(name: str):
    """The model tests' helpers (tiny saved models), imported from their file."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).parents[1] / "models" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"_calibration_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_hf_logit_models_hand_over_the_softmax_of_the_upsampled_logits(tmp_path) -> None:
    pytest.importorskip("transformers")
    import torch.nn.functional as F

    hf = _helpers("test_hf")
    folder = hf.save_segformer(tmp_path / "segformer", hf.LABELS)
    images = [hf.image(40, 56, 0), hf.image(40, 56, 1)]
    model = hf.adapter(folder)
    predictions, confidences = model.predict_with_confidence(images, ["a", "b"])
    _, outputs = hf.transformers_outputs(folder, "segformer", images)
    for i, (pred, expected) in enumerate(zip(predictions, model.predict(images, ["a", "b"]))):
        assert torch.equal(pred, expected)
        probabilities = F.interpolate(outputs.logits[i:i + 1], size=(40, 56), mode="bilinear",
                                      align_corners=False)[0].softmax(0)
        torch.testing.assert_close(confidences[i], probabilities.gather(0, pred[None])[0])
    mapped = hf.adapter(folder, num_classes=2, class_map=[0, 0, 1, 1, 1])
    mapped_predictions, mapped_confidences = mapped.predict_with_confidence(images[:1], ["a"])
    assert (mapped_confidences[0] >= confidences[0] - 1e-6).all()  # summed over the model classes


def test_hf_mask_models_hand_over_none(tmp_path) -> None:
    pytest.importorskip("transformers")
    hf = _helpers("test_hf")
    folder = hf.save_mask2former(tmp_path / "m2f", hf.LABELS)
    images = [hf.image(40, 56, 0)]
    model = hf.adapter(folder)
    predictions, confidences = model.predict_with_confidence(images, ["a"])
    assert confidences is None and torch.equal(predictions[0], model.predict(images, ["a"])[0])


@pytest.mark.parametrize("tta", [False, True])
def test_mmseg_confidence_is_the_probability_the_prediction_came_from(tmp_path, tta) -> None:
    mm = _helpers("test_mmseg")
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmseg.registry import MODELS as MMSEG_MODELS

    from segbench.models.mmseg_adapter import MMSegAdapter, MMSegModelConfig
    from segbench.types import DatasetInfo

    init_default_scope("mmseg")
    config = Config.fromfile(str(mm.resolve_config(mm.CONFIG)[0]))
    torch.manual_seed(0)
    checkpoint = tmp_path / "cgnet.pth"
    torch.save({"state_dict": MMSEG_MODELS.build(config.model).state_dict()}, checkpoint)
    options = {} if tta else mm.SMALL
    cfg = MMSegModelConfig(name="m", type="mmseg", config=mm.CONFIG, checkpoint=checkpoint, tta=tta,
                           cfg_options=options)
    info = DatasetInfo("cs", 19, [f"c{i}" for i in range(19)])
    adapter = MMSegAdapter(cfg, info, torch.device("cpu"))
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (*mm.SIZE, 3), dtype=np.uint8) for _ in range(2)]
    predictions, confidences = adapter.predict_with_confidence(images, ["a", "b"])
    for pred, expected, confidence in zip(predictions, adapter.predict(images, ["a", "b"]), confidences):
        assert torch.equal(pred, expected)
        assert confidence.shape == pred.shape and bool(((confidence > 1 / 19 - 1e-6) & (confidence <= 1)).all())
    if not tta:
        from mmengine.dataset import pseudo_collate
        data = pseudo_collate([adapter.pipeline({"img": np.ascontiguousarray(images[0][..., ::-1])})])
        logits = adapter.model.test_step(data)[0].seg_logits.data
        torch.testing.assert_close(confidences[0], logits.softmax(0).max(0).values)


def test_the_top_probability_is_the_softmax_of_the_argmax_class() -> None:
    from segbench.models.base import top_probability

    logits = torch.randn(2, 19, 8, 12, generator=torch.Generator().manual_seed(0)) * 5
    expected = logits.softmax(dim=1).amax(dim=1)
    torch.testing.assert_close(top_probability(logits), expected, rtol=1e-6, atol=1e-7)
    # ties: two equal best classes share the mass; huge logits do not overflow
    assert top_probability(torch.tensor([[[[1.0]], [[1.0]]]])).item() == 0.5
    assert top_probability(torch.tensor([[[[1e4]], [[0.0]]]])).item() == 1.0
