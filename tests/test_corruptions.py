"""The corruption engine: every corruption, determinism, the cache, the robustness figures, `segbench corrupt`."""

import math

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

pytest.importorskip("imagecorruptions")

from segbench import corruptions  # noqa: E402
from segbench.corruptions import (COMMON, CORRUPTIONS_ALL, CorruptionCache, cached_corrupt,  # noqa: E402
                                  corrupt_image, robustness_table)
from segbench.errors import UserError  # noqa: E402
from segbench.images import read_image, read_label, write_label  # noqa: E402

# Corruptions that draw random numbers: another seed gives other pixels.
RANDOM = ("gaussian_noise", "shot_noise", "impulse_noise", "glass_blur", "motion_blur", "snow", "frost", "fog",
          "elastic_transform", "speckle_noise", "spatter")


@pytest.fixture(scope="module")
def textured():
    return np.random.default_rng(7).integers(0, 256, (32, 48, 3), dtype=np.uint8)


def test_names_are_the_packages():
    import imagecorruptions

    assert list(CORRUPTIONS_ALL) == imagecorruptions.get_corruption_names("all")
    assert list(COMMON) == imagecorruptions.get_corruption_names("common") and len(COMMON) == 15


@pytest.mark.parametrize("name", CORRUPTIONS_ALL)
def test_each_corruption_changes_the_image_deterministically(name, textured):
    before = np.random.get_state()[1].copy()
    image = textured.copy()
    first = corrupt_image(image, name, 3, seed=0, image_id="a")
    assert np.array_equal(image, textured)  # the input is not modified
    assert first.dtype == np.uint8 and first.shape == textured.shape
    assert (first != textured).any()
    assert np.array_equal(first, corrupt_image(textured, name, 3, seed=0, image_id="a"))
    assert np.array_equal(np.random.get_state()[1], before)  # numpy's global state is restored
    if name in RANDOM:
        assert not np.array_equal(first, corrupt_image(textured, name, 3, seed=1, image_id="a"))
        assert not np.array_equal(first, corrupt_image(textured, name, 3, seed=0, image_id="b"))


def test_image_seed_is_stable_across_processes():
    # crc32, not Python's salted hash: a fixed value.
    assert corruptions.image_seed(0, "a", "fog", 3) == corruptions.image_seed(0, "a", "fog", 3)
    import zlib
    assert corruptions.image_seed(0, "a", "fog", 3) == zlib.crc32(b"0\x00a\x00fog\x003")


def test_severity_changes_the_result(textured):
    assert not np.array_equal(corrupt_image(textured, "contrast", 1, 0, "a"),
                              corrupt_image(textured, "contrast", 5, 0, "a"))


@pytest.mark.parametrize("name,severity,expected", [("fgo", 1, "gaussian_noise"), ("fog", 0, "1, 2, 3, 4, 5"),
                                                    ("fog", 6, "1, 2, 3, 4, 5")])
def test_invalid_names_and_severities_list_the_valid_ones(textured, name, severity, expected):
    with pytest.raises(UserError, match=expected):
        corrupt_image(textured, name, severity, 0, "a")


def test_missing_package_names_the_extra(monkeypatch, textured):
    import sys
    monkeypatch.setitem(sys.modules, "imagecorruptions", None)
    with pytest.raises(UserError, match=r"segbench\[robustness\]"):
        corrupt_image(textured, "fog", 1, 0, "a")


def test_cache_serves_same_pixels_without_recomputing(tmp_path, textured, monkeypatch):
    calls = []
    real = corruptions.corrupt_image
    monkeypatch.setattr(corruptions, "corrupt_image", lambda *a, **k: calls.append(a) or real(*a, **k))
    cache = CorruptionCache(tmp_path / "cache")
    first = cached_corrupt(cache, textured, "gaussian_noise", 2, 0, "a")
    again = cached_corrupt(cache, textured, "gaussian_noise", 2, 0, "a")
    assert len(calls) == 1 and np.array_equal(first, again)
    assert np.array_equal(first, real(textured, "gaussian_noise", 2, 0, "a"))
    assert len(list((tmp_path / "cache").rglob("*.png"))) == 1
    assert not list((tmp_path / "cache").rglob("*.tmp"))
    # another seed, another source image, another severity: recomputed, never the stale file
    other_seed = cached_corrupt(cache, textured, "gaussian_noise", 2, 1, "a")
    changed = textured.copy()
    changed[0, 0] ^= 1
    other_source = cached_corrupt(cache, changed, "gaussian_noise", 2, 0, "a")
    cached_corrupt(cache, textured, "gaussian_noise", 3, 0, "a")
    assert len(calls) == 4
    assert not np.array_equal(other_seed, first)
    assert np.array_equal(other_source, real(changed, "gaussian_noise", 2, 0, "a"))
    # a broken cache file is recomputed
    path = cache.path(textured, "gaussian_noise", 2, 0, "a")
    path.write_bytes(b"not a png")
    assert np.array_equal(cached_corrupt(cache, textured, "gaussian_noise", 2, 0, "a"), first)
    assert len(calls) == 5


