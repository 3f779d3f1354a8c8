"""Reports from hand-made run folders: leaderboards, merging, LaTeX, Markdown, CSV, HTML and the CLI."""

import html
import io
import json
import re
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import segbench
from segbench.api import execute
from segbench.cli import app
from segbench.errors import UserError
from segbench.report import (HEATMAP_CLASSES, ReportOptions, axis_label, conventions, latex_escape, leaderboard,
                             leaderboard_long, merge_runs, pareto_front, published_table, render,
                             results_catalogue, top_confusions)


@pytest.fixture
def two_models(tmp_path, fake_runs):
    """good > bad on two datasets; near_good equals good but for one image (not significantly different)."""
    good = fake_runs.confusions(0, 40, accuracy=0.9)
    near = [*good[:-1], fake_runs.confusions(9, 1, accuracy=0.85)[0]]
    cells = {}
    for dataset, offset in (("city", 0), ("ade_20k", 100)):
        cells[("good", dataset)] = good
        cells[("near_good", dataset)] = near
        cells[("bad", dataset)] = fake_runs.confusions(offset + 1, 40, accuracy=0.6)
    latency = {("good", "city"): 40.0, ("near_good", "city"): 20.0, ("bad", "city"): 30.0}
    extra = {key: {"latency_ms_p50": value} for key, value in latency.items()}
    return segbench.load(fake_runs.write(tmp_path / "run", cells, extra=extra))


def test_leaderboard_sorted_with_column_groups(two_models):
    board = two_models.leaderboard()
    assert list(board.index) == ["good", "near_good", "bad"]
    assert list(board.columns) == [(d, m) for d in ("city", "ade_20k")
                                   for m in ("mIoU", "aAcc", "mAcc", "latency_ms_p50")]
    summary = two_models.summary.set_index(["model", "dataset"])
    assert board.loc["bad", ("city", "mIoU")] == summary.loc[("bad", "city"), "mIoU"]  # fractions as stored
    by_latency = two_models.leaderboard(sort="latency_ms_p50")  # lower is better
    assert list(by_latency.index) == ["near_good", "bad", "good"]


def test_best_and_ties(two_models):
    long = leaderboard_long(two_models, ["mIoU", "latency_ms_p50"], ci=True, resamples=300)
    city = long[long["dataset"] == "city"].set_index(["model", "metric"])
    assert city.loc[("good", "mIoU"), "best"] and not city.loc[("bad", "mIoU"), "best"]
    assert city.loc[("near_good", "latency_ms_p50"), "best"]
    assert city.loc[("near_good", "mIoU"), "tied"] and not city.loc[("bad", "mIoU"), "tied"]
    assert city.loc[("good", "mIoU"), "lo"] < city.loc[("good", "mIoU"), "value"] < city.loc[("good", "mIoU"), "hi"]
    assert pd.isna(city.loc[("good", "latency_ms_p50"), "lo"])  # no bootstrap of latencies


def test_unknown_metric_is_a_user_error(two_models):
    with pytest.raises(UserError, match="mBogus"):
        two_models.leaderboard(["mBogus"])
    with pytest.raises(UserError, match="cannot sort by 'mBF'"):
        two_models.leaderboard(["mIoU"], sort="mBF")


def test_merge_newest_wins_unless_told_otherwise(tmp_path, fake_runs):
    old = fake_runs.write(tmp_path / "old", {("a", "d"): fake_runs.confusions(0, 5, accuracy=0.5),
                                             ("only_old", "d"): fake_runs.confusions(1, 5)},
                          finished="2025-01-01T00:00:00+00:00", suite_name="s1")
    new = fake_runs.write(tmp_path / "new", {("a", "d"): fake_runs.confusions(2, 7, accuracy=0.9)},
                          finished="2025-02-01T00:00:00+00:00", suite_name="s2")
    runs = [segbench.load(new), segbench.load(old)]  # the newer first: order must not matter
    merged = merge_runs(runs)
    summary = merged.summary.set_index("model")
    assert sorted(summary.index) == ["a", "only_old"]
    assert summary.loc["a", "num_images"] == 7
    assert (merged.per_image["model"] == "a").sum() == 7 and len(merged.per_class) == 2 * 4
    assert merged.manifest["cells"]["a__d"]["run_dir"] == str(new)
    last = merge_runs(runs, prefer="last").summary.set_index("model")
    assert last.loc["a", "num_images"] == 5
    assert conventions(merged) == ["d: 7 images, 4 classes, ignore index 255, 16x16 px"]


