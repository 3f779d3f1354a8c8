"""Reports of runs with a `corruptions` section: clean leaderboards, the mCE leaderboard, the corruption x
severity tables and the mIoU-against-severity plot (issue #18, point 4)."""

import base64
import io
import json
import re
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("imagecorruptions")

import segbench  # noqa: E402
from segbench.report import render  # noqa: E402

NAMES, SEVERITIES = ["gaussian_noise", "fog"], [1, 3]
SUITE = """name: rob
device: cpu
batch_size: 2
num_workers: 0
datasets: [{name: shapes, type: synthetic, num_images: 3, height: 64, width: 96}]
models: [{name: fcn, type: builtin, arch: fcn}, {name: unet, type: builtin, arch: unet}]
"""
CORRUPTIONS = f"corruptions: {{names: {NAMES}, severities: {SEVERITIES}, reference: fcn}}\n"


def segbench_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "segbench", *args], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """(corrupted run folder, the stdout of `segbench run` on it, clean run folder)."""
    root = tmp_path_factory.mktemp("reports")
    (root / "corrupted.yaml").write_text(SUITE + CORRUPTIONS)
    (root / "clean.yaml").write_text(SUITE)
    corrupted = segbench_cli("run", str(root / "corrupted.yaml"), "--run-dir", str(root / "corrupted"))
    assert corrupted.returncode == 0, corrupted.stderr
    clean = segbench_cli("run", str(root / "clean.yaml"), "--run-dir", str(root / "clean"))
    assert clean.returncode == 0, clean.stderr
    assert "reference model" not in clean.stdout
    return root / "corrupted", corrupted.stdout, root / "clean"


@pytest.fixture(scope="module")
def markdown(runs):
    report = segbench_cli("report", str(runs[0]))
    assert report.returncode == 0, report.stderr
    return report.stdout


def md_table(text: str, title: str) -> tuple[list[str], dict[str, list[str]]]:
    """The header and the rows (by their first cell) of the Markdown table under ``### title``."""
    lines = text.split(f"### {title}\n", 1)[1].lstrip("\n").splitlines()
    rows = [[cell.strip() for cell in line.strip("|").split(" | ")] for line in lines[:lines.index("")]]
    header, _, *body = rows
    return header, {row[0]: row[1:] for row in body}


def percent(value: float) -> str:
    return f"{100 * value:.2f}"


def test_the_mce_leaderboard_ranks_models_against_the_reference(runs, markdown):
    robustness = pd.read_parquet(runs[0] / "robustness.parquet")
    overall = robustness[robustness["corruption"] == "all"].set_index("model")
    header, rows = md_table(markdown, "Robustness: rob")
    assert header == ["model", "mCE [ratio]", "relative_mCE [ratio]", "retention"]
    assert list(rows) == list(overall.sort_values("mCE").index)  # the lowest mCE first
    assert rows["fcn"][:2] == ["**1.00**", "**1.00**"]  # the reference: exactly 1, the best here
    unet = overall.loc["unet"]
    assert rows["unet"][:2] == [f"{unet['mCE']:.2f}", f"{unet['relative_mCE']:.2f}"]
    assert overall["mCE"].idxmin() == "fcn" and unet["mCE"] > 1
    best, worst = overall["retention"].idxmax(), overall["retention"].idxmin()  # higher is better
    assert rows[best][2] == f"**{percent(overall.loc[best, 'retention'])}**"
    assert rows[worst][2] == percent(overall.loc[worst, "retention"])
    caption = markdown.split("### Robustness: rob\n", 1)[1].strip().split("\n\n")[1]
    assert caption.startswith("Robustness against corruptions, reference model fcn (its mCE is 1): CE, ")
    assert "retention, the mean over corruptions and severities of mIoU / clean mIoU" in caption


def test_the_corruption_by_severity_tables_hold_the_summarys_miou(runs, markdown):
    summary = pd.read_parquet(runs[0] / "summary.parquet").set_index(["model", "corruption", "severity"])["mIoU"]
    robustness = pd.read_parquet(runs[0] / "robustness.parquet").set_index(["model", "corruption"])
    for model in ("fcn", "unet"):
        header, rows = md_table(markdown, f"Robustness: {model} on shapes, mIoU (%) by corruption and severity")
        assert header == ["corruption", "clean", "severity 1", "severity 3", "CE [ratio]", "relative_CE [ratio]"]
        assert list(rows) == NAMES
        for corruption, cells in rows.items():
            expected = [percent(summary[(model, "none", 0)])]
            expected += [percent(summary[(model, corruption, s)]) for s in SEVERITIES]
            expected += [f"{robustness.loc[(model, corruption), c]:.2f}" for c in ("CE", "relative_CE")]
            assert cells == expected