def test_no_cache_computes(textured):
    assert np.array_equal(cached_corrupt(None, textured, "fog", 1, 0, "a"), corrupt_image(textured, "fog", 1, 0, "a"))


# ---------------------------------------------------------------- robustness figures, computed by hand


def summary_rows(model, clean, fog, noise):
    rows = [(model, "d", "none", 0, clean)]
    rows += [(model, "d", "fog", s, v) for s, v in zip((1, 2), fog)]
    rows += [(model, "d", "gaussian_noise", s, v) for s, v in zip((1, 2), noise)]
    return rows


SUMMARY = pd.DataFrame(summary_rows("A", 0.8, (0.7, 0.5), (0.6, 0.4)) + summary_rows("B", 0.9, (0.8, 0.6), (0.9, 0.9)),
                       columns=["model", "dataset", "corruption", "severity", "mIoU"])


def row(table, model, corruption):
    found = table[(table["model"] == model) & (table["corruption"] == corruption)]
    assert len(found) == 1
    return found.iloc[0]


def test_robustness_without_reference():
    table = robustness_table(SUMMARY, None)
    assert list(table.columns) == ["model", "dataset", "corruption", "CE", "relative_CE", "mIoU_s1", "mIoU_s2",
                                   "mCE", "relative_mCE", "retention", "note"]
    assert len(table) == 6
    fog, noise, all_ = row(table, "A", "fog"), row(table, "A", "gaussian_noise"), row(table, "A", "all")
    assert fog["CE"] == pytest.approx((0.3 + 0.5) / 2) and fog["relative_CE"] == pytest.approx((0.1 + 0.3) / 2)
    assert (fog["mIoU_s1"], fog["mIoU_s2"]) == (0.7, 0.5)
    assert noise["CE"] == pytest.approx(0.5) and noise["relative_CE"] == pytest.approx(0.3)
    assert all_["mCE"] == pytest.approx(0.45) and all_["relative_mCE"] == pytest.approx(0.25)
    assert all_["retention"] == pytest.approx((0.7 + 0.5 + 0.6 + 0.4) / 4 / 0.8)
    assert math.isnan(all_["CE"]) and math.isnan(fog["mCE"])


def test_robustness_with_reference():
    table = robustness_table(SUMMARY, "B")
    fog, noise, all_ = row(table, "A", "fog"), row(table, "A", "gaussian_noise"), row(table, "A", "all")
    assert fog["CE"] == pytest.approx(0.8 / 0.6)
    assert fog["relative_CE"] == pytest.approx((0.1 + 0.3) / (0.1 + 0.3))
    assert noise["CE"] == pytest.approx(1.0 / 0.2)
    # the reference's error does not grow under noise: relative CE undefined, and the note says why
    assert math.isnan(noise["relative_CE"]) and "does not grow" in noise["note"]
    assert all_["mCE"] == pytest.approx((0.8 / 0.6 + 5.0) / 2)
    assert all_["relative_mCE"] == pytest.approx(1.0)  # the finite values only
    assert row(table, "B", "fog")["CE"] == pytest.approx(1.0)
    assert row(table, "B", "all")["mCE"] == pytest.approx(1.0)


def test_reference_missing_rows_leaves_mce_nan_with_note():
    partial = SUMMARY[~((SUMMARY["model"] == "B") & (SUMMARY["corruption"] == "gaussian_noise")
                        & (SUMMARY["severity"] == 2))]
    all_ = row(robustness_table(partial, "B"), "A", "all")
    assert math.isnan(all_["mCE"]) and math.isnan(all_["relative_mCE"])
    assert "reference B" in all_["note"] and "gaussian_noise" in all_["note"]
    assert all_["retention"] == pytest.approx(0.6875)
    absent = row(robustness_table(SUMMARY[SUMMARY["model"] == "A"], "B"), "A", "all")
    assert math.isnan(absent["mCE"]) and "reference B" in absent["note"]


def test_missing_clean_row_leaves_retention_and_relative_nan():
    table = robustness_table(SUMMARY[SUMMARY["corruption"] != "none"], None)
    assert math.isnan(row(table, "A", "all")["retention"]) and math.isnan(row(table, "A", "fog")["relative_CE"])
    assert row(table, "A", "fog")["CE"] == pytest.approx(0.4)


