"""The regression check on hand-made baseline and candidate run folders, in Python and on the command line."""

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import segbench
from segbench.check import check
from segbench.cli import app
from segbench.errors import UserError

runner = CliRunner()
BOUNDARY = {"accuracy": {"num_classes": 4, "ignore_index": 255}, "boundary": {"tolerance": 0.0075}}


@pytest.fixture
def make(tmp_path, fake_runs):
    """make(name, accuracy of model b, ...) -> a run folder of models a (accuracy 0.85) and b on dataset d."""
    def build(name, b_accuracy=0.85, *, b_seed=1, drop_b=False, latency_b=10.0, **options):
        cells = {("a", "d"): fake_runs.confusions(0, 40, accuracy=0.85)}
        if not drop_b:
            cells[("b", "d")] = fake_runs.confusions(b_seed, 40, accuracy=b_accuracy)
        extra = {("a", "d"): {"latency_ms_p50": 10.0}, ("b", "d"): {"latency_ms_p50": latency_b}}
        return fake_runs.write(tmp_path / name, cells, extra=extra, **options)
    return build


def test_same_run_passes(make):
    base = segbench.load(make("base"))
    result = check(base, base)
    assert result.ok and not result.table["regressed"].any()
    assert set(result.table["metric"]) == {"mIoU", "aAcc", "mAcc", "latency_ms_p50"}


def test_degraded_candidate_fails_with_a_table_of_what_regressed(make):
    base, worse = make("base"), make("worse", b_accuracy=0.75)
    table = segbench.load(base).compare(segbench.load(worse))
    regressed = table[table["regressed"]]
    assert set(regressed["model"]) == {"b"} and set(regressed["metric"]) == {"mIoU", "aAcc", "mAcc"}
    row = regressed.set_index("metric").loc["mIoU"]
    assert row["change"] < -0.5 and row["limit"] == -0.5 and "drop > 0.5 points" in row["reason"]

    result = runner.invoke(app, ["check", str(base), str(worse)])
    assert result.exit_code == 1
    assert "REGRESSED" in result.stdout and "3 regression(s)" in result.stdout
    result = runner.invoke(app, ["check", str(base), str(worse), "--json"])
    report = json.loads(result.stdout)
    assert result.exit_code == 1 and report["ok"] is False and report["regressions"] == 3
    assert {r["metric"] for r in report["rows"] if r["regressed"]} == {"mIoU", "aAcc", "mAcc"}
    # with a tolerance larger than the drop, it passes
    loose = runner.invoke(app, ["check", str(base), str(worse), "--tolerance", "20"])
    assert loose.exit_code == 0 and "no regression" in loose.stdout


def test_ci_uses_the_paired_test(make):
    base = segbench.load(make("base"))
    slightly = segbench.load(make("slightly", b_seed=1, b_accuracy=0.84))  # same errors but 1 point worse
    noisy = segbench.load(make("noisy", b_seed=7))  # same accuracy, other errors
    table = check(base, slightly, ci=True, resamples=500).table.set_index(["model", "metric"])
    assert table.loc[("b", "mIoU"), "regressed"] and table.loc[("b", "mIoU"), "p_value"] < 0.05
    assert not table.loc[("a", "mIoU"), "regressed"] and table.loc[("a", "mIoU"), "p_value"] == 1.0
    assert not check(base, noisy).ok  # a drop of chance beyond 0.5 points ...
    assert check(base, noisy, ci=True, resamples=500).ok  # ... that the paired test sees as noise
    result = runner.invoke(app, ["check", str(base.root), str(slightly.root), "--ci"])
    assert result.exit_code == 1 and "worse, p < 0.05" in result.stdout


def test_missing_cell_is_a_regression_unless_allowed(make):
    base, partial = make("base"), make("partial", drop_b=True)
    result = runner.invoke(app, ["check", str(base), str(partial)])
    assert result.exit_code == 1 and "missing from the candidate" in result.stdout
    assert runner.invoke(app, ["check", str(base), str(partial), "--allow-missing"]).exit_code == 0


def test_latency_ratio(make):
    base = segbench.load(make("base"))
    slower = segbench.load(make("slower", latency_b=12.0))
    table = check(base, slower).table.set_index(["model", "metric"])
    assert table.loc[("b", "latency_ms_p50"), "regressed"]
    assert table.loc[("b", "latency_ms_p50"), "change"] == pytest.approx(1.2)
    assert check(base, slower, latency_ratio=1.25).ok
    assert check(base, segbench.load(make("bit_slower", latency_b=10.5))).ok


