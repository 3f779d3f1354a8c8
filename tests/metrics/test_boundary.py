"""Boundary group (BF, BIoU): a literal brute-force reference, special and hand cases, merge and order laws.

The reference reads DESIGN.md's definition literally, one class mask at a
time: scipy's binary erosion for boundaries and bands, scipy's exact
Euclidean distance transform for distances.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage as ndi

from boundary_reference import (IGNORE, assert_same, assert_same_records, reference_boundary,
                                reference_class_means, reference_distances, reference_masks)
from segbench.errors import UserError
from segbench.metrics.boundary import BoundaryMetric, biou_width, boundary_iou_counts, parse_tolerance
from segbench.metrics.contours import (boundary_pair, class_boundaries, class_maps, compute_boundary_pair,
                                       torch_on_cpu)
from segbench.registry import METRICS
from segbench.metrics.boundary import BoundaryOptions
from segbench.suite import metrics_model, parse_suite

NAN = math.nan


# --- the reference -------------------------------------------------------------

def reference_bf(pred: np.ndarray, label: np.ndarray, tolerance_px: float, num_classes: int,
                 ignore_index: int = IGNORE) -> np.ndarray:
    """(3, K): precision, recall, F per class; NaN where not evaluated."""
    out = np.full((3, num_classes), NAN)
    for c in range(num_classes):
        p, g = reference_masks(pred, label, c, ignore_index)
        if not p.any() and not g.any():
            continue
        if not p.any() or not g.any():
            out[:, c] = 0.0
            continue
        bp, bg = reference_boundary(p), reference_boundary(g)
        precision = np.mean(reference_distances(bp, bg) <= tolerance_px)
        recall = np.mean(reference_distances(bg, bp) <= tolerance_px)
        f = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
        out[:, c] = precision, recall, f
    return out


def reference_band(mask: np.ndarray, d: int) -> np.ndarray:
    """The mask minus its erosion by a 3x3 square applied d times, the frame outside (Cheng et al.)."""
    return mask & ~ndi.binary_erosion(mask, structure=np.ones((3, 3), bool), iterations=d, border_value=0)


def reference_biou_counts(pred: np.ndarray, label: np.ndarray, d: int, num_classes: int,
                          ignore_index: int = IGNORE) -> tuple[list[int], list[int]]:
    intersection, union = [], []
    for c in range(num_classes):
        p, g = reference_masks(pred, label, c, ignore_index)
        bp, bg = reference_band(p, d), reference_band(g, d)
        intersection.append(int((bp & bg).sum()))
        union.append(int((bp | bg).sum()))
    return intersection, union


# --- label maps ----------------------------------------------------------------

def structured_map(rng: np.random.Generator, height: int, width: int, num_classes: int,
                   ignore: bool) -> np.ndarray:
    """A background class, then rectangles and discs of random classes, sometimes an ignore blob."""
    out = np.full((height, width), rng.integers(num_classes), dtype=np.int64)
    yy, xx = np.mgrid[:height, :width]
    for _ in range(rng.integers(0, 6)):
        c = rng.integers(num_classes)
        cy, cx = rng.uniform(-2, height + 2), rng.uniform(-2, width + 2)
        size = rng.uniform(0.5, max(height, width) / 2)
        if rng.random() < 0.5:
            shape = (np.abs(yy - cy) <= size) & (np.abs(xx - cx) <= size * rng.uniform(0.3, 1.5))
        else:
            shape = (yy - cy) ** 2 + (xx - cx) ** 2 <= size**2
        out[shape] = c
    if ignore and rng.random() < 0.5:
        blob = (yy - rng.uniform(0, height)) ** 2 + (xx - rng.uniform(0, width)) ** 2 <= rng.uniform(0, 16)
        out[blob] = IGNORE
    return out


@st.composite
def pairs(draw: st.DrawFn, max_side: int = 21, num_classes: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """(pred, label): random noise or structured maps, odd and even sizes, with ignore pixels."""
    height, width = draw(st.integers(1, max_side)), draw(st.integers(1, max_side))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    kind = draw(st.sampled_from(["noise", "structured", "perturbed"]))
    if kind == "noise":
        label = rng.integers(0, num_classes, (height, width))
        label[rng.random((height, width)) < 0.1] = IGNORE
        pred = rng.integers(0, num_classes, (height, width))
    else:
        label = structured_map(rng, height, width, num_classes, ignore=True)
        pred = structured_map(rng, height, width, num_classes, ignore=False)
        if kind == "perturbed":  # mostly right, as a model is
            keep = rng.random((height, width)) < 0.9
            pred = np.where(keep & (label != IGNORE), label, pred)
    return pred, label


def run(pairs_: list[tuple[np.ndarray, np.ndarray]], num_classes: int, first: int = 0,
        **options) -> BoundaryMetric:
    metric = BoundaryMetric(num_classes, IGNORE, "cpu", **options)
    for i, (pred, label) in enumerate(pairs_, start=first):
        metric.update(torch.from_numpy(pred), torch.from_numpy(label), f"img{i}")
    return metric


# --- against the reference -------------------------------------------------------

@settings(max_examples=150, deadline=None)
@given(pairs())
def test_boundaries_match_the_erosion(pair: tuple[np.ndarray, np.ndarray]) -> None:
    pred, label = pair
    pred_map, label_map = class_maps(torch.from_numpy(pred), torch.from_numpy(label), 4, IGNORE)
    for classes, which in ((pred_map, 0), (label_map, 1)):
        found = class_boundaries(classes, 4)
        for c in range(4):
            expected = reference_boundary(reference_masks(pred, label, c)[which])
            mask = np.zeros(label.shape, bool)
            part = slice(found.starts[c], found.starts[c + 1])
            mask[found.rows[part], found.cols[part]] = True
            assert found.counts()[c] == expected.sum()
            assert np.array_equal(mask, expected)


@settings(max_examples=60, deadline=None)
@given(pairs())
def test_the_pair_finds_the_same_boundaries_as_class_boundaries(pair: tuple[np.ndarray, np.ndarray]) -> None:
    """compute_boundary_pair takes the boundary positions from its own search; the same pixels, same order."""
    maps = class_maps(*(torch.from_numpy(m) for m in pair), 4, IGNORE)
    found = compute_boundary_pair(*maps, 4)
    for mine, classes in ((found.pred, maps[0]), (found.label, maps[1])):
        alone = class_boundaries(classes, 4)
        for name in ("rows", "cols", "classes", "starts"):
            assert np.array_equal(getattr(mine, name), getattr(alone, name))


@pytest.mark.parametrize("ignore_index", [255, -100, 40000, 65537])
def test_class_maps_with_any_ignore_index(ignore_index: int) -> None:
    """The ignore check reads the int16 copy only when the index fits: 65537 is 1 in int16, a class."""
    label = torch.tensor([[0, 1, ignore_index], [1, 2, 0]])
    pred = torch.tensor([[1, 1, 2], [0, 2, 1]])
    expected_pred, expected_label = [[1, 1, -1], [0, 2, 1]], [[0, 1, -1], [1, 2, 0]]
    pred_map, label_map = class_maps(pred, label, 3, ignore_index)
    assert pred_map.tolist() == expected_pred and label_map.tolist() == expected_label
    with torch_on_cpu():
        pred_map, label_map = class_maps(pred, label, 3, ignore_index)
    assert pred_map.tolist() == expected_pred and label_map.tolist() == expected_label


@settings(max_examples=150, deadline=None)
@given(pairs(), st.sampled_from([0.0075, 0.05, 0.2, "0px", "1px", "1.5px", "3px"]))
def test_bf_matches_the_reference(pair: tuple[np.ndarray, np.ndarray], tolerance) -> None:
    pred, label = pair
    (record,) = run([pair], 4, tolerance=tolerance).compute().per_image
    expected = reference_bf(pred, label, parse_tolerance(tolerance).pixels(label.shape), 4)
    assert_same([record["BF_precision"], record["BF_recall"], record["BF"]], expected)


@settings(max_examples=150, deadline=None)
@given(pairs(), st.integers(1, 6))
def test_biou_counts_match_the_reference(pair: tuple[np.ndarray, np.ndarray], d: int) -> None:
    pred, label = pair
    pred_map, label_map = class_maps(torch.from_numpy(pred), torch.from_numpy(label), 4, IGNORE)
    intersection, union = boundary_iou_counts(pred_map, label_map, d, 4)
    assert (intersection.tolist(), union.tolist()) == reference_biou_counts(pred, label, d, 4)


def test_biou_counts_with_many_classes() -> None:
    """Over 89 classes the counting code needs more than int16."""
    rng = np.random.default_rng(5)
    pred, label = rng.integers(0, 120, (2, 17, 23))
    label[rng.random(label.shape) < 0.1] = IGNORE
    pred_map, label_map = class_maps(torch.from_numpy(pred), torch.from_numpy(label), 120, IGNORE)
    intersection, union = boundary_iou_counts(pred_map, label_map, 2, 120)
    assert (intersection.tolist(), union.tolist()) == reference_biou_counts(pred, label, 2, 120)


@settings(max_examples=40, deadline=None)
@given(st.lists(pairs(), min_size=1, max_size=5), st.sampled_from([0.0075, "2px"]),
       st.sampled_from([0.02, 0.1, 0.3]))
def test_dataset_figures_match_the_reference(pairs_, tolerance, dilation_ratio: float) -> None:
    result = run(pairs_, 4, tolerance=tolerance, dilation_ratio=dilation_ratio).compute()
    bf = [reference_bf(p, g, parse_tolerance(tolerance).pixels(g.shape), 4) for p, g in pairs_]
    counts = [reference_biou_counts(p, g, biou_width(g.shape, dilation_ratio), 4) for p, g in pairs_]
    intersection = np.sum([c[0] for c in counts], axis=0)
    union = np.sum([c[1] for c in counts], axis=0)
    biou = np.array([i / u if u else NAN for i, u in zip(intersection, union)])
    expected = {"BF_precision": reference_class_means([b[0] for b in bf]),
                "BF_recall": reference_class_means([b[1] for b in bf]),
                "BF": reference_class_means([b[2] for b in bf]),
                "BIoU": biou}
    for key, values in expected.items():
        assert result.per_class[key].dtype == np.float64
        assert_same(result.per_class[key], values)
        summary_key = "m" + key
        defined = values[~np.isnan(values)]
        expected_mean = math.fsum(defined) / defined.size if defined.size else NAN
        assert_same(result.summary[summary_key], expected_mean)
    assert result.per_class["BIoU_intersect"].tolist() == intersection.tolist()
    assert result.per_class["BIoU_union"].tolist() == union.tolist()
    assert result.per_class["BF_images"].tolist() == np.count_nonzero(
        ~np.isnan([b[2] for b in bf]), axis=0).tolist()


# --- the torch path (CUDA tensors take it; torch_on_cpu forces it on CPU ones) ----------

@settings(max_examples=60, deadline=None)
@given(st.lists(pairs(), min_size=1, max_size=3), st.sampled_from([0.0075, 0.2, "1.5px"]),
       st.sampled_from([0.02, 0.3]))
def test_torch_path_gives_the_same_records(pairs_, tolerance, dilation_ratio: float) -> None:
    options = {"tolerance": tolerance, "dilation_ratio": dilation_ratio}
    with torch_on_cpu():
        on_torch = run(pairs_, 4, **options).compute().per_image
    assert_same_records(on_torch, run(pairs_, 4, **options).compute().per_image)


def test_torch_path_maps_and_biou_counts_with_many_classes() -> None:
    rng = np.random.default_rng(6)
    pred, label = (torch.from_numpy(m) for m in rng.integers(0, 120, (2, 17, 23)))
    label[torch.from_numpy(rng.random((17, 23)) < 0.1)] = IGNORE
    with torch_on_cpu():
        maps = class_maps(pred, label, 120, IGNORE)
    assert all(isinstance(m, torch.Tensor) for m in maps)
    assert all(isinstance(m, np.ndarray) for m in class_maps(pred, label, 120, IGNORE))
    counts = boundary_iou_counts(*maps, 2, 120)
    expected = reference_biou_counts(pred.numpy(), label.numpy(), 2, 120)
    assert (counts[0].tolist(), counts[1].tolist()) == expected


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_tensors_give_the_same_records() -> None:
    rng = np.random.default_rng(8)
    pairs_ = [(structured_map(rng, 61, 97, 4, ignore=False), structured_map(rng, 61, 97, 4, ignore=True))
              for _ in range(3)]
    on_cuda = BoundaryMetric(4, IGNORE, "cuda")
    for i, (pred, label) in enumerate(pairs_):
        on_cuda.update(torch.from_numpy(pred).cuda(), torch.from_numpy(label).cuda(), f"img{i}")
    assert_same_records(on_cuda.compute().per_image, run(pairs_, 4).compute().per_image)


# --- merge and order -------------------------------------------------------------

@settings(max_examples=30, deadline=None)
@given(st.lists(pairs(), min_size=2, max_size=6), st.data())
def test_merge_equals_one_pass_and_order_does_not_matter(pairs_, data) -> None:
    whole = run(pairs_, 4).compute()
    cut = data.draw(st.integers(1, len(pairs_) - 1))
    first, second = run(pairs_[:cut], 4), run(pairs_[cut:], 4, first=cut)
    first.merge(second)
    merged = first.compute()
    order = data.draw(st.permutations(range(len(pairs_))))
    shuffled = BoundaryMetric(4, IGNORE)
    for i in order:
        pred, label = pairs_[i]
        shuffled.update(torch.from_numpy(pred), torch.from_numpy(label), f"img{i}")
    for other in (merged, shuffled.compute()):
        assert other.summary.keys() == whole.summary.keys()
        for key in whole.summary:
            assert_same(other.summary[key], whole.summary[key])
        for key in whole.per_class:
            assert_same(other.per_class[key], whole.per_class[key])
    assert [r["image_id"] for r in merged.per_image] == [r["image_id"] for r in whole.per_image]


def test_merge_refuses_other_settings() -> None:
    with pytest.raises(ValueError, match="cannot merge boundary states"):
        BoundaryMetric(3, tolerance="2px").merge(BoundaryMetric(3))


def test_reset_empties_the_state() -> None:
    metric = run([(np.zeros((3, 3), np.int64), np.zeros((3, 3), np.int64))], 2)
    metric.reset()
    result = metric.compute()
    assert result.per_image == [] and all(math.isnan(v) for v in result.summary.values())


# --- hand-computed ---------------------------------------------------------------

# 5x6, K = 2: a 3x3 square of class 1 in the label, the same square one column
# to the right in the prediction. Default options: tolerance 0.0075 * sqrt(61)
# = 0.059 px (exact matches only), d = max(1, round(0.02 * 7.81)) = 1.
HAND_LABEL = np.zeros((5, 6), np.int64)
HAND_LABEL[1:4, 1:4] = 1
HAND_PRED = np.zeros((5, 6), np.int64)
HAND_PRED[1:4, 2:5] = 1


def test_hand_case_default_options() -> None:
    result = run([(HAND_PRED, HAND_LABEL)], 2).compute()
    # class 1: 8 ring pixels each, 4 shared; class 0: 21 boundary pixels each (18 on the frame, shared)
    assert_same(result.per_class["BF_precision"], [18 / 21, 4 / 8])
    assert_same(result.per_class["BF_recall"], [18 / 21, 4 / 8])
    np.testing.assert_allclose(result.per_class["BF"], [18 / 21, 0.5], rtol=1e-15)
    # bands at d = 1: class 1 the two rings (4 shared of 12), class 0 the whole masks (18 of 24)
    assert result.per_class["BIoU_intersect"].tolist() == [18, 4]
    assert result.per_class["BIoU_union"].tolist() == [24, 12]
    assert_same(result.per_class["BIoU"], [0.75, 1 / 3])
    assert result.summary["mBIoU"] == pytest.approx((0.75 + 1 / 3) / 2, rel=1e-15)
    assert result.summary["mBF"] == pytest.approx((18 / 21 + 0.5) / 2, rel=1e-15)


def test_hand_case_one_pixel_tolerance_matches_everything() -> None:
    result = run([(HAND_PRED, HAND_LABEL)], 2, tolerance="1px").compute()
    assert_same(result.per_class["BF"], [1.0, 1.0])


def test_record_holds_the_image_figures_and_counts() -> None:
    (record,) = run([(HAND_PRED, HAND_LABEL)], 2).compute().per_image
    assert set(record) == {"image_id", "mBF", "mBIoU", "BF", "BF_precision", "BF_recall",
                           "BIoU_intersect", "BIoU_union"}
    assert record["image_id"] == "img0"
    assert record["BIoU_intersect"] == [18, 4] and record["BIoU_union"] == [24, 12]
    assert all(type(v) is int for v in record["BIoU_intersect"] + record["BIoU_union"])
    assert record["mBIoU"] == pytest.approx((0.75 + 1 / 3) / 2)


# --- special cases ---------------------------------------------------------------

def test_ignore_pixels_belong_to_no_mask() -> None:
    """The prediction under ignore pixels does not count: here the masks become identical."""
    label = np.array([[1, 1, 1, 1, 1],
                      [1, 1, 1, 1, 1],
                      [IGNORE] * 5,
                      [0, 0, 0, 0, 0],
                      [0, 0, 0, 0, 0]])
    pred = label.copy()
    pred[2] = [1, 1, 2, 2, 0]  # class 2 exists only under the ignore row
    (record,) = run([(pred, label)], 3).compute().per_image
    assert_same(record["BF"], [1.0, 1.0, NAN])
    assert record["BIoU_intersect"] == record["BIoU_union"] == [10, 10, 0]
    # the rows next to the ignore row are boundary pixels of their masks
    pair = boundary_pair(torch.from_numpy(pred), torch.from_numpy(label), 3, IGNORE)
    assert pair.label.counts().tolist() == [10, 10, 0]


def test_ignore_index_inside_the_class_range() -> None:
    """ignore_index 0: label 0 is ignore, so class 0 is in no label mask; predicted elsewhere, one-sided."""
    label = np.array([[0, 0, 1], [2, 2, 1], [2, 2, 1]])
    pred = np.array([[0, 0, 1], [2, 0, 1], [2, 2, 1]])
    metric = BoundaryMetric(3, ignore_index=0)
    metric.update(torch.from_numpy(pred), torch.from_numpy(label), "a")
    (record,) = metric.compute().per_image
    expected = reference_bf(pred, label, parse_tolerance(0.0075).pixels(label.shape), 3, ignore_index=0)
    assert_same([record["BF_precision"], record["BF_recall"], record["BF"]], expected)
    assert record["BF"][0] == 0.0  # predicted at a valid pixel, absent from the labels


def test_class_in_one_mask_only_scores_zero_and_absent_class_is_not_evaluated() -> None:
    label = np.zeros((4, 5), np.int64)
    label[1, 1] = 1
    pred = np.zeros((4, 5), np.int64)
    pred[2, 3] = 2
    result = run([(pred, label)], 4).compute()
    assert_same(result.per_class["BF"], [result.per_class["BF"][0], 0.0, 0.0, NAN])
    assert_same(result.per_class["BF_precision"][1:], [0.0, 0.0, NAN])
    assert_same(result.per_class["BF_recall"][1:], [0.0, 0.0, NAN])
    assert result.per_class["BF_images"].tolist() == [1, 1, 1, 0]
    assert_same(result.per_class["BIoU"][1:], [0.0, 0.0, NAN])


def test_one_class_images_match_on_the_frame() -> None:
    same = np.full((7, 9), 2, np.int64)
    result = run([(same, same)], 3).compute()
    assert_same(result.per_class["BF"], [NAN, NAN, 1.0])
    assert_same(result.per_class["BIoU"], [NAN, NAN, 1.0])
    assert result.summary["mBF"] == 1.0 and result.summary["mBIoU"] == 1.0


def test_one_pixel_objects() -> None:
    label = np.zeros((5, 5), np.int64)
    label[2, 2] = 1
    pred = np.zeros((5, 5), np.int64)
    pred[0, 4] = 1  # a corner pixel: on the frame
    for tolerance, expected in (("2.8px", 0.0), ("2.83px", 1.0)):  # the two pixels are sqrt(8) = 2.828 apart
        (record,) = run([(pred, label)], 2, tolerance=tolerance).compute().per_image
        assert record["BF"][1] == expected
    (record,) = run([(pred, label)], 2).compute().per_image
    assert record["BIoU_intersect"][1] == 0 and record["BIoU_union"][1] == 2


def test_objects_touching_the_frame() -> None:
    label = np.zeros((5, 5), np.int64)
    label[:, 0] = 1
    pred = np.zeros((5, 5), np.int64)
    pred[:, :2] = 1
    (record,) = run([(pred, label)], 2).compute().per_image
    # label's column is all boundary (frame); the prediction's 2-wide strip too, one pixel off
    assert record["BF_precision"][1] == 0.5 and record["BF_recall"][1] == 1.0
    assert record["BIoU_intersect"][1] == 5 and record["BIoU_union"][1] == 10


def test_images_of_one_row_or_column() -> None:
    for shape in ((1, 9), (9, 1), (1, 1)):
        rng = np.random.default_rng(sum(shape))
        pred, label = rng.integers(0, 3, shape), rng.integers(0, 3, shape)
        (record,) = run([(pred, label)], 3).compute().per_image
        expected = reference_bf(pred, label, parse_tolerance(0.0075).pixels(shape), 3)
        assert_same([record["BF_precision"], record["BF_recall"], record["BF"]], expected)
        assert (record["BIoU_intersect"], record["BIoU_union"]) == reference_biou_counts(
            pred, label, biou_width(shape, 0.02), 3)


def test_biou_width_rounds_as_cheng_et_al() -> None:
    assert biou_width((1024, 2048), 0.02) == 46  # 0.02 * 2289.7 = 45.8
    assert biou_width((5, 6), 0.02) == 1       # at least one pixel
    assert biou_width((3, 4), 0.5) == 2        # round(2.5) = 2: Python's round, as their code


# --- options ---------------------------------------------------------------------

@pytest.mark.parametrize("value, expected", [
    (0.0075, (0.0075, "diagonal")), (0, (0.0, "diagonal")), ("3px", (3.0, "px")),
    ("2.5 px", (2.5, "px")), (".5px", (0.5, "px")),
])
def test_parse_tolerance(value, expected) -> None:
    tolerance = parse_tolerance(value)
    assert (tolerance.value, tolerance.unit) == expected


@pytest.mark.parametrize("value", [1, 3.0, -0.1, math.nan, "3", "px", "-1px", "3 pixels", True, None])
def test_parse_tolerance_refuses(value) -> None:
    with pytest.raises(ValueError, match="tolerance"):
        parse_tolerance(value)


def test_tolerance_in_pixels_of_the_diagonal() -> None:
    assert parse_tolerance(0.0075).pixels((1024, 2048)) == 0.0075 * math.hypot(1024, 2048)
    assert parse_tolerance("3px").pixels((1024, 2048)) == 3.0


def test_suite_defaults_turn_the_groups_on_and_null_turns_them_off() -> None:
    config = metrics_model()()
    assert config.boundary == BoundaryOptions(tolerance=0.0075, dilation_ratio=0.02)
    assert config.distance is not None
    suite = parse_suite({"name": "s", "datasets": [{"name": "d", "type": "synthetic"}],
                         "models": [{"name": "m", "type": "builtin", "arch": "fcn"}],
                         "metrics": {"boundary": None, "distance": {"percentile": 90}}})
    assert suite.metrics.boundary is None and suite.metrics.distance.percentile == 90


def test_suite_tolerance_mistake_names_the_field() -> None:
    data = {"name": "s", "datasets": [{"name": "d", "type": "synthetic"}],
            "models": [{"name": "m", "type": "builtin", "arch": "fcn"}],
            "metrics": {"boundary": {"tolerance": 3}}}
    with pytest.raises(UserError) as error:
        parse_suite(data)
    assert error.value.field == "metrics.boundary.tolerance"
    assert "write a tolerance in pixels as a string, such as '3px'" in str(error.value)
    data["metrics"] = {"boundary": {"tolerance": "3 pixels"}}
    with pytest.raises(UserError, match="pixels, such as '3px'; got '3 pixels'"):
        parse_suite(data)


def test_built_as_the_runner_builds_it_and_options_recorded() -> None:
    metric = METRICS["boundary"].state(5, 255, "cpu", **BoundaryOptions(tolerance="2px").model_dump())
    options = metric.options()
    assert options["tolerance"] == "2px" and options["tolerance_unit"] == "px"
    assert options["dilation_ratio"] == 0.02 and options["ignore_index"] == 255
    with pytest.raises(ValueError, match="dilation_ratio"):
        BoundaryMetric(3, dilation_ratio=0)