# ---------------------------------------------------------------- segbench corrupt


def test_corrupt_command_writes_folder_datasets_that_run(tmp_path):
    from segbench.api import execute
    from segbench.cli import app
    from segbench.store import load

    root = tmp_path / "mine"
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    rng = np.random.default_rng(0)
    labels = {}
    for stem in ("a", "b"):
        Image.fromarray(rng.integers(0, 255, (32, 48, 3), dtype=np.uint8)).save(root / "images" / f"{stem}.png")
        labels[stem] = rng.integers(0, 3, (32, 48)).astype(np.uint8)
        write_label(root / "labels" / f"{stem}.png", labels[stem])
    suite = tmp_path / "s.yaml"
    suite.write_text(f"name: s\ndevice: cpu\ndatasets:\n  - {{name: mine, type: folder, root: {root}, "
                     f"num_classes: 3}}\nmodels:\n  - {{name: unet, type: builtin, arch: unet}}\n")
    out = tmp_path / "corrupted"
    result = CliRunner().invoke(app, ["corrupt", str(suite), "--dataset", "mine", "--out", str(out),
                                      "--corruption", "fog", "--corruption", "pixelate", "--severity", "2",
                                      "--seed", "3"])
    assert result.exit_code == 0, result.output
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert written == [f"{c}/2/{kind}/{s}.png" for c in ("fog", "pixelate") for kind in ("images", "labels")
                       for s in ("a", "b")]
    source = read_image(root / "images" / "a.png")
    assert np.array_equal(read_image(out / "fog" / "2" / "images" / "a.png"), corrupt_image(source, "fog", 2, 3, "a"))
    assert np.array_equal(read_label(out / "fog" / "2" / "labels" / "b.png"), labels["b"])

    bad = CliRunner().invoke(app, ["corrupt", str(suite), "--dataset", "nope", "--out", str(out)])
    assert bad.exit_code == 2
    bad = CliRunner().invoke(app, ["corrupt", str(suite), "--dataset", "mine", "--out", str(out),
                                   "--corruption", "fgo"])
    assert bad.exit_code == 2

    corrupted_root = out / "fog" / "2"
    run = {"name": "c", "device": "cpu", "batch_size": 2, "num_workers": 0,
           "datasets": [{"name": "fog2", "type": "folder", "root": str(corrupted_root), "num_classes": 3}],
           "models": [{"name": "saved", "type": "predictions", "root": str(corrupted_root / "labels")}]}
    outcome = execute(run, run_dir=tmp_path / "run")
    assert outcome.ok, outcome.errors
    assert load(tmp_path / "run").summary["mIoU"].iloc[0] == pytest.approx(1.0)


def test_threads_give_the_same_pixels_as_one_thread(textured):
    from concurrent.futures import ThreadPoolExecutor

    jobs = [(name, seed) for name in ("gaussian_noise", "fog", "elastic_transform") for seed in range(4)] * 3
    alone = [corrupt_image(textured, name, 2, seed, "a") for name, seed in jobs]
    with ThreadPoolExecutor(8) as pool:
        threaded = list(pool.map(lambda job: corrupt_image(textured, job[0], 2, job[1], "a"), jobs))
    assert all(np.array_equal(a, b) for a, b in zip(alone, threaded))


WARM_CHILD = """
import multiprocessing, sys
import numpy as np
import imagecorruptions.corruptions as package
from segbench.corruptions import CorruptedDataset, corrupt_image
from segbench.data.synthetic import SyntheticDataset

def corrupt(queue):
    before = len(package._shuffle_pixels_njit_glass_blur.signatures)
    corrupt_image(np.full((48, 64, 3), 90, np.uint8), "glass_blur", 5, 0, "a")
    queue.put(len(package._shuffle_pixels_njit_glass_blur.signatures) - before)

CorruptedDataset(SyntheticDataset("s", 1, 32, 32, 0), "glass_blur", 5, 0, None)
context = multiprocessing.get_context("fork")
queue = context.Queue()
worker = context.Process(target=corrupt, args=(queue,))
worker.start()
print(queue.get())
worker.join()
"""


def test_loader_workers_inherit_glass_blur_compiled_by_the_dataset():
    """numba compiles glass_blur's kernel per process: the corrupted dataset does it once, in the process the
    DataLoader's workers are forked from, so a worker compiles nothing (severity 5's signature differs from
    severity 3's)."""
    import subprocess
    import sys

    child = subprocess.run([sys.executable, "-c", WARM_CHILD], capture_output=True, text=True, timeout=240)
    assert child.returncode == 0, child.stderr
    assert child.stdout.strip() == "0"  # signatures compiled in the worker