def test_different_metric_options_are_refused_with_the_difference_named(make):
    base = make("base", options=BOUNDARY)
    other = make("other", options={**BOUNDARY, "boundary": {"tolerance": "3px"}})
    with pytest.raises(UserError, match=r"boundary\.tolerance: baseline 0\.0075, candidate '3px'"):
        check(segbench.load(base), segbench.load(other))
    result = runner.invoke(app, ["check", str(base), str(other)])
    assert result.exit_code == 2 and "boundary.tolerance" in result.output
    no_boundary = make("no_boundary")
    result = runner.invoke(app, ["check", str(base), str(no_boundary)])
    assert result.exit_code == 2 and "boundary" in result.output


def test_a_group_the_baseline_does_not_record_is_no_difference(make, fake_runs):
    """A baseline from before a metric group existed compares with a run that has it; off vs on is refused."""
    base = make("base", suite_metrics={"accuracy": {}})
    newer = make("newer", suite_metrics={"accuracy": {}, "fine_grained": {}})
    assert check(segbench.load(base), segbench.load(newer)).ok
    off = make("off", suite_metrics={"accuracy": {}, "fine_grained": None})
    with pytest.raises(UserError, match="fine_grained: baseline None, candidate {}"):
        check(segbench.load(off), segbench.load(newer))


def test_check_of_a_folder_that_is_no_run(make, tmp_path):
    result = runner.invoke(app, ["check", str(make("base")), str(tmp_path / "nothing")])
    assert result.exit_code == 2 and "not a run folder" in result.output


# ---------------------------------------------------------------- any declared figure, in its unit and direction

DISTANCE_95 = {"accuracy": {}, "distance": {"percentile": 95.0}}
DISTANCE_99 = {"accuracy": {}, "distance": {"percentile": 99.0}}


@pytest.fixture
def figures_run(tmp_path, fake_runs):
    """figures_run(name, {model: {summary figure: value}}, suite metrics) -> a run folder on dataset d."""
    def build(name, figures, suite_metrics, **kwargs):
        cells = {(model, "d"): fake_runs.confusions(i, 10) for i, model in enumerate(figures)}
        extra = {(model, "d"): values for model, values in figures.items()}
        return fake_runs.write(tmp_path / name, cells, extra=extra, suite_metrics=suite_metrics, **kwargs)
    return build


def test_a_larger_mhd95_is_a_regression_beyond_its_tolerance_in_pixels(figures_run):
    base = figures_run("base", {"a": {"mHD95": 10.0}, "b": {"mHD95": 20.0}}, DISTANCE_95)
    other = figures_run("other", {"a": {"mHD95": 11.5}, "b": {"mHD95": 14.0}}, DISTANCE_95)
    table = check(segbench.load(base), segbench.load(other), metrics=["mHD95"]).table.set_index("model")
    assert table.loc["a", "regressed"] and table.loc["a", "reason"] == "rise > 1 px"
    assert table.loc["a", "change"] == pytest.approx(1.5) and table.loc["a", "limit"] == 1.0
    assert not table.loc["b", "regressed"] and table.loc["b", "change"] == pytest.approx(-6.0)  # it shrank
    back = check(segbench.load(other), segbench.load(base), metrics=["mHD95"]).table.set_index("model")
    assert list(back["regressed"]) == [False, True]  # a shrank by 1.5 px, b grew by 6 px

    result = runner.invoke(app, ["check", str(base), str(other), "--metric", "mHD95"])
    assert result.exit_code == 1 and "REGRESSED: rise > 1 px" in result.stdout and "1 regression(s)" in result.stdout
    loose = runner.invoke(app, ["check", str(base), str(other), "--metric", "mHD95", "--tolerance", "mHD95=2"])
    assert loose.exit_code == 0 and "no regression (2 checks)" in loose.stdout


def test_a_distance_at_percentile_99_is_lower_is_better_because_the_run_declares_it(figures_run):
    base = figures_run("base", {"a": {"mHD99": 30.0}}, DISTANCE_99)
    grown = figures_run("grown", {"a": {"mHD99": 34.0}}, DISTANCE_99)
    shrunk = figures_run("shrunk", {"a": {"mHD99": 26.0}}, DISTANCE_99)
    result = runner.invoke(app, ["check", str(base), str(grown), "--metric", "mHD99", "--json"])
    report = json.loads(result.stdout)
    assert result.exit_code == 1 and report["regressions"] == 1
    [row] = report["rows"]
    assert row["metric"] == "mHD99" and row["change"] == pytest.approx(4.0) and row["limit"] == 1.0
    assert runner.invoke(app, ["check", str(base), str(shrunk), "--metric", "mHD99"]).exit_code == 0
    # a tolerance of its own, in pixels; a figure given a tolerance is checked beside the default set
    assert runner.invoke(app, ["check", str(base), str(grown), "--tolerance", "mHD99=5"]).exit_code == 0
    result = runner.invoke(app, ["check", str(base), str(grown), "--tolerance", "mHD99=3", "--json"])
    report = json.loads(result.stdout)
    assert result.exit_code == 1 and [r["metric"] for r in report["rows"]] == ["mIoU", "aAcc", "mAcc", "mHD99"]
    assert [r["metric"] for r in report["rows"] if r["regressed"]] == ["mHD99"]


