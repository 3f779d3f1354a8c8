"""Distance group (HD, HD95) and the exact boundary distances under both groups.

Compared with a literal brute-force reference (per class masks, scipy's
binary erosion and exact Euclidean distance transform), with hand-computed
cases, with MONAI's compute_hausdorff_distance and with DeepMind's
surface-distance where their conventions coincide with ours.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import monai.metrics as monai_metrics
import surface_distance
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from boundary_reference import (IGNORE, assert_same, assert_same_records, reference_boundaries,
                                reference_class_means, reference_distances)
from segbench.metrics.contours import (ClassBoundaries, boundary_pair, class_boundaries, class_maps,
                                       compute_boundary_pair, torch_on_cpu)
from segbench.metrics.distance import DistanceMetric, percentile_name
from segbench.metrics.nearest import nearest_distances
from segbench.registry import METRICS
from segbench.metrics.distance import DistanceOptions

NAN = math.nan


# --- the reference -------------------------------------------------------------

def reference_hd(pred: np.ndarray, label: np.ndarray, num_classes: int, percentile: float = 95,
                 one_sided_value: float = NAN) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    hd, hdp, one_sided = np.full(num_classes, NAN), np.full(num_classes, NAN), np.zeros(num_classes, int)
    for c in range(num_classes):
        bp, bg = reference_boundaries(pred, label, c)
        if bp.any() and bg.any():
            to_label, to_pred = reference_distances(bp, bg), reference_distances(bg, bp)
            hd[c] = max(to_label.max(), to_pred.max())
            hdp[c] = max(np.percentile(to_label, percentile), np.percentile(to_pred, percentile))
        elif bp.any() or bg.any():
            hd[c] = hdp[c] = one_sided_value
            one_sided[c] = 1
    return hd, hdp, one_sided


# --- label maps ----------------------------------------------------------------

def shapes_map(rng: np.random.Generator, height: int, width: int, num_classes: int, count: int,
               max_size: float) -> np.ndarray:
    out = np.full((height, width), rng.integers(num_classes), dtype=np.int64)
    yy, xx = np.mgrid[:height, :width]
    for _ in range(count):
        cy, cx = rng.uniform(-2, height + 2), rng.uniform(-2, width + 2)
        size = rng.uniform(0.5, max_size)
        if rng.random() < 0.5:
            shape = (np.abs(yy - cy) <= size) & (np.abs(xx - cx) <= size * rng.uniform(0.3, 1.5))
        else:
            shape = (yy - cy) ** 2 + (xx - cx) ** 2 <= size**2
        out[shape] = rng.integers(num_classes)
    return out


@st.composite
def pairs(draw: st.DrawFn, max_side: int = 45, num_classes: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """(pred, label): noise, large shapes, or small far-apart blobs (long searches)."""
    height, width = draw(st.integers(1, max_side)), draw(st.integers(1, max_side))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    kind = draw(st.sampled_from(["noise", "shapes", "blobs", "perturbed"]))
    if kind == "noise":
        label, pred = rng.integers(0, num_classes, (2, height, width))
    elif kind == "blobs":
        label = shapes_map(rng, height, width, num_classes, rng.integers(0, 4), 3)
        pred = shapes_map(rng, height, width, num_classes, rng.integers(0, 4), 3)
    else:
        label = shapes_map(rng, height, width, num_classes, rng.integers(0, 6), max(height, width) / 2)
        pred = shapes_map(rng, height, width, num_classes, rng.integers(0, 6), max(height, width) / 2)
        if kind == "perturbed":
            pred = np.where(rng.random((height, width)) < 0.9, label, pred)
    if draw(st.booleans()):
        yy, xx = np.mgrid[:height, :width]
        blob = (yy - rng.uniform(0, height)) ** 2 + (xx - rng.uniform(0, width)) ** 2 <= rng.uniform(0, 30)
        label[blob] = IGNORE
    return pred, label


def run(pairs_, num_classes: int, first: int = 0, **options) -> DistanceMetric:
    metric = DistanceMetric(num_classes, IGNORE, "cpu", **options)
    for i, (pred, label) in enumerate(pairs_, start=first):
        metric.update(torch.from_numpy(pred), torch.from_numpy(label), f"img{i}")
    return metric


# --- exact distances -------------------------------------------------------------

def pair_of(pred: np.ndarray, label: np.ndarray, num_classes: int):
    maps = class_maps(torch.from_numpy(pred), torch.from_numpy(label), num_classes, IGNORE)
    return compute_boundary_pair(*maps, num_classes)


def check_distances(pred: np.ndarray, label: np.ndarray, num_classes: int) -> None:
    pair = pair_of(pred, label, num_classes)
    for c in range(num_classes):
        bp, bg = reference_boundaries(pred, label, c)
        to_label = pair.pred_to_label[pair.pred.starts[c]:pair.pred.starts[c + 1]]
        to_pred = pair.label_to_pred[pair.label.starts[c]:pair.label.starts[c + 1]]
        if bg.any():
            assert_same(to_label, reference_distances(bp, bg))
        else:
            assert np.all(np.isinf(to_label))
        if bp.any():
            assert_same(to_pred, reference_distances(bg, bp))
        else:
            assert np.all(np.isinf(to_pred))


@settings(max_examples=200, deadline=None)
@given(pairs())
def test_distances_match_the_distance_transform(pair: tuple[np.ndarray, np.ndarray]) -> None:
    check_distances(*pair, 4)


@st.composite
def far_apart(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    """Independent maps of many small blobs: most boundary pixels far from the other boundary."""
    height, width = draw(st.integers(40, 150)), draw(st.integers(40, 150))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    maps = [shapes_map(rng, height, width, 4, rng.integers(3, 25), 9) for _ in range(2)]
    return maps[0], maps[1]


@settings(max_examples=60, deadline=None)
@given(far_apart())
def test_far_distances_match_the_distance_transform(pair: tuple[np.ndarray, np.ndarray]) -> None:
    check_distances(*pair, 4)


def test_every_kind_of_distance_is_exact() -> None:
    """On the other boundary (0), inside the other mask, outside it near and far."""
    rng = np.random.default_rng(7)
    label = shapes_map(rng, 121, 203, 5, 25, 30)
    pred = shapes_map(rng, 121, 203, 5, 25, 30)
    pred = np.where(rng.random(label.shape) < 0.97, np.roll(label, (2, -3), (0, 1)), pred)
    label[50:60, 80:95] = IGNORE
    check_distances(pred, label, 5)
    pair = pair_of(pred, label, 5)
    distances = pair.pred_to_label[np.isfinite(pair.pred_to_label)]
    inside = pair.label_map[pair.pred.rows, pair.pred.cols] == pair.pred.classes
    assert (distances == 0).any() and (distances > 20).any()
    assert (pair.pred_to_label[inside] > 3).any() and (pair.pred_to_label[~inside] > 3).any()


@st.composite
def point_sets(draw: st.DrawFn) -> tuple[ClassBoundaries, ClassBoundaries]:
    """Two sets of pixels with classes, any shape (not boundaries): sparse, dense, in few rows."""
    height, width = draw(st.integers(1, 60)), draw(st.integers(1, 60))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    sets = []
    for density in (draw(st.sampled_from([0.01, 0.1, 0.5])), draw(st.sampled_from([0.002, 0.02, 0.3]))):
        classes = np.where(rng.random((height, width)) < density, rng.integers(0, 3, (height, width)), -1)
        sets.append(class_boundaries_of_points(classes.astype(np.int16), 3))
    return sets[0], sets[1]


def class_boundaries_of_points(classes: np.ndarray, num_classes: int) -> ClassBoundaries:
    """Every pixel whose value is a class, as ClassBoundaries keeps them: by class, then raster order."""
    flat = np.flatnonzero(classes.ravel() >= 0)
    values = classes.ravel()[flat]
    order = np.argsort(values, kind="stable")
    flat, values = flat[order], values[order]
    starts = np.searchsorted(values, np.arange(num_classes + 1))
    return ClassBoundaries(flat // classes.shape[1], flat % classes.shape[1], values, starts)


@settings(max_examples=200, deadline=None)
@given(point_sets())
def test_the_search_equals_brute_force(sets: tuple[ClassBoundaries, ClassBoundaries]) -> None:
    """The row-by-row search against every pair of pixels, on point sets of any shape."""
    source, target = sets
    found = nearest_distances(source, target)
    for i in range(source.rows.size):
        c = source.classes[i]
        same = slice(target.starts[c], target.starts[c + 1])
        squared = (target.rows[same] - source.rows[i]) ** 2 + (target.cols[same] - source.cols[i]) ** 2
        assert found[i] == (np.sqrt(float(squared.min())) if squared.size else math.inf)


def test_a_farther_row_can_hold_the_nearest_pixel() -> None:
    """The search goes on past the first row with a pixel while dy^2 is below the best found."""
    target = np.full((9, 30), -1, dtype=np.int16)
    target[4, 25] = 0  # the pixel's own row, 20 columns away
    target[8, 5] = 0   # 4 rows down, straight below: the nearest
    target[0, 8] = 0   # 4 rows up, 3 columns off
    source = np.full((9, 30), -1, dtype=np.int16)
    source[4, 5] = 0
    found = nearest_distances(class_boundaries_of_points(source, 1), class_boundaries_of_points(target, 1))
    assert found.tolist() == [4.0]


def test_the_search_runs_where_numba_can_cache_nowhere() -> None:
    """A read-only install and no home: numba compiles the search in the process instead of failing."""
    program = ("import numpy as np\n"
               "from segbench.metrics.contours import ClassBoundaries\n"
               "from segbench.metrics.nearest import nearest_distances\n"
               "one, two = (ClassBoundaries(np.array(r), np.array(c), np.array([0, 0], np.int16), np.array([0, 2]))\n"
               "            for r, c in (([0, 1], [0, 2]), ([0, 4], [3, 2])))\n"
               "print(nearest_distances(one, two).tolist())")
    env = os.environ | {"NUMBA_CACHE_LOCATOR_CLASSES": "no_cache_folder.NoCacheFolder",
                        "PYTHONPATH": str(Path(__file__).parent)}
    done = subprocess.run([sys.executable, "-c", program], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str([3.0, math.sqrt(2)])


def test_classes_the_other_map_lacks_get_inf() -> None:
    rng = np.random.default_rng(3)
    label = shapes_map(rng, 40, 60, 4, 12, 12)
    pred = shapes_map(rng, 40, 60, 4, 12, 12)
    pred[5:12, 5:15], label[label == 2] = 2, 1  # class 2 in the prediction only
    check_distances(pred, label, 4)
    pair = pair_of(pred, label, 4)
    assert np.isinf(pair.pred_to_label[pair.pred.classes == 2]).all() and (pair.pred.classes == 2).any()
    nothing = class_boundaries(np.full(label.shape, -1, dtype=np.int16), 4)
    assert np.isinf(nearest_distances(pair.pred, nothing)).all()


# --- against the reference -------------------------------------------------------

@settings(max_examples=150, deadline=None)
@given(pairs(max_side=25), st.sampled_from([95, 50, 0, 100, 99.5]))
def test_hd_matches_the_reference(pair: tuple[np.ndarray, np.ndarray], percentile: float) -> None:
    pred, label = pair
    (record,) = run([pair], 4, percentile=percentile).compute().per_image
    diagonal = math.hypot(*label.shape)
    hd, hdp, one_sided = reference_hd(pred, label, 4, percentile, diagonal)
    assert_same(record["HD"], hd)
    assert_same(record[percentile_name(percentile)], hdp)
    assert record["HD_one_sided"] == one_sided.tolist()


@settings(max_examples=40, deadline=None)
@given(st.lists(pairs(max_side=21), min_size=1, max_size=5), st.sampled_from(["diagonal", "inf", "skip"]))
def test_dataset_figures_match_the_reference(pairs_, one_sided: str) -> None:
    result = run(pairs_, 4, one_sided=one_sided).compute()
    values = {"diagonal": None, "inf": math.inf, "skip": NAN}[one_sided]
    refs = [reference_hd(p, g, 4, 95, math.hypot(*g.shape) if values is None else values) for p, g in pairs_]
    for key, i in (("HD", 0), ("HD95", 1)):
        expected = reference_class_means([r[i] for r in refs])
        assert_same(result.per_class[key], expected)
        defined = expected[~np.isnan(expected)]
        assert_same(result.summary["m" + key], math.fsum(defined) / defined.size if defined.size else NAN)
    one_sided_counts = np.sum([r[2] for r in refs], axis=0)
    assert result.per_class["HD_one_sided"].tolist() == one_sided_counts.tolist()
    assert result.summary["HD_one_sided"] == int(one_sided_counts.sum())
    assert result.per_class["HD_images"].tolist() == np.count_nonzero(
        ~np.isnan([r[0] for r in refs]), axis=0).tolist()


@settings(max_examples=30, deadline=None)
@given(st.lists(pairs(max_side=21), min_size=2, max_size=6), st.data())
def test_merge_equals_one_pass_and_order_does_not_matter(pairs_, data) -> None:
    whole = run(pairs_, 4).compute()
    cut = data.draw(st.integers(1, len(pairs_) - 1))
    first, second = run(pairs_[:cut], 4), run(pairs_[cut:], 4, first=cut)
    first.merge(second)
    shuffled = DistanceMetric(4, IGNORE)
    for i in data.draw(st.permutations(range(len(pairs_)))):
        shuffled.update(torch.from_numpy(pairs_[i][0]), torch.from_numpy(pairs_[i][1]), f"img{i}")
    for other in (first.compute(), shuffled.compute()):
        for key in whole.summary:
            assert_same(other.summary[key], whole.summary[key])
        for key in whole.per_class:
            assert_same(other.per_class[key], whole.per_class[key])


def test_merge_refuses_other_settings() -> None:
    with pytest.raises(ValueError, match="cannot merge distance states"):
        DistanceMetric(3, percentile=90).merge(DistanceMetric(3))


# --- hand-computed ---------------------------------------------------------------

def test_hand_case_shows_the_interpolated_percentile() -> None:
    """One row: every pixel is on the frame, so every mask pixel is a boundary pixel."""
    label = np.array([[1, 1, 1, 1, 0, 0, 0]])
    pred = np.array([[1, 1, 1, 1, 0, 0, 1]])
    result = run([(pred, label)], 2).compute()
    # class 1: d(P->G) = [0, 0, 0, 0, 3], d(G->P) = [0, 0, 0, 0]; p95 of the first: 0 + 0.8 * 3
    # class 0: d(P->G) = [0, 0], d(G->P) = [0, 0, 1]; p95 of the second: 0 + 0.9 * 1
    assert_same(result.per_class["HD"], [1.0, 3.0])
    np.testing.assert_allclose(result.per_class["HD95"], [0.9, 2.4], rtol=1e-15)
    assert result.summary["HD_one_sided"] == 0


def test_hand_case_shifted_square() -> None:
    label = np.zeros((5, 6), np.int64)
    label[1:4, 1:4] = 1
    pred = np.zeros((5, 6), np.int64)
    pred[1:4, 2:5] = 1
    (record,) = run([(pred, label)], 2).compute().per_image
    assert record["HD"] == [1.0, 1.0] and record["HD95"] == [1.0, 1.0]


def test_one_pixel_objects_and_the_frame() -> None:
    label = np.zeros((5, 5), np.int64)
    label[2, 2] = 1
    pred = np.zeros((5, 5), np.int64)
    pred[0, 4] = 1
    (record,) = run([(pred, label)], 2).compute().per_image
    assert record["HD"][1] == record["HD95"][1] == math.sqrt(8)
    label = np.zeros((5, 5), np.int64)
    label[:, 0] = 1
    pred = np.zeros((5, 5), np.int64)
    pred[:, :2] = 1
    (record,) = run([(pred, label)], 2).compute().per_image
    assert record["HD"][1] == 1.0 and record["HD95"][1] == 1.0  # p95 of [0]*5 + [1]*5 -> 1


def test_ignore_pixels_belong_to_no_mask() -> None:
    label = np.array([[1, 1, 1], [IGNORE, IGNORE, IGNORE], [0, 0, 0]])
    pred = np.array([[1, 1, 1], [1, 2, 0], [0, 0, 0]])
    (record,) = run([(pred, label)], 3).compute().per_image
    assert_same(record["HD"], [0.0, 0.0, NAN])
    assert record["HD_one_sided"] == [0, 0, 0]


def test_empty_images_evaluate_nothing() -> None:
    from segbench.metrics.boundary import BoundaryMetric
    empty = torch.zeros(0, 4, dtype=torch.int64)
    for metric in (DistanceMetric(3), BoundaryMetric(3)):
        metric.update(empty, empty, "e")
        result = metric.compute()
        assert all(math.isnan(v) for k, v in result.summary.items() if k != "HD_one_sided")
        assert all(math.isnan(v) for v in result.per_image[0]["HD" if "HD" in result.per_image[0] else "BF"])


# --- one-sided cases and options -------------------------------------------------

@pytest.mark.parametrize("policy, value", [("diagonal", math.hypot(4, 6)), ("inf", math.inf), ("skip", NAN)])
def test_one_sided_policies_and_count(policy: str, value: float) -> None:
    label = np.zeros((4, 6), np.int64)
    label[1, 1] = 1           # class 1: label only
    pred = np.zeros((4, 6), np.int64)
    pred[2, 4] = 2            # class 2: prediction only; class 3: neither
    result = run([(pred, label)], 4, one_sided=policy).compute()
    assert_same(result.per_class["HD"][1:], [value, value, NAN])
    assert_same(result.per_class["HD95"][1:], [value, value, NAN])
    assert result.per_class["HD_one_sided"].tolist() == [0, 1, 1, 0]
    assert result.summary["HD_one_sided"] == 2
    assert result.per_class["HD_images"].tolist() == ([1, 0, 0, 0] if policy == "skip" else [1, 1, 1, 0])


def test_percentile_names_the_columns() -> None:
    pred = np.array([[1, 1, 0, 0, 1]])
    label = np.array([[1, 1, 0, 0, 0]])
    result = run([(pred, label)], 2, percentile=99.5).compute()
    assert set(result.summary) == {"mHD", "mHD99.5", "HD_one_sided"}
    assert {"HD", "HD99.5", "HD_images", "HD_one_sided"} == set(result.per_class)
    assert "mHD99.5" in result.per_image[0] and "HD99.5" in result.per_image[0]
    full = run([(pred, label)], 2, percentile=100).compute()
    assert_same(full.per_class["HD100"], full.per_class["HD"])


def test_options_are_checked_and_recorded() -> None:
    with pytest.raises(ValueError, match="percentile"):
        DistanceMetric(3, percentile=101)
    with pytest.raises(ValueError, match="one_sided"):
        DistanceMetric(3, one_sided="zero")
    metric = METRICS["distance"].state(5, 255, "cpu", **DistanceOptions(one_sided="inf").model_dump())
    options = metric.options()
    assert options["percentile"] == 95.0 and options["one_sided"] == "inf"
    assert "HD95" in options and "inf" in options["one_sided_case"]


# --- the shared per-image work ---------------------------------------------------

def test_the_pair_is_reused_only_for_the_same_maps() -> None:
    label = torch.zeros(6, 7, dtype=torch.int64)
    label[1:4, 1:5] = 1
    pred = label.clone()
    first = boundary_pair(pred, label, 2, IGNORE)
    assert boundary_pair(pred.clone(), label.clone(), 2, IGNORE) is first
    pred[5, 6] = 1  # in place
    changed = boundary_pair(pred, label, 2, IGNORE)
    assert changed is not first and changed.pred.counts()[1] == first.pred.counts()[1] + 1
    assert boundary_pair(pred, label, 3, IGNORE) is not changed
    assert boundary_pair(pred, label, 2, 0).label.counts()[0] == 0  # label 0 is ignore now
    with torch.inference_mode():  # what models return
        assert boundary_pair(pred.clone(), label.clone(), 2, 0).label.counts()[0] == 0


def test_both_groups_see_the_same_image() -> None:
    from segbench.metrics.boundary import BoundaryMetric
    rng = np.random.default_rng(3)
    pairs_ = [(rng.integers(0, 3, (9, 11)), rng.integers(0, 3, (9, 11))) for _ in range(3)]
    distance, boundary = DistanceMetric(3), BoundaryMetric(3)
    for i, (pred, label) in enumerate(pairs_):
        pred, label = torch.from_numpy(pred), torch.from_numpy(label)
        boundary.update(pred, label, f"img{i}")
        distance.update(pred, label, f"img{i}")
    alone = run(pairs_, 3).compute()
    for key in alone.per_class:
        assert_same(distance.compute().per_class[key], alone.per_class[key])


def test_the_pair_is_not_shared_between_the_paths() -> None:
    label = torch.zeros(6, 7, dtype=torch.int64)
    label[1:4, 1:5] = 1
    on_numpy = boundary_pair(label.clone(), label, 2, IGNORE)
    with torch_on_cpu():
        on_torch = boundary_pair(label.clone(), label, 2, IGNORE)
        assert boundary_pair(label.clone(), label, 2, IGNORE) is on_torch
    assert on_torch is not on_numpy and isinstance(on_torch.pred_map, torch.Tensor)
    assert boundary_pair(label.clone(), label, 2, IGNORE) is not on_torch


@contextmanager
def torch_threads(count: int) -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def test_one_thread_gives_the_same_records() -> None:
    """With two torch threads or more, the two maps and the two directions are worked on at once."""
    rng = np.random.default_rng(4)
    pairs_ = [(shapes_map(rng, 70, 90, 4, 15, 9), shapes_map(rng, 70, 90, 4, 15, 9)) for _ in range(2)]
    with torch_threads(1):
        alone = run(pairs_, 4).compute().per_image
    with torch_threads(2):
        assert_same_records(run(pairs_, 4).compute().per_image, alone)


# --- the torch path (CUDA tensors take it; torch_on_cpu forces it on CPU ones) ----------

def exact_distances(pred: np.ndarray, label: np.ndarray) -> list[np.ndarray]:
    pair = boundary_pair(torch.from_numpy(pred), torch.from_numpy(label), 4, IGNORE)
    return [pair.pred_to_label, pair.label_to_pred, pair.pred.rows, pair.label.cols]


@settings(max_examples=80, deadline=None)
@given(st.lists(pairs(), min_size=1, max_size=3), st.sampled_from([95, 0, 100, 99.5]),
       st.sampled_from(["diagonal", "skip"]))
def test_torch_path_gives_the_same_records(pairs_, percentile: float, one_sided: str) -> None:
    options = {"percentile": percentile, "one_sided": one_sided}
    with torch_on_cpu():
        on_torch = run(pairs_, 4, **options).compute().per_image
        torch_distances = exact_distances(*pairs_[0])
    assert_same_records(on_torch, run(pairs_, 4, **options).compute().per_image)
    for a, b in zip(torch_distances, exact_distances(*pairs_[0])):
        assert_same(a, b)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_tensors_give_the_same_records() -> None:
    rng = np.random.default_rng(9)
    pairs_ = [(shapes_map(rng, 83, 131, 4, 20, 9), shapes_map(rng, 83, 131, 4, 20, 9)) for _ in range(3)]
    pairs_[0][1][10:20, 30:50] = IGNORE
    on_cuda = DistanceMetric(4, IGNORE, "cuda")
    for i, (pred, label) in enumerate(pairs_):
        on_cuda.update(torch.from_numpy(pred).cuda(), torch.from_numpy(label).cuda(), f"img{i}")
    assert_same_records(on_cuda.compute().per_image, run(pairs_, 4).compute().per_image)


# --- peers -----------------------------------------------------------------------

def one_hot(classes: np.ndarray, num_classes: int) -> torch.Tensor:
    return torch.nn.functional.one_hot(torch.from_numpy(classes), num_classes).permute(2, 0, 1)[None].float()


@settings(max_examples=60, deadline=None)
@given(pairs(max_side=30))
def test_agrees_with_monai_where_both_masks_exist(pair: tuple[np.ndarray, np.ndarray]) -> None:
    """MONAI 1.x: same boundaries (erosion XOR mask), same directed percentiles; float32 results.

    Where a class is in one mask only MONAI gives inf (HD) and NaN (HD95),
    where we give the image diagonal (default) and count the case.
    """
    pred, label = pair
    label = np.where(label == IGNORE, 0, label)  # MONAI has no ignore pixels
    (record,) = run([(pred, label)], 4).compute().per_image
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = [monai_metrics.compute_hausdorff_distance(one_hot(pred, 4), one_hot(label, 4),
                                                           include_background=True, percentile=q)[0].numpy()
                  for q in (None, 95)]
    both = np.array([(pred == c).any() and (label == c).any() for c in range(4)])
    one = np.array([(pred == c).any() != (label == c).any() for c in range(4)])
    # MONAI returns float32, and interpolates its percentile (torch.quantile) in float32: the rank
    # q/100 (n - 1) and its weight are off by about n float32 epsilons (5e-5 seen)
    np.testing.assert_allclose(np.array(record["HD"])[both], theirs[0][both], rtol=1e-6)
    np.testing.assert_allclose(np.array(record["HD95"])[both], theirs[1][both], rtol=1e-5, atol=5e-4)
    assert np.all(np.isinf(theirs[0][one])) and np.all(np.isnan(theirs[1][one]))
    assert np.all(np.array(record["HD"])[one] == math.hypot(*label.shape))


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 12), st.integers(1, 12), st.integers(0, 6), st.integers(0, 6),
       st.integers(-6, 6), st.integers(-6, 6))
def test_hd_agrees_with_deepmind_surface_distance_for_translated_rectangles(
        height: int, width: int, top: int, left: int, dy: int, dx: int) -> None:
    """DeepMind's surfaces run along pixel corners, and its percentiles weigh surface elements by
    length without interpolation: only the maximum of translated shapes coincides with ours."""
    shape = (32, 34)
    label = np.zeros(shape, np.int64)
    label[8 + top:8 + top + height, 8 + left:8 + left + width] = 1
    pred = np.roll(label, (dy, dx), (0, 1))
    (record,) = run([(pred, label)], 2).compute().per_image
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # its scipy.ndimage.filters imports
        distances = surface_distance.compute_surface_distances(label == 1, pred == 1, (1.0, 1.0))
    assert record["HD"][1] == pytest.approx(surface_distance.compute_robust_hausdorff(distances, 100),
                                            rel=1e-12)