def models_suite(models: list) -> dict:
    """A suite of `python` models (tests/conftest.py's tiny_nets) on a small synthetic dataset."""
    return {"name": "t", "device": "cpu", "batch_size": 2, "num_workers": 0, "models": models,
            "datasets": [{"name": "shapes", "type": "synthetic", "num_images": 3, "height": 16, "width": 24}]}


GOOD = {"name": "good", "type": "python", "factory": "tiny_nets:pointwise", "kwargs": {"num_classes": 6},
        "num_classes": 6}
EXPLODING = {"name": "bad", "type": "python", "factory": "tiny_nets:exploding", "num_classes": 6}


def test_report_names_the_cells_that_failed(tmp_path, nets):
    failed = segbench.load(execute(models_suite([EXPLODING, GOOD]), run_dir=tmp_path / "failed").run_dir)
    error = failed.manifest["cells"]["bad__shapes"]["error"]
    assert "boom in forward" in error and "\n" not in error
    note = f"Not in this report: model bad on dataset shapes (failed: {error}) in run {failed.root}"
    assert f"- {note}\n" in render(failed, "md")
    assert f"<li>{html.escape(note)}</li>" in render(failed, "html")
    assert f"% {note}\n" in render(failed, "tex")
    assert "Not in this report" not in render(failed, "csv")  # the leaderboard alone
    elsewhere = segbench.load(segbench.run(models_suite([{**GOOD, "name": "other"}]), run_dir=tmp_path / "other"))
    assert note in render(merge_runs([elsewhere, failed]), "md")


def test_report_without_missing_cells_has_no_note(tmp_path, nets):
    complete = segbench.load(segbench.run(models_suite([GOOD]), run_dir=tmp_path / "complete"))
    for fmt in ("md", "html", "tex"):
        assert "Not in this report" not in render(complete, fmt)
    failed = segbench.load(execute(models_suite([EXPLODING, GOOD]), run_dir=tmp_path / "failed").run_dir)
    fixed = segbench.load(segbench.run(models_suite([{**GOOD, "name": "bad"}]), run_dir=tmp_path / "fixed"))
    merged = merge_runs([failed, fixed])  # bad failed in one folder, completed in the other
    assert sorted(merged.summary["model"]) == ["bad", "good"]
    assert "Not in this report" not in render(merged, "md")


def test_a_model_without_probabilities_does_not_make_the_calibration_settings_differ(tmp_path, nets):
    """Saved predictions give no probabilities (calibration not applicable), the python model does: the same
    calibration settings, so the caption names them once."""
    execute({**models_suite([GOOD]), "save_predictions": True}, run_dir=tmp_path / "first")
    saved = {"name": "saved", "type": "predictions", "num_classes": 6,
             "root": str(tmp_path / "first" / "cells" / "good__shapes" / "predictions")}
    run = execute({**models_suite([GOOD, saved]), "metrics": {"calibration": {}}}, run_dir=tmp_path / "run")
    assert run.statuses == {"good__shapes": "complete", "saved__shapes": "complete"}
    [caption] = conventions(segbench.load(tmp_path / "run"))
    assert "differs between models" not in caption and caption.count("calibration bins=15") == 1


def test_latex_escapes_names_and_has_booktabs_structure(tmp_path, fake_runs):
    assert latex_escape(r"a_b & c% d#e $f {g} ~h ^i \j") == (
        r"a\_b \& c\% d\#e \$f \{g\} \textasciitilde{}h \textasciicircum{}i \textbackslash{}j")
    cells = {("net_v2 & co", "set_1%"): fake_runs.confusions(0, 5),
             ("model#3", "set_1%"): fake_runs.confusions(1, 5, accuracy=0.5)}
    run = segbench.load(fake_runs.write(tmp_path / "run", cells, class_names=["road_x", "car&bus", "50%", "#4"]))
    tex = render(run, "tex", ReportOptions(ci=True, resamples=200, decimals=1))
    assert r"net\_v2 \& co" in tex and r"model\#3" in tex and r"set\_1\%" in tex
    assert r"road\_x" in tex and r"car\&bus" in tex and r"50\%" in tex and r"\#4" in tex
    assert "net_v2" not in tex and "& co" not in tex.replace(r"\& co", "")
    assert tex.count(r"\begin{tabular}") == tex.count(r"\end{tabular}") == 2
    for rule in (r"\toprule", r"\midrule", r"\bottomrule"):
        assert tex.count(rule) == 2
    assert re.search(r"\\textbf\{\d+\.\d \$\\pm\$ \d+\.\d\}", tex)  # one decimal, bold best, ±
    assert "ignore index 255" in tex
    for table in re.findall(r"\\begin\{tabular\}.*?\\bottomrule", tex, re.S):
        header, body = table.split("\\midrule\n")
        columns = header.strip().splitlines()[-1].count(" & ")
        rows = body.splitlines()[:-1]
        assert rows and all(row.count(" & ") == columns and row.endswith(r" \\") for row in rows)