def test_ci_knows_that_a_larger_distance_is_worse(tmp_path, fake_runs):
    distances = np.random.default_rng(0).normal(10.0, 1.0, (30, 4))

    def run(name, shift):
        values = distances + shift
        key = ("a", "d")
        return segbench.load(fake_runs.write(
            tmp_path / name, {key: fake_runs.confusions(0, 30)}, extra={key: {"mHD95": values.mean(axis=0).mean()}},
            image_values={key: {"HD95": values}}, suite_metrics=DISTANCE_95))

    base, farther = run("base", 0.0), run("farther", 0.5)
    assert check(base, farther, metrics=["mHD95"]).ok  # 0.5 px on every image: within the 1 px tolerance ...
    [row] = check(base, farther, metrics=["mHD95"], ci=True, resamples=200).table.to_dict("records")  # ... but seen
    assert row["regressed"] and row["p_value"] == pytest.approx(1 / 201) and row["reason"] == "worse, p < 0.05"
    [row] = check(base, run("closer", -0.5), metrics=["mHD95"], ci=True, resamples=200).table.to_dict("records")
    assert not row["regressed"] and row["p_value"] < 0.05


def test_tolerances_per_figure_in_their_unit(make):
    base, worse = segbench.load(make("base")), segbench.load(make("worse", b_accuracy=0.75, latency_b=12.0))
    table = check(base, worse, tolerances={"mIoU": 30, "latency_ms_p50": 1.25}).table
    assert set(table.loc[table["regressed"], "metric"]) == {"aAcc", "mAcc"}
    rows = table.set_index(["model", "metric"])
    assert rows.loc[("b", "mIoU"), "limit"] == -30 and rows.loc[("b", "mIoU"), "change"] < -0.5
    assert rows.loc[("b", "aAcc"), "limit"] == -0.5
    assert rows.loc[("b", "latency_ms_p50"), "limit"] == 1.25
    with pytest.raises(UserError, match="tolerance of latency_ms_p50 is 0.9; expected a ratio of at least 1"):
        check(base, worse, tolerances={"latency_ms_p50": 0.9})
    result = runner.invoke(app, ["check", str(base.root), str(worse.root), "--tolerance", "30",
                                 "--tolerance", "aAcc=0.1", "--latency-ratio", "1.3", "--json"])
    report = json.loads(result.stdout)
    assert result.exit_code == 1 and {r["metric"] for r in report["rows"] if r["regressed"]} == {"aAcc"}
    result = runner.invoke(app, ["check", str(base.root), str(worse.root), "--tolerance", "mIoU=lots"])
    assert result.exit_code == 2 and "FIGURE=LIMIT" in result.output


def test_an_unknown_figure_is_one_line_naming_the_declared_figures_present(make):
    base = make("base")
    for name in ("mHD99", "num_images"):  # not declared by this run; declared with no direction
        result = runner.invoke(app, ["check", str(base), str(base), "--metric", name])
        assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1
        assert f"cannot check '{name}'" in result.output
        assert "mIoU, aAcc, mAcc, fwIoU, mDice" in result.output and "latency_ms_p50" in result.output


def test_the_committed_baseline_still_loads_reports_and_checks():
    from segbench.report import render

    baseline = segbench.load(Path(__file__).parents[1] / "results" / "baselines" / "demo")
    result = check(baseline, baseline)
    assert result.ok and list(dict.fromkeys(result.table["metric"])) == ["mIoU", "aAcc", "mAcc", "mBF"]
    assert "| model | mIoU | aAcc | mAcc | mBF | mHD95 [px] |" in render(baseline, "md")


# ---------------------------------------------------------------- the MLPerf rule, pairs, different data

