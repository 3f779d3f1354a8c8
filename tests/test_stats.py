"""Bootstrap intervals and paired tests, on per-image tables made by hand and on one real run."""

import numpy as np
import pandas as pd
import pytest

import segbench
from segbench.errors import UserError
from segbench.metrics.confusion import accuracy_from_counts
from segbench.registry import catalogue
from segbench.stats import bootstrap, bootstrap_table, bootstrappable, metric_from_sums, paired_test


def images_from_confusions(matrices, model="m", dataset="d"):
    return pd.DataFrame({
        "model": model, "dataset": dataset, "image_id": [f"i{n:04d}" for n in range(len(matrices))],
        "area_intersect": [np.diag(c) for c in matrices], "area_pred_label": [c.sum(0) for c in matrices],
        "area_label": [c.sum(1) for c in matrices],
        "area_union": [c.sum(0) + c.sum(1) - np.diag(c) for c in matrices]})


def test_vectorised_figures_equal_accuracy_from_counts():
    rng = np.random.default_rng(1)
    for _ in range(20):
        confusion = rng.integers(0, 50, (5, 5)) * (rng.random((5, 5)) < 0.6)
        counts = {"area_intersect": np.diag(confusion), "area_pred_label": confusion.sum(0),
                  "area_label": confusion.sum(1)}
        counts["area_union"] = counts["area_pred_label"] + counts["area_label"] - counts["area_intersect"]
        expected, _ = accuracy_from_counts(**counts)
        batch = {k: np.stack([v, v]).astype(float) for k, v in counts.items()}
        for metric in ("mIoU", "aAcc", "mAcc", "mDice"):
            got = metric_from_sums(metric, batch)
            np.testing.assert_allclose(got, [expected[metric]] * 2, equal_nan=True)


def test_bootstrap_of_a_proportion_matches_the_normal_approximation():
    # one labelled pixel per image, right with probability 0.8: aAcc is a sample mean of Bernoulli draws
    rng = np.random.default_rng(0)
    right = rng.random(400) < 0.8
    matrices = [np.array([[1, 0], [0, 0]]) if r else np.array([[0, 1], [0, 0]]) for r in right]
    interval = bootstrap(images_from_confusions(matrices), "aAcc", resamples=2000, seed=0)
    p = right.mean()
    half = 1.96 * np.sqrt(p * (1 - p) / len(right))
    assert interval.value == pytest.approx(p)
    assert interval.lo == pytest.approx(p - half, abs=0.006)
    assert interval.hi == pytest.approx(p + half, abs=0.006)


def test_bootstrap_of_mean_bf_matches_the_standard_error():
    # one class evaluated on every image, BF values normal: mBF is their mean
    rng = np.random.default_rng(2)
    values = rng.normal(0.6, 0.1, 500)
    per_image = pd.DataFrame({"model": "m", "dataset": "d", "image_id": range(500),
                              "BF": [[v, np.nan] for v in values]})
    assert "mBF" in bootstrappable(per_image)
    interval = bootstrap(per_image, "mBF", resamples=2000, seed=0)
    half = 1.96 * values.std(ddof=1) / np.sqrt(len(values))
    assert interval.value == pytest.approx(values.mean())
    assert interval.hi - interval.lo == pytest.approx(2 * half, rel=0.1)
    assert interval.lo < values.mean() < interval.hi


def test_bootstrap_is_seeded_and_its_value_is_the_dataset_figure(fake_runs):
    matrices = fake_runs.confusions(0, 30, accuracy=0.7)
    per_image = images_from_confusions(matrices)
    first = bootstrap(per_image, "mIoU", seed=3)
    assert first == bootstrap(per_image, "mIoU", seed=3)
    assert first != bootstrap(per_image, "mIoU", seed=4)
    total = sum(matrices)
    expected, _ = accuracy_from_counts(np.diag(total), total.sum(0) + total.sum(1) - np.diag(total),
                                       total.sum(0), total.sum(1))
    assert first.value == pytest.approx(expected["mIoU"])
    table = bootstrap_table(per_image, ["mIoU", "aAcc", "mBF"])
    assert list(table["metric"]) == ["mIoU", "aAcc"]  # no per-image BF here


