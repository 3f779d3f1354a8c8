"""A plugin installed beside segbench works like the built-ins: the example plugin of tests/plugins, through the
real command line.

tests/plugins holds the package ``segbench_example`` (dataset type ``stripes``, model source ``threshold``,
metric group ``area``) and its ``segbench_example-0.1.dist-info``, whose entry points importlib.metadata finds
on sys.path: with tests/plugins on PYTHONPATH, a ``segbench`` process loads the plugin exactly as it would a
pip-installed one. This process never imports it, so the registries of the other tests stay as they were.

The tests named ``test_catalogue_*`` check that reports, ``check`` and ``segbench list metrics`` take a
plugin's columns from the column catalogue (unit fraction, lower is better): they wait for that work.
"""

import configparser
import json
import math
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from textwrap import dedent

import numpy as np
import pandas as pd
import pytest
from PIL import Image

PLUGINS = Path(__file__).parent / "plugins"
NUM_CLASSES = 6  # the built-in demo nets predict 6 classes
MIN_PIXELS = 40
IGNORE = 255
STRIPES = {"num_images": 4, "height": 16, "width": 32, "num_classes": NUM_CLASSES, "seed": 3}
EVEN = [255 * k / NUM_CLASSES for k in range(1, NUM_CLASSES)]  # the threshold model's default
SKEWED = [60.5, 100.5, 140.5, 180.5, 220.5]


SUITE = f"""\
name: plugged
device: cpu
batch_size: 2
num_workers: 0
datasets:
  - name: stripes
    type: stripes
    num_images: {STRIPES["num_images"]}
    height: {STRIPES["height"]}
    width: {STRIPES["width"]}
    num_classes: {NUM_CLASSES}
    seed: {STRIPES["seed"]}
models:
  - name: bright
    type: threshold
    num_classes: {NUM_CLASSES}
  - name: fcn
    type: builtin
    arch: fcn
    save_predictions: true
metrics:
  area:
    min_pixels: {MIN_PIXELS}
"""


def suite_text(thresholds: list[float] | None) -> str:
    """The plugin's dataset type, its model source (with ``thresholds``) and a built-in model, its metric group."""
    if thresholds is None:
        return SUITE
    return SUITE.replace("  - name: fcn\n", f"    thresholds: {thresholds}\n  - name: fcn\n")