def _compile(tex: str, folder) -> subprocess.CompletedProcess:
    document = ("\\documentclass{article}\n\\usepackage[T1]{fontenc}\n\\usepackage{booktabs,graphicx}\n"
                "\\begin{document}\n" + tex + "\n\\end{document}\n")
    (folder / "report.tex").write_text(document)
    return subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "report.tex"],
                          cwd=folder, capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex is not installed")
def test_latex_compiles(two_models, tmp_path):
    tex = render(two_models, "tex", ReportOptions(ci=True, resamples=200))
    result = _compile(tex.replace("near_good", "near_good & 100% #1 ~x^2"), tmp_path)
    assert result.returncode == 0, result.stdout[-3000:]
    assert (tmp_path / "report.pdf").is_file()
    assert "Overfull \\hbox" not in (tmp_path / "report.log").read_text()  # wide tables shrink to fit


def test_markdown_marks_best_and_ties(two_models):
    text = render(two_models, "md", ReportOptions(metrics=["mIoU"], ci=True, resamples=300))
    row = {line.split(" | ")[0].strip("| "): line for line in text.splitlines() if line.startswith("| ")}
    assert "**" in row["good"] and "‡" in row["near_good"] and "**" not in row["bad"] and "‡" not in row["bad"]
    assert "‡: not significantly different from the best" in text
    assert "†" not in text  # † marks untrained models
    assert "### Per-class IoU (%): city" in text and "### Per-class IoU (%): ade_20k" in text
    assert "Published" not in text


def test_csv_is_the_leaderboard_in_percent(two_models):
    table = pd.read_csv(io.StringIO(render(two_models, "csv", ReportOptions(ci=True, resamples=100))),
                        index_col="model")
    summary = two_models.summary.set_index(["model", "dataset"])
    assert table.loc["good", "city/mIoU"] == round(100 * summary.loc[("good", "city"), "mIoU"], 2)
    assert table.loc["good", "city/mIoU_lo"] < table.loc["good", "city/mIoU"] < table.loc["good", "city/mIoU_hi"]
    assert table.loc["near_good", "city/latency_ms_p50"] == 20.0
    assert "city/latency_ms_p50_lo" not in table.columns


def test_html_is_one_self_contained_file(two_models, tmp_path):
    text = render(two_models, "html", ReportOptions(ci=True, resamples=100))
    assert text.startswith("<!DOCTYPE html>")
    assert not re.search(r"<(link|script|iframe)\b", text) and "href=" not in text
    sources = re.findall(r'src="([^"]*)"', text)
    assert sources and all(s.startswith("data:image/png;base64,") for s in sources)
    assert len(sources) == 1 + 2  # the scatter for the dataset with latencies, a bar chart per dataset
    assert "<b>" in text and "<sup>‡</sup>" in text


def test_html_says_when_there_is_no_latency(tmp_path, fake_runs):
    run = segbench.load(fake_runs.write(tmp_path / "run", {("a", "d"): fake_runs.confusions(0, 4)}))
    text = render(run, "html")
    assert "No latency figures" in text and len(re.findall(r'src="data:', text)) == 1


def test_published_against_measured(tmp_path, fake_runs):
    run = segbench.load(fake_runs.write(tmp_path / "run", {("a", "d"): fake_runs.confusions(0, 4)}))
    assert published_table(run.summary).empty
    extra = {("m", "d"): {"published_dataset": "Cityscapes", "published_mIoU": 0.5,
                          "published_mIoU_ms_flip": 0.52}}
    run = segbench.load(fake_runs.write(tmp_path / "run2", {("m", "d"): fake_runs.confusions(0, 4),
                                                            ("x", "d"): fake_runs.confusions(1, 4)},
                                        extra=extra))
    table = published_table(run.summary)
    assert list(table["model"]) == ["m"]
    assert table.loc[0, "delta_mIoU"] == pytest.approx(table.loc[0, "mIoU"] - 0.5)
    text = render(run, "md")
    assert "### Published against measured" in text
    assert "| model | dataset | published dataset | published mIoU | published mIoU_ms_flip | mIoU | Δ mIoU |" in text
    assert "| m | d | Cityscapes | 50.00 | 52.00 |" in text


