"""Accuracy family: hand-computed cases, a brute-force numpy reference, merge and order laws."""

from __future__ import annotations

import math
import warnings

import torchmetrics.functional.classification as functional
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from segbench.metrics.base import MetricResult
from segbench.metrics.confusion import (
    AccuracyMetric,
    accuracy_from_counts,
    confusion_matrix,
    counts_from_confusion,
)
from segbench.registry import METRICS

SUMMARY_KEYS = {"aAcc", "mAcc", "mIoU", "fwIoU", "mDice", "mPrecision", "mRecall"}
RATIO_KEYS = ("IoU", "Acc", "Dice", "Precision", "Recall")
COUNT_KEYS = ("area_intersect", "area_union", "area_pred_label", "area_label")
NAN = math.nan

# 3x4 image, K = 4, two ignore pixels (255). Class 2 is predicted but absent
# from the labels; class 3 is absent from both. The pred under the ignore
# pixels (0 and 2) must not count.
LABEL = [[0, 0, 1, 1],
         [0, 0, 1, 255],
         [255, 1, 1, 1]]
PRED = [[0, 1, 1, 1],
        [0, 2, 1, 0],
        [2, 1, 0, 1]]
CONFUSION = [[2, 1, 1, 0],
             [1, 5, 0, 0],
             [0, 0, 0, 0],
             [0, 0, 0, 0]]


def run_metric(pairs: list[tuple[np.ndarray, np.ndarray]], num_classes: int,
               ignore_index: int = 255, first_id: int = 0) -> AccuracyMetric:
    metric = AccuracyMetric(num_classes, ignore_index)
    for i, (pred, label) in enumerate(pairs, start=first_id):
        metric.update(torch.from_numpy(pred), torch.from_numpy(label), f"img{i}")
    return metric