def test_relative_requires_each_fraction_to_reach_a_share_of_the_baseline(make):
    base, slightly = segbench.load(make("base")), segbench.load(make("slightly", b_accuracy=0.845))
    worse = segbench.load(make("worse", b_accuracy=0.84))
    assert not check(base, slightly).ok  # mIoU drops by more than 0.5 points ...
    rows = check(base, slightly, relative=0.99).table.set_index(["model", "metric"])
    assert not rows["regressed"].any()  # ... but stays above 99 % of the baseline's
    before, after = rows.loc[("b", "mIoU"), ["baseline", "candidate"]]
    assert rows.loc[("b", "mIoU"), "change"] == pytest.approx(after / before)
    assert rows.loc[("b", "mIoU"), "limit"] == 0.99
    assert rows.loc[("b", "latency_ms_p50"), "limit"] == 1.10  # not a fraction: its ratio as before
    table = check(base, worse, relative=0.99).table
    regressed = table[table["regressed"]].set_index("metric")
    expected = {m for m in ("mIoU", "aAcc", "mAcc")
                if base.summary.set_index("model").loc["b", m] * 0.99 > worse.summary.set_index("model").loc["b", m]}
    assert set(regressed.index) == expected and "mIoU" in expected
    assert regressed.loc["mIoU", "reason"] == "below 99 % of the baseline"
    assert check(base, worse, relative=0.98).ok

    result = runner.invoke(app, ["check", str(base.root), str(worse.root), "--relative", "0.99"])
    assert result.exit_code == 1 and "REGRESSED: below 99 % of the baseline" in result.stdout
    assert "x0.99" in result.stdout  # the change shown as a ratio
    assert runner.invoke(app, ["check", str(base.root), str(slightly.root), "--relative", "0.99"]).exit_code == 0
    result = runner.invoke(app, ["check", str(base.root), str(worse.root), "--relative", "1.5"])
    assert result.exit_code == 2 and "relative is 1.5" in result.output


def test_a_pair_compares_two_models_of_the_runs(make):
    base = make("base")
    result = check(segbench.load(base), segbench.load(base), pairs=[("a", "b")], relative=0.99)
    assert set(result.table["model"]) == {"a=b"} and result.ok
    assert set(result.table["metric"]) == {"mIoU", "aAcc", "mAcc", "latency_ms_p50"}  # no predictions saved
    worse = make("worse", b_accuracy=0.75)
    result = runner.invoke(app, ["check", str(base), str(worse), "--pair", "a=b", "--pair", "b=b", "--json"])
    report = json.loads(result.stdout)
    assert result.exit_code == 1
    assert {(r["model"], r["metric"]) for r in report["rows"] if r["regressed"]} == {
        (pair, m) for pair in ("a=b", "b=b") for m in ("mIoU", "aAcc", "mAcc")}
    # unknown models: one line naming the run's models
    for pair, side in (("a=nope", "candidate"), ("nope=b", "baseline")):
        result = runner.invoke(app, ["check", str(base), str(worse), "--pair", pair])
        assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1
        assert f"no model 'nope' in the {side} run" in result.output and "a, b" in result.output
    result = runner.invoke(app, ["check", str(base), str(worse), "--pair", "a"])
    assert result.exit_code == 2 and "NET=DEPLOYED" in result.output
    # --agreement without saved predictions: one error saying how to save them
    result = runner.invoke(app, ["check", str(base), str(base), "--pair", "a=b", "--agreement", "0.999"])
    assert result.exit_code == 2 and "save_predictions: true" in result.output
    result = runner.invoke(app, ["check", str(base), str(base), "--agreement", "0.999"])
    assert result.exit_code == 2 and "--pair" in result.output


def _other_data(run: Path, images: int) -> Path:
    """``run`` with dataset d's fingerprint and image count changed in every cell.json."""
    for path in run.glob("cells/*/cell.json"):
        record = json.loads(path.read_text())
        record["dataset_fingerprint"] = "0123456789abcdef-other"
        record["summary"]["num_images"] = images
        path.write_text(json.dumps(record))
    return run


def test_rows_of_different_data_are_refused_unless_allowed(make):
    base, other = make("base"), _other_data(make("other"), 30)
    with pytest.raises(UserError, match="dataset 'd' differs between the baseline run .* and the candidate run"):
        check(segbench.load(base), segbench.load(other))
    result = runner.invoke(app, ["check", str(base), str(other)])
    assert result.exit_code == 2
    message = " ".join(result.output.split())
    assert f"baseline run {base} and the candidate run {other}" in result.output
    assert "40 images in the baseline, 30 in the candidate" in message
    assert "fingerprint fingerprint-d in the baseline, 0123456789abcdef in the candidate" in message
    assert "--allow-different-data" in message
    result = runner.invoke(app, ["check", str(base), str(other), "--allow-different-data"])
    assert result.exit_code == 0 and "note: dataset d differs between the runs" in " ".join(result.output.split())
    allowed = check(segbench.load(base), segbench.load(other), allow_different_data=True)
    assert allowed.ok and "dataset d differs between the runs" in allowed.notes[0]
    # a pair compares data across models: the same run's cells of the same data are fine
    assert check(segbench.load(other), segbench.load(other), pairs=[("a", "b")]).ok