def segbench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "segbench", *args], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module", autouse=True)
def plugin_installed():
    """tests/plugins on PYTHONPATH, so every segbench process of this module loads the example plugin."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        paths = [str(PLUGINS)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
        monkeypatch.setenv("PYTHONPATH", os.pathsep.join(paths))
        yield


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """Two run folders of the same suite: the threshold model with even thresholds, then skewed ones."""
    root = tmp_path_factory.mktemp("plugin_runs")
    folders = {}
    for name, thresholds in (("even", None), ("skewed", SKEWED)):
        suite = root / f"{name}.yaml"
        suite.write_text(suite_text(thresholds))
        result = segbench("run", str(suite), "--run-dir", str(root / name))
        assert result.returncode == 0, result.stderr
        folders[name] = root / name
        (root / f"{name}.stdout").write_text(result.stdout)  # the terminal leaderboard
    return folders


@pytest.fixture(scope="module")
def stripes(tmp_path_factory) -> dict[str, np.ndarray]:
    return stripes_data(tmp_path_factory.mktemp("stripes"), STRIPES)


def stripes_data(folder: Path, config: dict) -> dict[str, np.ndarray]:
    """The dataset's images and labels, as the plugin's registered dataset type builds them from ``config`` (in
    a process of its own, so that this one never registers the plugin)."""
    path = folder / "stripes.npz"
    script = dedent(f"""\
        import sys
        import numpy as np
        from segbench.registry import DATASETS, load_plugins
        load_plugins()
        kind = DATASETS["stripes"]
        dataset = kind.build(kind.config(name="stripes", type="stripes", **{config!r}))
        samples = [dataset[i] for i in range(len(dataset))]
        np.savez(sys.argv[1], ids=[s.id for s in samples], images=np.stack([s.image for s in samples]),
                 labels=np.stack([s.label for s in samples]))
        """)
    result = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    with np.load(path) as data:
        return {key: data[key] for key in ("ids", "images", "labels")}


# ---------------------------------------------------------------- the independent reference

def threshold_reference(image: np.ndarray, thresholds: list[float]) -> np.ndarray:
    """The class of each pixel: how many thresholds its mean of R, G and B reaches."""
    brightness = image.astype(np.float64).mean(axis=2)
    return sum((brightness >= t).astype(np.int64) for t in thresholds)


def area_error_reference(labels, predictions, min_pixels: int) -> tuple[float, list[float]]:
    """mAreaError and per-class AreaError, counting pixels one image and one class at a time."""
    errors = []  # per image, per class: |P - L| / L, None where not evaluated
    for label, pred in zip(labels, predictions):
        row = []
        for c in range(NUM_CLASSES):
            labelled = int(np.count_nonzero(label == c))
            predicted = int(np.count_nonzero((pred == c) & (label != IGNORE)))
            row.append(abs(predicted - labelled) / labelled if labelled >= min_pixels else None)
        errors.append(row)
    per_class = []
    for c in range(NUM_CLASSES):
        values = [row[c] for row in errors if row[c] is not None]
        per_class.append(sum(values) / len(values) if values else math.nan)
    defined = [value for value in per_class if not math.isnan(value)]
    return sum(defined) / len(defined), per_class


def predictions_of(model: str, run_dir: Path, stripes: dict[str, np.ndarray], thresholds: list[float]) -> list:
    if model == "bright":
        return [threshold_reference(image, thresholds) for image in stripes["images"]]
    folder = run_dir / "cells" / f"{model}__stripes" / "predictions"  # what the built-in model predicted
    return [np.asarray(Image.open(folder / f"{image_id}.png")).astype(np.int64) for image_id in stripes["ids"]]


# ---------------------------------------------------------------- tests

def test_list_shows_the_plugin_types_and_group():
    for what, name in (("datasets", "stripes"), ("models", "threshold"), ("metrics", "area")):
        result = segbench("list", what)
        assert result.returncode == 0 and name in result.stdout, result.stdout + result.stderr


def test_the_data_exercise_ignore_pixels_and_min_pixels(stripes):
    """Preconditions of the next test: it would not notice ignore pixels counted, or min_pixels unused."""
    labels = stripes["labels"]
    assert (labels == IGNORE).any()
    predictions = [threshold_reference(image, EVEN) for image in stripes["images"]]
    assert area_error_reference(labels, predictions, 1) != area_error_reference(labels, predictions, MIN_PIXELS)


def test_a_suite_of_plugin_types_runs_and_stores_the_plugin_figures(runs, stripes):
    """mAreaError and AreaError as a brute-force count over the same images and predictions gives them."""
    for run, thresholds in (("even", EVEN), ("skewed", SKEWED)):
        summary = pd.read_parquet(runs[run] / "summary.parquet").set_index("model")
        per_class = pd.read_parquet(runs[run] / "per_class.parquet")
        per_image = pd.read_parquet(runs[run] / "per_image.parquet")
        assert sorted(summary.index) == ["bright", "fcn"]
        for model in ("bright", "fcn"):
            predictions = predictions_of(model, runs[run], stripes, thresholds)
            expected, expected_per_class = area_error_reference(stripes["labels"], predictions, MIN_PIXELS)
            assert summary.loc[model, "mAreaError"] == pytest.approx(expected, rel=1e-12)
            measured = per_class[per_class["model"] == model].sort_values("class_id")["AreaError"]
            assert measured.tolist() == pytest.approx(expected_per_class, rel=1e-12, nan_ok=True)
            assert per_image[per_image["model"] == model]["mAreaError"].notna().all()
    record = json.loads((runs["even"] / "cells" / "bright__stripes" / "cell.json").read_text())
    assert record["provenance"] == {"type": "threshold", "thresholds": EVEN, "trained": None}
    assert record["metric_options"]["area"]["min_pixels"] == MIN_PIXELS


def test_the_terminal_leaderboard_shows_the_plugin_figure(runs):
    """``segbench run``'s leaderboard has the plugin's leaderboard column, with each model's value as in %."""
    terminal = (runs["even"].parent / "even.stdout").read_text()
    summary = pd.read_parquet(runs["even"] / "summary.parquet").set_index("model")
    header = next(line for line in terminal.splitlines() if "mAreaError" in line)
    assert "mIoU" in header
    for model in ("bright", "fcn"):
        row = next(line for line in terminal.splitlines() if "stripes" in line and f" {model}" in line)
        assert f"{summary.loc[model, 'mAreaError'] * 100:.2f}" in row