def assert_same_numbers(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def nan_as_text(records: list[dict]) -> list[dict]:
    """Records comparable with ==, where nan != nan."""
    return [{k: "nan" if isinstance(v, float) and math.isnan(v) else v for k, v in r.items()}
            for r in records]


# --- hand-computed -----------------------------------------------------------

def test_confusion_matrix_hand_case() -> None:
    confusion = confusion_matrix(torch.tensor(PRED), torch.tensor(LABEL), 4)
    assert confusion.dtype == torch.int64
    assert confusion.tolist() == CONFUSION


def test_counts_hand_case() -> None:
    counts = counts_from_confusion(torch.tensor(CONFUSION))
    assert {k: v.tolist() for k, v in counts.items()} == {
        "area_intersect": [2, 5, 0, 0],
        "area_union": [5, 7, 1, 0],
        "area_pred_label": [3, 6, 1, 0],
        "area_label": [4, 6, 0, 0],
    }


def test_figures_hand_case() -> None:
    summary, per_class = accuracy_from_counts(
        [2, 5, 0, 0], [5, 7, 1, 0], [3, 6, 1, 0], [4, 6, 0, 0])
    expected_summary = {
        "aAcc": 7 / 10,
        "mAcc": (2 / 4 + 5 / 6) / 2,
        "mIoU": (2 / 5 + 5 / 7 + 0) / 3,        # class 2: predicted only, IoU 0, counts
        "fwIoU": 4 / 10 * 2 / 5 + 6 / 10 * 5 / 7,
        "mDice": (4 / 7 + 10 / 12 + 0) / 3,
        "mPrecision": (2 / 3 + 5 / 6 + 0) / 3,
        "mRecall": (2 / 4 + 5 / 6) / 2,
    }
    assert summary.keys() == expected_summary.keys()
    for key, value in expected_summary.items():
        assert summary[key] == pytest.approx(value, rel=1e-12), key
        assert isinstance(summary[key], float)
    expected_per_class = {
        "IoU": [2 / 5, 5 / 7, 0, NAN],
        "Acc": [2 / 4, 5 / 6, NAN, NAN],
        "Dice": [4 / 7, 10 / 12, 0, NAN],
        "Precision": [2 / 3, 5 / 6, 0, NAN],
        "Recall": [2 / 4, 5 / 6, NAN, NAN],
    }
    assert set(per_class) == set(expected_per_class) | set(COUNT_KEYS)
    for key, value in expected_per_class.items():
        assert per_class[key].dtype == np.float64
        np.testing.assert_allclose(per_class[key], value, rtol=1e-12, err_msg=key)
    for key in COUNT_KEYS:
        assert per_class[key].dtype == np.int64
    assert per_class["area_label"].tolist() == [4, 6, 0, 0]


def test_metric_hand_case_and_record() -> None:
    metric = run_metric([(np.array(PRED), np.array(LABEL))], 4)
    result = metric.compute()
    assert isinstance(result, MetricResult)
    assert result.summary["mIoU"] == pytest.approx(13 / 35, rel=1e-12)
    assert result.summary["fwIoU"] == pytest.approx(103 / 175, rel=1e-12)
    (record,) = result.per_image
    assert record == {
        "image_id": "img0",
        "aAcc": pytest.approx(0.7),
        "mIoU": pytest.approx(13 / 35),
        "mAcc": pytest.approx(2 / 3),
        "area_intersect": [2, 5, 0, 0],
        "area_union": [5, 7, 1, 0],
        "area_pred_label": [3, 6, 1, 0],
        "area_label": [4, 6, 0, 0],
    }
    assert all(type(v) is int for key in COUNT_KEYS for v in record[key])


def test_empty_dataset_gives_nan_without_warnings() -> None:
    label = np.full((2, 3), 255)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = run_metric([(np.zeros((2, 3), dtype=np.int64), label)], 3).compute()
        never_updated = AccuracyMetric(3).compute()
    for summary in (result.summary, never_updated.summary):
        assert set(summary) == SUMMARY_KEYS
        assert all(math.isnan(v) for v in summary.values())
    assert math.isnan(result.per_image[0]["mIoU"])
    assert never_updated.per_image == []


def test_inputs_not_modified_and_small_dtypes() -> None:
    label = torch.tensor(LABEL, dtype=torch.int16)
    pred = torch.tensor(PRED, dtype=torch.int16)
    confusion = confusion_matrix(pred, label, 4)
    assert confusion.tolist() == CONFUSION
    assert label.tolist() == LABEL and pred.tolist() == PRED
    uint8 = torch.tensor(PRED, dtype=torch.uint8), torch.tensor(LABEL, dtype=torch.uint8)
    assert confusion_matrix(*uint8, 4).tolist() == CONFUSION


@pytest.mark.parametrize("ignore_index", [255, -1, 0])
def test_other_ignore_indices(ignore_index: int) -> None:
    label = np.array(LABEL)
    label[label == 255] = ignore_index
    pred = np.array(PRED)
    expected = reference_counts([(pred, label)], 4, ignore_index)
    confusion = confusion_matrix(torch.from_numpy(pred), torch.from_numpy(label), 4, ignore_index)
    counts = {k: v.numpy() for k, v in counts_from_confusion(confusion).items()}
    assert_same_numbers(counts, expected)


@pytest.mark.parametrize("num_classes", [180, 181, 200])
def test_many_classes(num_classes: int) -> None:
    """The flat index (K + 1) * K - 1 fits int16 up to K = 180."""
    rng = np.random.default_rng(0)
    label = rng.integers(0, num_classes, size=(37, 41))
    label[rng.random(label.shape) < 0.1] = 255
    pred = rng.integers(0, num_classes, size=label.shape)
    label[0, :2] = pred[0, :2] = num_classes - 1  # the largest flat index
    confusion = confusion_matrix(torch.from_numpy(pred), torch.from_numpy(label), num_classes)
    counts = {k: v.numpy() for k, v in counts_from_confusion(confusion).items()}
    assert_same_numbers(counts, reference_counts([(pred, label)], num_classes, 255))


def test_registered_and_options() -> None:
    assert METRICS["accuracy"].state is AccuracyMetric
    options = AccuracyMetric(19).options()
    assert options["num_classes"] == 19 and options["ignore_index"] == 255
    assert "rows=label" in options["confusion"]


@pytest.mark.parametrize("other", [AccuracyMetric(5), AccuracyMetric(4, ignore_index=0)])
def test_merge_refuses_other_conventions(other: AccuracyMetric) -> None:
    with pytest.raises(ValueError, match="num_classes"):
        AccuracyMetric(4).merge(other)


def test_reset() -> None:
    metric = run_metric([(np.array(PRED), np.array(LABEL))], 4)
    metric.reset()
    assert metric.confusion.sum() == 0 and metric.records == []


# --- brute-force reference -----------------------------------------------------

def reference_counts(pairs: list[tuple[np.ndarray, np.ndarray]], num_classes: int,
                     ignore_index: int) -> dict[str, np.ndarray]:
    """Per-class masks, one class at a time, the definitions read literally."""
    counts = {key: np.zeros(num_classes, dtype=np.int64) for key in COUNT_KEYS}
    for pred, label in pairs:
        valid = label != ignore_index
        for c in range(num_classes):
            in_label = (label == c) & valid
            in_pred = (pred == c) & valid
            counts["area_intersect"][c] += np.count_nonzero(in_label & in_pred)
            counts["area_union"][c] += np.count_nonzero(in_label | in_pred)
            counts["area_pred_label"][c] += np.count_nonzero(in_pred)
            counts["area_label"][c] += np.count_nonzero(in_label)
    return counts


def reference_figures(counts: dict[str, np.ndarray]
                      ) -> tuple[dict[str, float], dict[str, list[float]]]:
    inter, union = counts["area_intersect"], counts["area_union"]
    pred, label = counts["area_pred_label"], counts["area_label"]
    k = len(inter)

    def div(a: float, b: float) -> float:
        return a / b if b else NAN

    def mean_defined(values: list[float]) -> float:
        defined = [v for v in values if not math.isnan(v)]
        return sum(defined) / len(defined) if defined else NAN

    total = int(label.sum())
    acc = [div(inter[c], label[c]) for c in range(k)]
    iou = [div(inter[c], union[c]) for c in range(k)]
    dice = [div(2 * inter[c], label[c] + pred[c]) for c in range(k)]
    precision = [div(inter[c], pred[c]) for c in range(k)]
    fw = sum(label[c] / total * iou[c] for c in range(k) if union[c]) if total else NAN
    summary = {
        "aAcc": div(int(inter.sum()), total),
        "mAcc": mean_defined(acc),
        "mIoU": mean_defined(iou),
        "fwIoU": fw,
        "mDice": mean_defined(dice),
        "mPrecision": mean_defined(precision),
        "mRecall": mean_defined(acc),
    }
    return summary, {"IoU": iou, "Acc": acc, "Dice": dice, "Precision": precision, "Recall": acc}


@st.composite
def datasets(draw: st.DrawFn) -> tuple[list[tuple[np.ndarray, np.ndarray]], int, int]:
    """1-4 images of odd sizes, K in 1..8, labels with ignore pixels."""
    num_classes = draw(st.integers(1, 8))
    ignore_index = draw(st.sampled_from([255, -1]))
    label_values = st.sampled_from(list(range(num_classes)) + [ignore_index])
    pred_values = st.integers(0, num_classes - 1)
    pairs = []
    for _ in range(draw(st.integers(1, 4))):
        shape = (draw(st.integers(1, 9)), draw(st.integers(1, 9)))
        label = draw(hnp.arrays(np.int64, shape, elements=label_values))
        pred = draw(hnp.arrays(np.int64, shape, elements=pred_values))
        pairs.append((pred, label))
    return pairs, num_classes, ignore_index


@settings(max_examples=150, deadline=None)
@given(datasets())
def test_matches_brute_force_reference(data: tuple) -> None:
    pairs, num_classes, ignore_index = data
    result = run_metric(pairs, num_classes, ignore_index).compute()
    counts = reference_counts(pairs, num_classes, ignore_index)
    summary, per_class = reference_figures(counts)
    for key in COUNT_KEYS:
        np.testing.assert_array_equal(result.per_class[key], counts[key], err_msg=key)
    assert result.summary.keys() == summary.keys()
    for key, value in summary.items():
        np.testing.assert_allclose(result.summary[key], value, rtol=1e-12, equal_nan=True,
                                   err_msg=key)
    for key, values in per_class.items():
        np.testing.assert_allclose(result.per_class[key], values, rtol=1e-12, equal_nan=True,
                                   err_msg=key)
    for (pred, label), record in zip(pairs, result.per_image):
        image_counts = reference_counts([(pred, label)], num_classes, ignore_index)
        image_summary, _ = reference_figures(image_counts)
        for key in ("aAcc", "mIoU", "mAcc"):
            np.testing.assert_allclose(record[key], image_summary[key], rtol=1e-12, equal_nan=True)


@settings(max_examples=50, deadline=None)
@given(datasets(), st.randoms(use_true_random=False))
def test_perfect_prediction_scores_one(data: tuple, rng) -> None:
    pairs, num_classes, ignore_index = data
    # pred = label, with any class under the ignore pixels
    perfect = [(np.where(label == ignore_index, rng.randrange(num_classes), label), label)
               for _, label in pairs]
    result = run_metric(perfect, num_classes, ignore_index).compute()
    present = sum(np.count_nonzero(label != ignore_index) for _, label in pairs) > 0
    for key, value in result.summary.items():
        assert value == pytest.approx(1.0, rel=1e-12) if present else math.isnan(value), key
    for key in RATIO_KEYS:
        defined = result.per_class[key][~np.isnan(result.per_class[key])]
        assert np.all(defined == 1.0), key


@settings(max_examples=50, deadline=None)
@given(datasets(), st.data())
def test_image_order_does_not_matter(data: tuple, draw: st.DataObject) -> None:
    pairs, num_classes, ignore_index = data
    shuffled = draw.draw(st.permutations(pairs))
    first = run_metric(pairs, num_classes, ignore_index).compute()
    second = run_metric(shuffled, num_classes, ignore_index).compute()
    assert_same_numbers(first.summary, second.summary)
    assert_same_numbers(first.per_class, second.per_class)


@settings(max_examples=50, deadline=None)
@given(datasets(), st.data())
def test_merging_halves_equals_one_pass(data: tuple, draw: st.DataObject) -> None:
    pairs, num_classes, ignore_index = data
    split = draw.draw(st.integers(0, len(pairs)))
    whole = run_metric(pairs, num_classes, ignore_index)
    head = run_metric(pairs[:split], num_classes, ignore_index)
    tail = run_metric(pairs[split:], num_classes, ignore_index, first_id=split)
    head.merge(tail)
    assert torch.equal(head.confusion, whole.confusion)
    assert nan_as_text(head.records) == nan_as_text(whole.records)
    merged, one_pass = head.compute(), whole.compute()
    assert_same_numbers(merged.summary, one_pass.summary)
    assert_same_numbers(merged.per_class, one_pass.per_class)


@settings(max_examples=30, deadline=None)
@given(datasets(), st.data())
def test_subset_figures_from_summed_records(data: tuple, draw: st.DataObject) -> None:
    """What the bootstrap does: sum the per-image counts of a subset, recompute."""
    pairs, num_classes, ignore_index = data
    subset = draw.draw(st.lists(st.integers(0, len(pairs) - 1), min_size=1, unique=True))
    records = run_metric(pairs, num_classes, ignore_index).records
    summed = {key: np.sum([records[i][key] for i in subset], axis=0) for key in COUNT_KEYS}
    summary, _ = accuracy_from_counts(**summed)
    direct = run_metric([pairs[i] for i in subset], num_classes, ignore_index).compute()
    assert_same_numbers(summary, direct.summary)


# --- peers and devices -------------------------------------------------------------

def test_confusion_matches_torchmetrics() -> None:
    generator = torch.Generator().manual_seed(0)
    label = torch.randint(0, 7, (33, 47), generator=generator)
    label[torch.rand(label.shape, generator=generator) < 0.2] = 255
    pred = torch.randint(0, 7, (33, 47), generator=generator)
    theirs = functional.multiclass_confusion_matrix(pred, label, num_classes=7, ignore_index=255)
    assert torch.equal(confusion_matrix(pred, label, 7), theirs)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu() -> None:
    generator = torch.Generator().manual_seed(0)
    label = torch.randint(0, 19, (64, 96), generator=generator)
    label[torch.rand(label.shape, generator=generator) < 0.1] = 255
    pred = torch.randint(0, 19, (64, 96), generator=generator)
    metric = AccuracyMetric(19, device="cuda")
    metric.update(pred.cuda(), label.cuda(), "a")
    assert metric.confusion.device.type == "cuda"
    assert torch.equal(metric.confusion.cpu(), confusion_matrix(pred, label, 19))