def test_pareto_front():
    latency = np.array([10, 20, 30, 15, 40])
    miou = np.array([0.5, 0.7, 0.6, 0.5, 0.8])
    assert pareto_front(latency, miou).tolist() == [True, True, False, False, True]


def test_per_class_table(two_models):
    table = two_models.per_class_table("IoU")
    assert table.index.names == ["dataset", "class_id", "class_name"]
    assert list(table.columns) == ["good", "near_good", "bad"] and len(table) == 2 * 4


runner = CliRunner()


def test_cli_report_writes_the_format_of_the_suffix(two_models, tmp_path):
    out = tmp_path / "out" / "report.tex"
    result = runner.invoke(app, ["report", str(two_models.root), "--out", str(out), "--sort", "aAcc"])
    assert result.exit_code == 0, result.output
    assert out.read_text().count(r"\begin{table}") == 3
    result = runner.invoke(app, ["report", str(two_models.root), "--format", "md", "--metric", "mIoU"])
    assert result.exit_code == 0 and "| model | city/mIoU | ade_20k/mIoU |" in result.stdout


@pytest.mark.parametrize("args, message", [
    (["--metric", "mBogus"], "mBogus"),
    (["--sort", "mBF"], "cannot sort by 'mBF'"),
    (["--per-class-metric", "HD95"], "no per-class column 'HD95'"),
])
def test_cli_report_mistakes_exit_2(two_models, args, message):
    result = runner.invoke(app, ["report", str(two_models.root), *args])
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output


def test_cli_report_of_a_folder_that_is_no_run(tmp_path):
    result = runner.invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 2 and "not a run folder" in result.output


# ---------------------------------------------------------------- what a column is comes from the run's catalogue

DISTANCE_99 = {"accuracy": {}, "distance": {"percentile": 99.0}}


def distance_run(fake_runs, root, distances: dict, suite_metrics: dict = DISTANCE_99):
    """A run folder of the models of ``distances`` ({model: mHD99}) on dataset d."""
    cells = {(model, "d"): fake_runs.confusions(i, 5) for i, model in enumerate(distances)}
    extra = {(model, "d"): {"mHD99": value} for model, value in distances.items()}
    return segbench.load(fake_runs.write(root, cells, extra=extra, suite_metrics=suite_metrics))


def test_the_lowest_mhd99_is_best_because_the_run_declares_it(tmp_path, fake_runs):
    run = distance_run(fake_runs, tmp_path / "run", {"far": 9.0, "near": 5.0})
    long = leaderboard_long(run)
    assert list(long["metric"].unique()) == ["mIoU", "aAcc", "mAcc", "mHD99"]  # a leaderboard column, declared
    assert long.loc[long["best"] & (long["metric"] == "mHD99"), "model"].tolist() == ["near"]
    text = render(run, "md", ReportOptions(sort="mHD99"))
    assert "| model | mIoU | aAcc | mAcc | mHD99 [px] |" in text
    rows = [line for line in text.splitlines() if line.startswith(("| near |", "| far |"))]
    assert rows[0].startswith("| near |") and rows[0].endswith("| **5.00** |") and rows[1].endswith("| 9.00 |")


def test_merged_runs_declare_the_columns_of_each_run(tmp_path, fake_runs):
    distances = distance_run(fake_runs, tmp_path / "distances", {"far": 9.0, "near": 5.0})
    plain = segbench.load(fake_runs.write(tmp_path / "plain", {("other", "d"): fake_runs.confusions(7, 5)}))
    merged = merge_runs([plain, distances])
    assert merged.manifest["merged_metrics"] == [fake_runs.suite_metrics(None), DISTANCE_99]
    column = results_catalogue(merged).get("mHD99")
    assert (column.unit, column.direction, column.bootstrap) == ("px", "lower", True)
    text = render(merged, "md", ReportOptions(metrics=["mHD99"], sort="mHD99"))
    assert "| near | **5.00** |" in text and "| far | 9.00 |" in text and "| other | - |" in text
    # the Python API reads the same catalogue: a lower mHD99 ranks first
    assert list(leaderboard(merged, ["mHD99"], sort="mHD99").index) == ["near", "far", "other"]