BRIGHT_END = f"    num_classes: {NUM_CLASSES}\n  - name: fcn"  # the last line of the threshold model's entry


@pytest.mark.parametrize("old, new, at, field, expected", [
    ("    seed: 3\n", "    seed: 3\n    colour: red\n", "colour:", "datasets[0].colour",
     "unknown key 'colour'"),
    (BRIGHT_END, BRIGHT_END.replace("\n", "\n    thresholds: bright\n"), "thresholds:", "models[0].thresholds",
     "valid list"),
    (BRIGHT_END, BRIGHT_END.replace("\n", "\n    thresholds: [10, 20]\n"), "- name: bright", "models[0]",
     f"thresholds needs num_classes - 1 = {NUM_CLASSES - 1} values, not 2"),  # the entry's own check
    (f"    min_pixels: {MIN_PIXELS}\n", "    min_pixels: many\n", "min_pixels:", "metrics.area.min_pixels",
     "valid integer"),
])
def test_mistakes_in_plugin_configs_name_file_field_and_line(tmp_path, old, new, at, field, expected):
    text = suite_text(None)
    assert text.count(old) == 1
    text = text.replace(old, new)
    line = text[:text.index(at)].count("\n") + 1
    suite = tmp_path / "bad.yaml"
    suite.write_text(text)
    result = segbench("run", str(suite), "--run-dir", str(tmp_path / "run"))
    assert result.returncode == 2, result.stderr
    assert f"{suite}:{line} ({field}): " in result.stderr and expected in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------- these wait for the column catalogue

def test_catalogue_list_metrics_prints_the_plugin_columns():
    """`segbench list metrics` prints the catalogue, the plugin's columns with the built-ins'."""
    result = segbench("list", "metrics")
    assert result.returncode == 0, result.stderr
    assert "mAreaError" in result.stdout and "AreaError" in result.stdout


def test_catalogue_report_shows_mAreaError_in_percent_lower_best(runs):
    """The report's leaderboard shows mAreaError (declared leaderboard=True), in %, the lowest best."""
    summary = pd.read_parquet(runs["even"] / "summary.parquet").set_index("model")
    result = segbench("report", str(runs["even"]))
    assert result.returncode == 0, result.stderr
    assert "mAreaError" in result.stdout  # declared leaderboard: True

    result = segbench("report", str(runs["even"]), "--metric", "mAreaError", "--sort", "mAreaError")
    assert result.returncode == 0, result.stderr
    # the plugin's model records no `trained`: marked "?" (not known whether trained)
    rows = [line for line in result.stdout.splitlines() if line.startswith(("| bright? |", "| fcn |"))]
    assert [row.split("|")[1].strip() for row in rows[:2]] == ["bright?", "fcn"]  # the lower error first
    assert f"**{100 * summary.loc['bright', 'mAreaError']:.2f}**" in rows[0]  # in %, and the best


def test_catalogue_check_regresses_when_mAreaError_grows(runs):
    """check reads the direction from the declaration: a larger mAreaError regresses, a smaller one does not."""
    worse = segbench("check", str(runs["even"]), str(runs["skewed"]), "--metric", "mAreaError", "--json")
    assert worse.returncode == 1, worse.stdout + worse.stderr
    rows = {(row["model"], row["metric"]): row for row in json.loads(worse.stdout)["rows"]}
    assert rows[("bright", "mAreaError")]["regressed"] is True
    assert rows[("bright", "mAreaError")]["candidate"] > rows[("bright", "mAreaError")]["baseline"]
    assert rows[("fcn", "mAreaError")]["regressed"] is False

    better = segbench("check", str(runs["skewed"]), str(runs["even"]), "--metric", "mAreaError")
    assert better.returncode == 0, better.stdout + better.stderr


def test_installing_a_plugin_redoes_no_cell(tmp_path):
    """The plugin's group is off unless a suite names it: a run made without the plugin resumes as is."""
    suite = tmp_path / "plain.yaml"
    suite.write_text("name: plain\ndevice: cpu\nnum_workers: 0\n"
                     "datasets: [{name: shapes, type: synthetic, num_images: 2, height: 16, width: 16}]\n"
                     "models: [{name: fcn, type: builtin, arch: fcn}]\n")
    run_dir = tmp_path / "run"
    without = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    first = subprocess.run([sys.executable, "-m", "segbench", "run", str(suite), "--run-dir", str(run_dir)],
                           capture_output=True, text=True, timeout=300, env=without)
    assert first.returncode == 0, first.stderr
    again = segbench("run", str(suite), "--run-dir", str(run_dir))  # now with the plugin installed
    assert again.returncode == 0, again.stderr
    assert "fcn__shapes: complete in this run folder, skipped" in again.stderr


