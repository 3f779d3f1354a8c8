"""The image-level mIoU conventions of Wang et al.: a literal reference, MONAI, a hand case."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from segbench.metrics.fine_grained import FineGrainedMetric


def literal_image_level_mious(preds: list[np.ndarray], labels: list[np.ndarray], k: int,
                              ignore: int = 255) -> dict[str, float]:
    """The definitions read literally, per image and class, with masks."""
    per_image, per_class = [], {c: [] for c in range(k)}
    for pred, label in zip(preds, labels):
        keep = label != ignore
        if not keep.any():
            continue
        ious = []
        for c in range(k):
            if not (label[keep] == c).any():
                continue
            inter = np.sum((pred[keep] == c) & (label[keep] == c))
            union = np.sum((pred[keep] == c) | (label[keep] == c))
            ious.append(inter / union)
            per_class[c].append(inter / union)
        per_image.append(sum(ious) / len(ious))
    n = max(1, math.floor(0.1 * len(per_image)))
    return {"mIoU_I": sum(per_image) / len(per_image),
            "mIoU_C": float(np.mean([np.mean(v) for v in per_class.values() if v])),
            "mIoU_I_q10": sum(sorted(per_image)[:n]) / n}


def random_maps(seed: int, images: int, k: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    labels = [rng.integers(0, k, (7, 9)) for _ in range(images)]
    preds = [np.where(rng.random((7, 9)) < 0.6, label, rng.integers(0, k, (7, 9))) for label in labels]
    for label in labels[::3]:
        label[:2] = 255  # ignore pixels
    labels[1][:] = 255  # an image with no labelled pixel is skipped
    labels[2][labels[2] == 0] = 1  # class 0 absent from an image's label, maybe predicted
    return preds, labels


def run_fine_grained(preds: list[np.ndarray], labels: list[np.ndarray], k: int) -> dict[str, float]:
    metric = FineGrainedMetric(k)
    for i, (pred, label) in enumerate(zip(preds, labels)):
        metric.update(torch.from_numpy(pred), torch.from_numpy(label), f"img{i}")
    return metric.compute().summary


@pytest.mark.parametrize("seed, images, k", [(0, 12, 4), (1, 25, 6), (2, 3, 3)])
def test_image_level_mious_match_the_literal_definitions(seed: int, images: int, k: int) -> None:
    preds, labels = random_maps(seed, images, k)
    ours = run_fine_grained(preds, labels, k)
    expected = literal_image_level_mious(preds, labels, k)
    for name in ("mIoU_I", "mIoU_C", "mIoU_I_q10"):
        assert ours[name] == pytest.approx(expected[name], abs=1e-12), name
    assert ours["mIoU_I_q10"] < ours["mIoU_I"]


def test_image_level_mious_match_monai_where_the_definitions_coincide() -> None:
    """MONAI's compute_iou with ignore_empty: NaN for a class absent from the label (even where predicted);
    per image its mean over classes ('mean_channel') is our image value, per class over images
    ('mean_batch') our class value. Ignore pixels are dropped before, as MONAI has no ignore index."""
    from monai.metrics import compute_iou

    k = 5
    preds, labels = random_maps(4, 10, k)
    values = []
    for pred, label in zip(preds, labels):
        keep = label != 255
        if not keep.any():
            continue
        onehot = [torch.nn.functional.one_hot(torch.from_numpy(x[keep]), k).T[None].float() for x in (pred, label)]
        values.append(compute_iou(*onehot, include_background=True, ignore_empty=True)[0].numpy())
    iou = np.stack(values)
    ours = run_fine_grained(preds, labels, k)
    assert ours["mIoU_I"] == pytest.approx(np.nanmean(iou, axis=1).mean(), abs=1e-6)
    assert ours["mIoU_C"] == pytest.approx(np.nanmean(np.nanmean(iou, axis=0)), abs=1e-6)


def test_image_level_mious_hand_case() -> None:
    """Two 1x4 images, three classes. Image a: label [0 0 1 1], pred [0 1 1 1]: IoU0 1/2, IoU1 2/3.
    Image b: label [2 2 2 255], pred [2 2 0 0]: IoU2 2/3 (class 0 only predicted: not counted)."""
    preds = [np.array([[0, 1, 1, 1]]), np.array([[2, 2, 0, 0]])]
    labels = [np.array([[0, 0, 1, 1]]), np.array([[2, 2, 2, 255]])]
    ours = run_fine_grained(preds, labels, 3)
    assert ours["mIoU_I"] == pytest.approx(((1 / 2 + 2 / 3) / 2 + 2 / 3) / 2)
    assert ours["mIoU_C"] == pytest.approx((1 / 2 + 2 / 3 + 2 / 3) / 3)
    assert ours["mIoU_I_q10"] == pytest.approx((1 / 2 + 2 / 3) / 2)


def test_merging_halves_equals_one_pass() -> None:
    preds, labels = random_maps(5, 9, 4)
    whole, head, tail = FineGrainedMetric(4), FineGrainedMetric(4), FineGrainedMetric(4)
    for i, (pred, label) in enumerate(zip(preds, labels)):
        args = torch.from_numpy(pred), torch.from_numpy(label), f"img{i}"
        whole.update(*args)
        (head if i < 4 else tail).update(*args)
    head.merge(tail)
    assert head.compute().summary == whole.compute().summary
    assert [r["image_id"] for r in head.compute().per_image] == [f"img{i}" for i in range(9)]
    assert math.isnan(head.compute().per_image[1]["mIoU_I"])  # no labelled pixel


def torchmetrics_class_mean(preds: list[np.ndarray], labels: list[np.ndarray], k: int) -> float:
    """torchmetrics' MeanIoU(per_class=True) updated image by image on one-hot maps whose ignore pixels are
    zeroed in both, then averaged over the classes it scores (it gives -1 to a class no image holds or
    predicts)."""
    from torchmetrics.segmentation import MeanIoU

    metric = MeanIoU(num_classes=k, per_class=True, input_format="one-hot")
    for pred, label in zip(preds, labels):
        keep = torch.from_numpy(label != 255)
        onehot = [(torch.nn.functional.one_hot(torch.from_numpy(x).masked_fill(~keep, 0), k).permute(2, 0, 1)
                   & keep)[None] for x in (pred, label)]
        metric.update(*onehot)
    per_class = metric.compute().numpy()
    return float(per_class[per_class >= 0].mean())


def test_miou_c_matches_torchmetrics_when_no_image_predicts_a_class_its_label_lacks() -> None:
    """torchmetrics 1.9's MeanIoU(per_class=True) averages per class the IoUs of the images where the class is
    in the label OR the prediction (union > 0), so an image predicting a class its label lacks adds a 0 there;
    mIoU_C counts only the images whose label holds the class. They agree when each image's predictions (on
    its labelled pixels) come from the classes of its label; here the images hold different class sets."""
    k = 6
    rng = np.random.default_rng(3)
    preds, labels = [], []
    for size in (2, 3, 3, 4, 5, 6, 2, 4):
        label = rng.choice(rng.choice(k, size, replace=False), (8, 10))
        label[:rng.integers(0, 7)] = 255  # labelled areas of different sizes
        held = np.unique(label[label != 255])
        pred = np.where(rng.random((8, 10)) < 0.6, label, rng.choice(held, (8, 10)))
        preds.append(np.where(label == 255, rng.integers(0, k, (8, 10)), pred))  # anything under ignore pixels
        labels.append(label)
    ours = run_fine_grained(preds, labels, k)
    assert ours["mIoU_C"] == pytest.approx(torchmetrics_class_mean(preds, labels, k), abs=1e-6)

    keep = [label != 255 for label in labels]
    pairs = [(p[m], l[m]) for p, l, m in zip(preds, labels, keep)]
    inter = sum(np.bincount(p[p == l], minlength=k) for p, l in pairs)
    area = sum(np.bincount(p, minlength=k) + np.bincount(l, minlength=k) for p, l in pairs)
    dataset_miou = np.mean(inter / (area - inter))
    assert abs(ours["mIoU_C"] - dataset_miou) > 0.03  # the reference tells the conventions apart

    lacking = next(c for c in range(k) if not (labels[0] == c).any())
    preds[0][tuple(np.argwhere(keep[0])[0])] = lacking  # the condition broken on one pixel
    assert torchmetrics_class_mean(preds, labels, k) < run_fine_grained(preds, labels, k)["mIoU_C"] - 1e-3