def test_units_in_headers_and_per_class_titles(two_models):
    text = render(two_models, "md", ReportOptions(per_class_metric="Dice"))
    assert "| model | city/mIoU | city/aAcc | city/mAcc | city/latency_ms_p50 [ms] |" in text
    assert "### Per-class Dice (%): city" in text


# ---------------------------------------------------------------- confusions and reliability diagrams

NAMES = ["road", "car", "sky", "tree"]


def hand_top(matrices: list, top: int = 10) -> list:
    """(label id, predicted id, pixels, share of the label's pixels) of the largest off-diagonal cells."""
    total = np.sum(matrices, axis=0)
    cells = [(-int(total[i, j]), i, j) for i in range(len(total)) for j in range(len(total)) if i != j and total[i, j]]
    return [(i, j, -p, -p / total[i].sum()) for p, i, j in sorted(cells)[:top]]


@pytest.fixture
def confused(tmp_path, fake_runs):
    """Models a (accurate) and b (not) on dataset d, with confusion rows; c on d without."""
    matrices = {("a", "d"): fake_runs.confusions(0, 6, accuracy=0.9),
                ("b", "d"): fake_runs.confusions(1, 6, accuracy=0.5),
                ("c", "d"): fake_runs.confusions(2, 6, accuracy=0.7)}
    root = fake_runs.write(tmp_path / "run", matrices, class_names=NAMES, confusion=[("a", "d"), ("b", "d")])
    return segbench.load(root), matrices


def test_top_confusions_equal_a_hand_count(confused):
    run, matrices = confused
    top = top_confusions(run)
    assert set(zip(top["model"], top["dataset"])) == {("a", "d"), ("b", "d")}
    for model in ("a", "b"):
        rows = top[top["model"] == model]
        expected = hand_top(matrices[(model, "d")])
        assert len(rows) == 10
        assert list(zip(rows["label_class_id"], rows["predicted_class_id"], rows["pixels"])) == \
            [(i, j, p) for i, j, p, _ in expected]
        assert rows["share"].tolist() == pytest.approx([share for *_, share in expected])
        assert rows["label_class"].tolist() == [NAMES[i] for i, *_ in expected]
        assert rows["predicted_class"].tolist() == [NAMES[j] for _, j, *_ in expected]


def test_reports_show_heatmaps_and_top_confusions(confused):
    run, matrices = confused
    i, j, pixels, share = hand_top(matrices[("b", "d")])[0]
    row = f"| {NAMES[i]} | {NAMES[j]} | {pixels} | {100 * share:.2f} |"
    text = render(run, "md")
    assert "### Top confusions: a on d" in text and "### Top confusions: b on d" in text and row in text
    assert "Top confusions: c on d" not in text  # c has no confusion rows
    page = render(run, "html")
    assert "<h2>Confusions: a on d</h2>" in page and "<h2>Confusions: b on d</h2>" in page
    assert "Confusions: c on d" not in page
    assert f"<tr><td>{NAMES[i]}</td><td>{NAMES[j]}</td><td>{pixels}</td><td>{100 * share:.2f}</td></tr>" in page
    images = re.findall(r'src="data:image/png;base64,', page)
    assert len(images) == 1 + 2  # the per-class bar chart, a heatmap per model with confusion rows
    tex = render(run, "tex")
    assert "Top confusions: b on d" in tex and tex.count(r"\begin{table}") == 1 + 1 + 2


def test_runs_without_confusions_render_as_before(tmp_path, fake_runs):
    run = segbench.load(fake_runs.write(tmp_path / "run", {("a", "d"): fake_runs.confusions(0, 4)}))
    assert run.confusion.empty and top_confusions(run).empty
    for fmt in ("md", "html", "tex"):
        assert "onfusion" not in render(run, fmt) and "Reliability" not in render(run, fmt)
    assert len(re.findall(r'src="data:', render(run, "html"))) == 1


