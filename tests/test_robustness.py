"""The suite's `corruptions` section: corrupted cells, their columns, robustness.parquet, resume and the cache."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("imagecorruptions")

import segbench  # noqa: E402
from segbench import corruptions  # noqa: E402
from segbench.api import execute  # noqa: E402
from segbench.corruptions import robustness_table  # noqa: E402
from segbench.runner import Interrupted, Reporter  # noqa: E402

TIMING = ("eval_seconds",)
NAMES, SEVERITIES = ["gaussian_noise", "fog"], [1, 3]


def suite(**extra):
    return {"name": "rob", "device": "cpu", "batch_size": 2, "num_workers": 0,
            "datasets": [{"name": "shapes", "type": "synthetic", "num_images": 3, "height": 64, "width": 96}],
            "models": [{"name": "fcn", "type": "builtin", "arch": "fcn"},
                       {"name": "unet", "type": "builtin", "arch": "unet"}],
            **extra}


def corrupted(section=None, **extra):
    return suite(corruptions={"names": NAMES, "severities": SEVERITIES, "reference": "fcn", **(section or {})},
                 **extra)


def without_timing(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.drop(columns=[c for c in TIMING if c in frame.columns]).reset_index(drop=True)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    execute(suite(), run_dir=root / "clean")
    execute(corrupted(), run_dir=root / "corrupted")
    return segbench.load(root / "clean"), segbench.load(root / "corrupted")


def test_each_model_dataset_corruption_and_severity_is_a_cell(runs):
    _, run = runs
    expected = [(m, c, s) for m in ("fcn", "unet") for c, s in [("none", 0)] + [(n, v) for n in NAMES
                                                                               for v in SEVERITIES]]
    assert list(run.summary[["model", "corruption", "severity"]].itertuples(index=False, name=None)) == expected
    assert set(run.manifest["cells"]) == {m + "__shapes" + ("" if c == "none" else f"__{c}__{s}")
                                          for m, c, s in expected}
    for table in (run.per_class, run.per_image):
        assert list(table.columns[:4]) == ["model", "dataset", "corruption", "severity"]
        assert set(table[["model", "corruption", "severity"]].itertuples(index=False, name=None)) == set(expected)
    # corrupted images change the figures; the per-image rows recompute each cell's summary
    rows = run.summary.set_index(["model", "corruption", "severity"])["mIoU"]
    assert rows[("unet", "fog", 3)] < rows[("unet", "none", 0)]


def test_clean_rows_equal_a_run_without_the_section(runs):
    clean, run = runs
    for name in ("summary", "per_class", "per_image"):
        expected, got = getattr(clean, name), getattr(run.clean(), name)
        pd.testing.assert_frame_equal(without_timing(got), without_timing(expected))
    # confusion rows have the corruption's columns only in runs with corrupted cells
    assert "corruption" not in clean.confusion.columns
    pd.testing.assert_frame_equal(run.clean().confusion.drop(columns=["corruption", "severity"]), clean.confusion)


def test_robustness_parquet_is_the_summarys_figures(runs):
    _, run = runs
    expected = robustness_table(run.summary, reference="fcn")
    pd.testing.assert_frame_equal(run.robustness, expected)
    overall = run.robustness[run.robustness["corruption"] == "all"].set_index("model")
    assert overall.loc["fcn", "mCE"] == 1.0  # the reference's mCE is exactly 1
    # hand arithmetic for unet's CE on fog: sum of its errors over the sum of fcn's
    miou = run.summary.set_index(["model", "corruption", "severity"])["mIoU"]
    errors = sum(1 - miou[("unet", "fog", s)] for s in SEVERITIES)
    reference = sum(1 - miou[("fcn", "fog", s)] for s in SEVERITIES)
    fog = run.robustness.set_index(["model", "corruption"]).loc[("unet", "fog")]
    assert fog["CE"] == pytest.approx(errors / reference, rel=1e-12)
    assert fog["mIoU_s3"] == miou[("unet", "fog", 3)]


def test_corruption_in_dataloader_workers_gives_the_same_figures(runs, tmp_path):
    _, run = runs
    workers = execute(corrupted(num_workers=2, models=[{"name": "fcn", "type": "builtin", "arch": "fcn"}]),
                      run_dir=tmp_path / "run")
    assert workers.ok
    got = segbench.load(tmp_path / "run").summary
    expected = run.summary[run.summary["model"] == "fcn"]
    pd.testing.assert_frame_equal(without_timing(got), without_timing(expected))


def test_resume_redoes_only_the_interrupted_cell_and_uses_the_cache(tmp_path, monkeypatch):
    calls = []
    original = corruptions.corrupt_image
    monkeypatch.setattr(corruptions, "corrupt_image", lambda *a, **k: calls.append(a[1:3]) or original(*a, **k))

    class StopInThirdCell(Reporter):
        cells = 0

        def cell_started(self, cell_id, total):
            self.cells += 1

        def advance(self, count):
            if self.cells == 3:
                raise KeyboardInterrupt

    run_dir = tmp_path / "run"
    with pytest.raises(Interrupted):
        execute(corrupted(), run_dir=run_dir, reporter=StopInThirdCell())
    statuses = {c: e["status"] for c, e in json.loads((run_dir / "manifest.json").read_text())["cells"].items()}
    assert [statuses[c] for c in ("fcn__shapes", "fcn__shapes__gaussian_noise__1",
                                  "fcn__shapes__gaussian_noise__3", "fcn__shapes__fog__1")] == [
        "complete", "complete", "interrupted", "pending"]
    cached = sorted((run_dir / "corruption_cache").rglob("*.png"))
    assert len(cached) == 3 + 2  # gaussian_noise 1: 3 images; severity 3: the first batch of 2
    calls.clear()
    outcome = execute(corrupted(), run_dir=run_dir)
    assert [c for c, s in outcome.statuses.items() if s == "complete"] == [
        c for c in statuses if statuses[c] != "complete"]
    # the rerun corrupts the interrupted cell's third image and fog's images once, for fcn; unet reads the cache
    assert sorted(calls) == sorted([("gaussian_noise", 3)] + [("fog", s) for s in SEVERITIES for _ in range(3)])
    assert len(sorted((run_dir / "corruption_cache").rglob("*.png"))) == 3 * len(NAMES) * len(SEVERITIES)


def test_a_changed_seed_redoes_the_corrupted_cells_with_other_images(runs, tmp_path):
    _, run = runs
    run_dir = tmp_path / "run"
    execute(corrupted(), run_dir=run_dir)
    outcome = execute(corrupted({"seed": 1}), run_dir=run_dir)
    redone = sorted(c for c, s in outcome.statuses.items() if s == "complete")
    assert redone == sorted(c for c in outcome.statuses if c.count("__") == 3)
    rows = segbench.load(run_dir).summary.set_index(["model", "corruption", "severity"])["mIoU"]
    before = run.summary.set_index(["model", "corruption", "severity"])["mIoU"]
    assert rows[("fcn", "none", 0)] == before[("fcn", "none", 0)]
    assert rows[("fcn", "gaussian_noise", 3)] != before[("fcn", "gaussian_noise", 3)]


def test_efficiency_is_measured_once_per_model_on_clean_images(tmp_path):
    efficiency = {"warmup": 0, "iters": 2, "scopes": ["model"]}
    execute(suite(efficiency=efficiency, models=[{"name": "fcn", "type": "builtin", "arch": "fcn"}],
                  corruptions={"names": ["fog"], "severities": [2]}), run_dir=tmp_path / "run")
    run = segbench.load(tmp_path / "run")
    assert set(run.efficiency["dataset"]) == {"shapes"} and "corruption" not in run.efficiency.columns
    summary = run.summary.set_index("corruption")
    assert np.isfinite(summary.loc["none", "model_latency_ms_p50"]) and "fog" in summary.index
    assert pd.isna(summary.loc["fog", "model_latency_ms_p50"])


@pytest.mark.parametrize("section, field, expected", [
    ({"names": ["fgo"]}, "corruptions.names", "unknown corruption 'fgo'; valid: gaussian_noise, shot_noise"),
    ({"severities": [0, 6]}, "corruptions.severities", "severity 0 is not one of 1, 2, 3, 4, 5"),
    ({"reference": "deeplab"}, "corruptions", "corruptions.reference 'deeplab' is not a model of the suite; "
                                              "its models: fcn, unet"),
])
def test_bad_sections_are_one_error_and_write_nothing(tmp_path, section, field, expected):
    import yaml

    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(suite(corruptions=section)))
    process = subprocess.run([sys.executable, "-m", "segbench", "run", str(path), "--out", str(tmp_path / "runs")],
                             capture_output=True, text=True)
    assert process.returncode == 2
    assert expected in process.stderr and field in process.stderr and "Traceback" not in process.stderr
    assert not (tmp_path / "runs").exists()


def test_check_keys_rows_by_corruption_and_severity(runs, tmp_path):
    from segbench.check import check

    _, run = runs
    execute(corrupted({"seed": 1}), run_dir=tmp_path / "reseeded")
    result = check(run, segbench.load(tmp_path / "reseeded"), metrics=["mIoU"], tolerance=100)
    table = result.table.set_index(["model", "dataset"])["change"]
    assert sorted(set(result.table["dataset"])) == sorted(
        ["shapes"] + [f"shapes:{n}:{s}" for n in NAMES for s in SEVERITIES])
    assert len(table) == 2 * 5 and table[("fcn", "shapes")] == 0  # clean rows are not corrupted: unchanged
    miou = run.summary.set_index(["model", "corruption", "severity"])["mIoU"]
    reseeded = segbench.load(tmp_path / "reseeded").summary.set_index(["model", "corruption", "severity"])["mIoU"]
    key = ("unet", "gaussian_noise", 3)
    assert table[("unet", "shapes:gaussian_noise:3")] == pytest.approx(100 * (reseeded[key] - miou[key]))


def test_galleries_show_the_clean_predictions(tmp_path):
    from segbench.gallery import open_source

    execute(suite(save_predictions=True, models=[{"name": "fcn", "type": "builtin", "arch": "fcn"}],
                  corruptions={"names": ["fog"], "severities": [2]}), run_dir=tmp_path / "run")
    source = open_source(segbench.load(tmp_path / "run"))
    assert source.models == ["fcn"]
    assert source.predictions["fcn"] == tmp_path / "run" / "cells" / "fcn__shapes" / "predictions"


def test_merged_runs_keep_each_models_clean_and_corrupted_rows_together(runs):
    from segbench.report import merge_runs

    clean, run = runs
    merged = merge_runs([run, clean], prefer="last")  # the clean run's cells win: no corrupted rows left
    assert set(merged.summary["corruption"]) == {"none"} and merged.robustness.empty
    merged = merge_runs([clean, run], prefer="last")
    pd.testing.assert_frame_equal(merged.summary, run.summary)
    pd.testing.assert_frame_equal(merged.robustness, run.robustness)
    assert sorted(entry["model"] for entry in merged.manifest["cells"].values()) == ["fcn", "unet"]


def test_check_reads_each_corrupted_cells_own_saved_predictions(tmp_path):
    from segbench.check import _prediction_folders

    execute(suite(save_predictions=True, models=[{"name": "fcn", "type": "builtin", "arch": "fcn"}],
                  corruptions={"names": ["fog"], "severities": [2]}), run_dir=tmp_path / "run")
    folders = _prediction_folders(segbench.load(tmp_path / "run").corrupted_as_datasets())
    cells = tmp_path / "run" / "cells"
    assert folders == {("fcn", "shapes"): cells / "fcn__shapes" / "predictions",
                       ("fcn", "shapes:fog:2"): cells / "fcn__shapes__fog__2" / "predictions"}