def test_the_other_sections_show_the_clean_rows(runs, markdown):
    summary = pd.read_parquet(runs[0] / "summary.parquet")
    clean = summary[summary["corruption"] == "none"].set_index("model")
    header, rows = md_table(markdown, "Leaderboard: rob")
    assert sorted(rows) == ["fcn", "unet"]  # one row per model
    for model, cells in rows.items():
        assert cells[header.index("mIoU") - 1].strip("*") == percent(clean.loc[model, "mIoU"])
    per_class = pd.read_parquet(runs[0] / "per_class.parquet")
    per_class = per_class[per_class["corruption"] == "none"].set_index(["model", "class_name"])["IoU"]
    header, rows = md_table(markdown, "Per-class IoU (%): shapes")
    for name, cells in rows.items():
        assert [c.strip("*") for c in cells] == [percent(per_class[(m, name)]) for m in header[1:]]
    run = segbench.load(runs[0])
    assert run.leaderboard(["mIoU"])[("shapes", "mIoU")].to_dict() == clean["mIoU"].to_dict()
    assert (run.per_class_table().columns == ["fcn", "unet"]).all()
    board, mce = run.robustness_leaderboard(), overall_mce(run)
    assert list(board.index) == sorted(mce, key=mce.get)
    assert board[("shapes", "mCE")].to_dict() == mce


def overall_mce(run) -> dict[str, float]:
    """robustness.parquet's mCE by model."""
    overall = run.robustness[run.robustness["corruption"] == "all"]
    return dict(zip(overall["model"], overall["mCE"]))


def test_run_prints_the_clean_leaderboard_and_the_mce_table(runs):
    _, stdout, _ = runs
    leaderboard, robustness = stdout.split("robustness (reference model: fcn)")
    rows = [line for line in leaderboard.splitlines() if "│ shapes" in line]
    assert len(rows) == 2  # the clean rows alone
    summary = pd.read_parquet(runs[0] / "summary.parquet")
    clean = summary[summary["corruption"] == "none"].set_index("model")["mIoU"]
    for line in rows:
        model, miou = [cell.strip() for cell in line.strip("│").split("│")][1:3]
        assert miou == percent(clean[model])
    overall = overall_mce(segbench.load(runs[0]))
    rows = [[cell.strip() for cell in line.strip("│").split("│")] for line in robustness.splitlines()
            if "│ shapes" in line]
    assert [row[1] for row in rows] == sorted(overall, key=overall.get)
    assert {row[1]: row[2] for row in rows} == {model: f"{mce:.2f}" for model, mce in overall.items()}


def test_html_plots_miou_against_severity(runs):
    page = render(segbench.load(runs[0]), "html")
    section = page.split("<h3>mIoU against severity: shapes</h3>\n", 1)[1]
    encoded = re.match(r'<img alt="figure" src="data:image/png;base64,([^"]+)">', section).group(1)
    from PIL import Image

    image = Image.open(io.BytesIO(base64.b64decode(encoded)))
    assert image.format == "PNG" and image.width > 1.5 * image.height  # two panels side by side
    assert "<h3>Robustness: rob</h3>" in page and "<b>1.00</b>" in page
    assert page.count("by corruption and severity</h3>") == 2


def test_latex_has_the_robustness_tables(runs):
    tex = render(segbench.load(runs[0]), "tex")
    tables = re.findall(r"\\begin\{table\}.*?\\end\{table\}", tex, re.S)
    robust = [t for t in tables if r"\caption{Robustness" in t]
    assert len(robust) == 3 and tex.count(r"\begin{tabular}") == tex.count(r"\end{tabular}") == len(tables)
    assert "reference model fcn" in robust[0] and r"fcn & \textbf{1.00} & \textbf{1.00}" in robust[0]
    assert r"\multicolumn{3}{c}{mIoU (\%)}" in robust[1]
    for table in robust:
        spec = re.search(r"\\begin\{tabular\}\{(\w+)\}", table).group(1)
        body = table.split("\\midrule\n")[1].split("\\bottomrule")[0].splitlines()
        assert body and all(row.count(" & ") == len(spec) - 1 and row.endswith(r" \\") for row in body)


def test_a_figure_that_is_nan_shows_na_and_its_note(runs):
    run = segbench.load(runs[0])
    overall = (run.robustness["corruption"] == "all") & (run.robustness["model"] == "unet")
    run.robustness.loc[overall, ["mCE", "note"]] = [np.nan, "reference fcn has no rows for fog severity 3"]
    _, rows = md_table(render(run, "md"), "Robustness: rob")
    assert rows["unet"][0] == "n/a [1]"
    assert "\n[1] reference fcn has no rows for fog severity 3\n" in render(run, "md")


def test_a_failed_corrupted_cell_is_named(runs, tmp_path):
    folder = shutil.copytree(runs[0], tmp_path / "run")
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["cells"]["unet__shapes__fog__3"] |= {"status": "failed", "error": "boom"}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    summary = pd.read_parquet(folder / "summary.parquet")
    failed = (summary["model"] == "unet") & (summary["corruption"] == "fog") & (summary["severity"] == 3)
    summary[~failed].to_parquet(folder / "summary.parquet")
    text = render(segbench.load(folder), "md")
    assert "Not in this report: model unet on dataset shapes under fog at severity 3 (failed: boom)" in text


def test_a_run_without_corruptions_has_no_robustness_part(runs):
    run = segbench.load(runs[2])
    for fmt in ("md", "tex", "html"):
        assert "Robustness" not in render(run, fmt)
    assert run.robustness_leaderboard().empty