def test_heatmap_of_many_classes_shows_the_most_confused(tmp_path, fake_runs):
    matrices = fake_runs.confusions(0, 2, classes=150, accuracy=0.8, pixels=4000)
    run = segbench.load(fake_runs.write(tmp_path / "run", {("a", "ade"): matrices}, confusion=True))
    page = render(run, "html")
    assert f"The {HEATMAP_CLASSES} of 150 classes with the most confused pixels" in page
    assert "<h3>Top confusions: a on ade</h3>" in page


def test_merged_runs_keep_the_winners_confusion_rows(tmp_path, fake_runs):
    old = fake_runs.write(tmp_path / "old", {("a", "d"): fake_runs.confusions(0, 5, accuracy=0.5),
                                             ("only_old", "d"): fake_runs.confusions(1, 5)},
                          finished="2025-01-01T00:00:00+00:00", confusion=True)
    new = fake_runs.write(tmp_path / "new", {("a", "d"): fake_runs.confusions(2, 7, accuracy=0.9),
                                             ("only_new", "d"): fake_runs.confusions(3, 5)},
                          finished="2025-02-01T00:00:00+00:00", confusion=[("a", "d")])
    old_run, new_run = segbench.load(old), segbench.load(new)
    merged = merge_runs([new_run, old_run])
    key = ["model", "dataset", "label_class_id", "predicted_class_id"]
    expected = pd.concat([new_run.confusion, old_run.confusion[old_run.confusion["model"] == "only_old"]])
    assert merged.confusion.sort_values(key).reset_index(drop=True).equals(
        expected.sort_values(key).reset_index(drop=True))
    assert "### Top confusions: a on d" in render(merged, "md")
    assert "Top confusions: only_new" not in render(merged, "md")


def calibration_bins(accuracy_gap: float, bins: int = 15) -> list:
    edges = np.linspace(0, 1, bins + 1)
    return [{"bin": b, "lower": edges[b], "upper": edges[b + 1], "pixels": 0 if b < 3 else 100 * b,
             "mean_confidence": (edges[b] + edges[b + 1]) / 2,
             "accuracy": max(0.0, (edges[b] + edges[b + 1]) / 2 - accuracy_gap)} for b in range(bins)]


def load_calibrated(root):
    """The run folder, its calibration table read by hand where the store does not read it (yet)."""
    run = segbench.load(root)
    if not hasattr(run, "calibration"):
        run.calibration = pd.read_parquet(root / "calibration.parquet")
    return run


def test_html_has_the_reliability_diagram(tmp_path, fake_runs):
    cells = {("a", "d"): fake_runs.confusions(0, 4), ("b", "d"): fake_runs.confusions(1, 4),
             ("a", "e"): fake_runs.confusions(2, 4)}
    calibration = {("a", "d"): calibration_bins(0.05), ("b", "d"): calibration_bins(0.2)}
    extra = {("a", "d"): {"ECE": 0.05}, ("b", "d"): {"ECE": 0.2}}
    run = load_calibrated(fake_runs.write(tmp_path / "run", cells, calibration=calibration, extra=extra))
    page = render(run, "html")
    assert "<h2>Reliability: d</h2>" in page and "Reliability: e" not in page
    assert len(re.findall(r'src="data:', page)) == 2 + 1  # a bar chart per dataset, one reliability figure
    assert "Reliability" not in render(run, "md")
    other = segbench.load(fake_runs.write(tmp_path / "other", {("c", "d"): fake_runs.confusions(3, 4)},
                                          finished="2025-02-01T00:00:00+00:00"))
    merged = merge_runs([run, other])
    assert sorted(merged.calibration["model"].unique()) == ["a", "b"] and len(merged.calibration) == 2 * 15
    assert "<h2>Reliability: d</h2>" in render(merged, "html")


# ---------------------------------------------------------------- issue 15: reports users can trust