def test_paired_test_identical_models_is_not_significant(fake_runs):
    per_image = images_from_confusions(fake_runs.confusions(0, 40, accuracy=0.8))
    test = paired_test(per_image, per_image.copy(), "mIoU")
    assert test.delta == 0 and test.p_value == 1.0


def test_paired_test_clearly_better_model_is_significant(fake_runs):
    good = images_from_confusions(fake_runs.confusions(0, 40, accuracy=0.9), model="good")
    bad = images_from_confusions(fake_runs.confusions(1, 40, accuracy=0.7), model="bad")
    for metric in ("mIoU", "aAcc"):
        test = paired_test(good, bad, metric, resamples=1000)
        assert test.delta > 0.1
        assert test.p_value == pytest.approx(1 / 1001)


def test_paired_test_rejects_at_the_nominal_rate_under_the_null(fake_runs):
    # two models of the same accuracy with independent errors: p < 0.05 about 5% of the time
    p_values = [paired_test(images_from_confusions(fake_runs.confusions(2 * s, 30, accuracy=0.8)),
                            images_from_confusions(fake_runs.confusions(2 * s + 1, 30, accuracy=0.8)),
                            "mIoU", resamples=300, seed=s).p_value
                for s in range(40)]
    assert np.mean(np.array(p_values) < 0.05) <= 0.15
    assert 0.3 < np.mean(p_values) < 0.7


def test_paired_test_needs_the_same_images(fake_runs):
    a = images_from_confusions(fake_runs.confusions(0, 10))
    with pytest.raises(UserError, match="same images"):
        paired_test(a, a.iloc[:5], "mIoU")


def test_bootstrap_value_is_the_stored_figure_of_a_real_run(tmp_path, nets):
    # what the metric groups store per image recomputes exactly what they store per dataset
    suite = {"name": "t", "device": "cpu", "batch_size": 2, "num_workers": 0,
             "datasets": [{"name": "shapes", "type": "synthetic", "num_images": 4, "height": 24, "width": 32}],
             "models": [{"name": "p", "type": "python", "factory": "tiny_nets:pointwise",
                         "kwargs": {"num_classes": 6}, "num_classes": 6}]}
    results = segbench.load(segbench.run(suite, run_dir=tmp_path / "run"))
    summary = results.summary.iloc[0]
    names = bootstrappable(results.per_image)
    assert {"mIoU", "aAcc", "mAcc"} | ({"mBF", "mBIoU", "mHD95"} & set(summary.index)) <= set(names)
    for metric in names:
        assert bootstrap(results.per_image, metric, resamples=10).value == pytest.approx(
            summary[metric], nan_ok=True), metric


def test_a_figure_bootstraps_because_its_declaration_says_so():
    # distance at percentile 99: the group declares mHD99 as the mean over classes of per-image HD99
    values = np.random.default_rng(3).normal(20.0, 2.0, 300)
    per_image = pd.DataFrame({"model": "m", "dataset": "d", "image_id": range(300),
                              "HD99": [[v, np.nan] for v in values]})
    columns = catalogue({"accuracy": {}, "distance": {"percentile": 99}})
    assert bootstrappable(per_image, columns) == ["mHD99"]
    assert bootstrappable(per_image) == []  # at its default options the group declares HD95, not HD99
    interval = bootstrap(per_image, "mHD99", resamples=1000, columns=columns)
    assert interval.value == pytest.approx(values.mean()) and interval.lo < values.mean() < interval.hi
    assert interval.hi - interval.lo == pytest.approx(2 * 1.96 * values.std(ddof=1) / np.sqrt(300), rel=0.15)
    with pytest.raises(UserError, match="no bootstrap for 'mHD99'; possible: mIoU, aAcc, mAcc, mDice"):
        bootstrap(per_image, "mHD99")
