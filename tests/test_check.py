"""The regression check on hand-made baseline and candidate run folders, in Python and on the command line."""

import json

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


def test_check_of_a_folder_that_is_no_run(make, tmp_path):
    result = runner.invoke(app, ["check", str(make("base")), str(tmp_path / "nothing")])
    assert result.exit_code == 2 and "not a run folder" in result.output