def test_report_refuses_runs_of_different_data_of_one_dataset_name_unless_allowed(tmp_path, nets):
    def run_of(name: str, model: dict, images: int) -> str:
        suite = models_suite([model])
        suite["datasets"][0]["num_images"] = images
        return str(segbench.run(suite, run_dir=tmp_path / name))

    large, small = run_of("large", GOOD, 3), run_of("small", {**GOOD, "name": "other"}, 2)
    command = [sys.executable, "-m", "segbench", "report", large, small]
    refused = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2 and refused.stdout == "" and "Traceback" not in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    assert f"dataset 'shapes' holds different data in the runs merged: 3 images in run {large}, 2 in run " \
           f"{small}; fingerprint " in refused.stderr
    assert "Give --allow-different-data" in refused.stderr
    allowed = subprocess.run(command + ["--allow-different-data"], capture_output=True, text=True, timeout=300)
    assert allowed.returncode == 0, allowed.stderr
    prints = [json.loads((tmp_path / name / "cells" / cell / "cell.json").read_text())["dataset_fingerprint"]
              for name, cell in (("large", "good__shapes"), ("small", "other__shapes"))]
    header = next(line for line in allowed.stdout.splitlines() if line.startswith("| model |"))
    assert f"| shapes (3 images, data {prints[0][:6]})/mIoU |" in header
    assert f"| shapes (2 images, data {prints[1][:6]})/mIoU |" in header
    rows = [line for line in allowed.stdout.splitlines() if line.startswith(("| good", "| other"))]
    assert len(rows) == 2 and not any("**" in row for row in rows)  # no best across different data


def test_show_refuses_runs_of_different_data_unless_allowed(tmp_path, nets):
    runs = []
    for name, images in (("large", 3), ("small", 2)):
        suite = models_suite([{**GOOD, "name": name, "save_predictions": True}])
        suite["datasets"][0]["num_images"] = images
        runs.append(str(segbench.run(suite, run_dir=tmp_path / name)))
    command = [sys.executable, "-m", "segbench", "show", *runs, "--out", str(tmp_path / "g.html")]
    refused = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2 and "Give --allow-different-data" in refused.stderr
    fingerprint = json.loads((tmp_path / "small" / "cells" / "small__shapes" / "cell.json").read_text())[
        "dataset_fingerprint"]
    allowed = subprocess.run(command + ["--allow-different-data", "--dataset",
                                        f"shapes (2 images, data {fingerprint[:6]})"],
                             capture_output=True, text=True, timeout=300)
    assert allowed.returncode == 0, allowed.stderr
    assert "small" in (tmp_path / "g.html").read_text()


def test_report_refuses_runs_of_one_dataset_with_different_metric_options(tmp_path, fake_runs):
    plain = segbench.load(fake_runs.write(tmp_path / "plain", {("a", "d"): fake_runs.confusions(0, 5)}))
    other = fake_runs.write(tmp_path / "other", {("b", "d"): fake_runs.confusions(1, 5)},
                            options={"accuracy": {"num_classes": 4, "ignore_index": 0}})
    with pytest.raises(UserError, match=f"dataset 'd' was evaluated with different metric options in the runs "
                                        f"merged: accuracy.ignore_index: run {plain.root} 255, run {other} 0"):
        merge_runs([plain, segbench.load(other)])


@pytest.fixture
def trained_or_not(tmp_path, fake_runs):
    """good (trained), rnd (random weights) and custom (not known whether trained) on one dataset."""
    cells = {(model, "d"): fake_runs.confusions(i, 5, accuracy=accuracy)
             for i, (model, accuracy) in enumerate((("good", 0.9), ("rnd", 0.3), ("custom", 0.6)))}
    extra = {("good", "d"): {"trained": True}, ("rnd", "d"): {"trained": False},
             ("custom", "d"): {"trained": None}}
    return segbench.load(fake_runs.write(tmp_path / "run", cells, extra=extra))


LEGEND = "† random weights: not a trained model; ? not known whether trained"


def test_models_not_known_to_be_trained_are_marked_in_every_format(trained_or_not):
    md = render(trained_or_not, "md")
    names = [line.split(" | ")[0].strip("| ") for line in md.splitlines() if line.startswith("| ")]
    assert names[:4] == ["model", "good", "custom?", "rnd†"] and LEGEND in md
    assert "| class | good | custom? | rnd† |" in md  # the per-class table
    page = render(trained_or_not, "html")
    assert "<td>rnd†</td>" in page and "<td>custom?</td>" in page and "<td>good</td>" in page
    assert html.escape(LEGEND) in page
    tex = render(trained_or_not, "tex")
    assert r"rnd$^\dagger$ &" in tex and "custom? &" in tex and r"$^\dagger$ random weights" in tex
    table = pd.read_csv(io.StringIO(render(trained_or_not, "csv")), index_col="model")
    assert table["trained"].to_dict() == {"good": "True", "custom": "unknown", "rnd": "False"}