def test_eval_fills_the_field_the_plugin_registration_names(tmp_path):
    """`segbench eval --model threshold:REF`: REF fills `thresholds`, as the plugin's registration says; the
    stripes dataset takes no REF, and --num-classes goes to both configs, which both have the field."""
    run_dir = tmp_path / "run"
    result = segbench("eval", "--model", "threshold:" + ",".join(map(str, SKEWED)), "--dataset", "stripes",
                      "--num-classes", str(NUM_CLASSES), "--device", "cpu", "--run-dir", str(run_dir))
    assert result.returncode == 0, result.stderr
    record = json.loads(next((run_dir / "cells").glob("*__stripes/cell.json")).read_text())
    assert record["provenance"]["thresholds"] == SKEWED
    data = stripes_data(tmp_path, {"num_classes": NUM_CLASSES})  # the type's defaults otherwise
    assert len(data["ids"]) == 8
    labelled = data["labels"] != IGNORE
    predicted = np.stack([threshold_reference(image, SKEWED) for image in data["images"]])
    expected = np.count_nonzero((predicted == data["labels"]) & labelled) / np.count_nonzero(labelled)
    assert pd.read_parquet(run_dir / "summary.parquet")["aAcc"].tolist() == [pytest.approx(expected, rel=1e-12)]

    wrong = segbench("eval", "--model", "threshold:" + ",".join(map(str, SKEWED)), "--dataset", "stripes:data",
                     "--num-classes", str(NUM_CLASSES), "--run-dir", str(tmp_path / "wrong"))
    assert wrong.returncode == 2
    assert ("--dataset 'stripes:data': type 'stripes' takes no REF, write --dataset stripes; the types that take "
            "one: ade20k, cityscapes, folder, pascal_voc") in " ".join(wrong.stderr.split())
    assert not (tmp_path / "wrong").exists()


# ---------------------------------------------------------------- the guide shows this very plugin

ROOT = Path(__file__).parent.parent
GUIDE = ROOT / "docs" / "extending.md"
DIST_INFO = PLUGINS / "segbench_example-0.1.dist-info"


def guide_files() -> dict[str, str]:
    """docs/extending.md's fenced blocks by the path named on the line before (`` `PATH`: ``; blocks without
    one are left out), each block's text as a file holds it."""
    fence = r"^`([^`\n]+)`:\n```[a-z]*\n(.*?)^```$"
    return {match[1]: match[2] for match in re.finditer(fence, GUIDE.read_text(), re.MULTILINE | re.DOTALL)}


def test_the_extending_guide_shows_every_file_of_the_example_plugin_verbatim():
    """The guide cannot drift from the plugin the tests run: each file, byte for byte, under its path."""
    files = [path for path in PLUGINS.rglob("*") if path.is_file() and "__pycache__" not in path.parts]
    expected = {path.relative_to(ROOT).as_posix(): path.read_text() for path in files}
    shown = guide_files()
    assert sorted(shown) == sorted(expected)  # no file left out, none shown that is not there
    for path, text in expected.items():
        assert shown[path] == text, f"docs/extending.md shows {path} other than it is"


def test_the_guide_pyproject_would_write_the_example_dist_info():
    """The pyproject.toml the guide gives a real plugin declares the entry points and metadata the tests load."""
    toml = re.search(r"^```toml\n(.*?)^```$", GUIDE.read_text(), re.MULTILINE | re.DOTALL)
    project = tomllib.loads(toml[1])["project"]
    entry_points = configparser.ConfigParser()
    entry_points.read_string((DIST_INFO / "entry_points.txt").read_text())
    assert project["entry-points"] == {group: dict(entry_points[group]) for group in entry_points.sections()}
    metadata = dict(line.split(": ", 1) for line in (DIST_INFO / "METADATA").read_text().splitlines())
    assert (project["name"], project["version"], project["dependencies"]) == (
        metadata["Name"], metadata["Version"], [metadata["Requires-Dist"]])