def test_the_terminal_leaderboard_marks_models_not_known_to_be_trained(trained_or_not):
    from rich.console import Console

    from segbench.cli import leaderboard_table

    console = Console(record=True, width=200)
    console.print(leaderboard_table(trained_or_not))
    text = console.export_text()
    names = [line.split("│")[2].strip() for line in text.splitlines() if line.startswith("│")]
    assert names == ["good", "custom?", "rnd†"] and LEGEND in " ".join(text.split())


@pytest.fixture
def timed(tmp_path, fake_runs):
    """Two models with efficiency figures: steady (p90/p50 = 1.2) and noisy (p90/p50 = 2.0)."""
    cells = {(model, "d"): fake_runs.confusions(i, 5) for i, model in enumerate(("steady", "noisy"))}
    extra = {("steady", "d"): {"latency_ms_p50": 10.0, "latency_ms_p90": 12.0, "params": 315954,
                               "gflops_per_image": 1.5, "throughput_images_per_sec": 100.0},
             ("noisy", "d"): {"latency_ms_p50": 10.0, "latency_ms_p90": 20.0, "params": 25_000_000,
                              "gflops_per_image": 3.0, "throughput_images_per_sec": 50.0}}
    return segbench.load(fake_runs.write(tmp_path / "run", cells, extra=extra))


def test_efficiency_is_shown_in_human_units_with_its_spread(timed):
    md = render(timed, "md")
    header = next(line for line in md.splitlines() if line.startswith("| model |"))
    assert "| latency_ms_p50 [ms] | p90/p50 | throughput_images_per_sec [images/s] | gflops_per_image [GFLOPs] " \
           "| params [M] |" in header
    rows = {line.split(" | ")[0].strip("| "): line for line in md.splitlines() if line.startswith("| ")}
    assert rows["steady"].endswith("| 10.00 | 1.20 | **100.00** | **1.50** | **0.32** |")
    assert rows["noisy"].endswith("| 10.00 | 2.00 | 50.00 | 3.00 | 25.00 |")
    warnings = [line for line in md.splitlines() if "noisy" in line and line.startswith("- Warning")]
    assert warnings == ["- Warning: latency_ms_p50 of noisy on d was timed with a spread p90/p50 of 2.00 (above "
                        "1.5): the timing was noisy (a busy machine, or too few iterations); measure it again "
                        "before comparing"]
    convention = "GFLOPs count 2 FLOPs per multiply-add: twice the figure of mmseg's get_flops"
    assert convention in md.split("\n\n")[1]  # the legend
    assert latex_escape(convention) in render(timed, "tex").split(r"\caption{")[1].split("}\n")[0]
    table = pd.read_csv(io.StringIO(render(timed, "csv")), index_col="model")
    assert table.loc["steady", "d/params"] == 0.32 and table.loc["noisy", "d/latency_ms_p50_spread"] == 2.0


def test_the_terminal_leaderboard_has_an_efficiency_table_in_human_units(timed):
    from rich.console import Console

    from segbench.cli import leaderboard_table

    console = Console(record=True, width=200)
    console.print(leaderboard_table(timed))
    text = console.export_text()
    headers = [[c.strip() for c in line.strip("┃").split("┃")]
               for line in text.splitlines() if line.startswith("┃")]
    assert headers[1] == ["dataset", "model", "latency_ms_p50 [ms]", "p90/p50", "throughput_images_per_sec "
                          "[images/s]", "gflops_per_image [GFLOPs]", "params [M]"]
    rows = {cells[1]: cells[2:] for line in text.splitlines() if line.startswith("│")
            for cells in [[c.strip() for c in line.strip("│").split("│")]] if "latency" not in cells}
    assert ["10.00", "1.20", "100.00", "1.50", "0.32"] in rows.values()
    text = " ".join(text.split())
    assert "twice the figure of mmseg's get_flops" in text and "spread p90/p50 of 2.00" in text


def test_unmeasured_figures_are_not_shown_and_plots_name_their_axes(tmp_path, fake_runs):
    cells = {("a", "d"): fake_runs.confusions(0, 4), ("b", "d"): fake_runs.confusions(1, 4)}
    extra = {("a", "d"): {"latency_ms_p50": np.nan}, ("b", "d"): {"latency_ms_p50": np.nan}}
    run = segbench.load(fake_runs.write(tmp_path / "run", cells, extra=extra))
    assert "latency_ms_p50" not in set(leaderboard_long(run)["metric"])
    latency = results_catalogue(run).get("latency_ms_p50")
    assert axis_label(latency) == "median latency of one batch, end to end (latency_ms_p50, ms)"
