"""`segbench show`: which images a gallery picks, what it embeds, and its refusals."""

import base64
import io
import re

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

import segbench
from segbench.cli import app
from segbench.images import read_label
from segbench.data.synthetic import PALETTE, SyntheticDataset
from segbench.errors import UserError
from segbench.gallery import THUMB_BOX, gallery

SUITE = {"name": "g", "device": "cpu", "batch_size": 4, "num_workers": 0, "save_predictions": True,
         "datasets": [{"name": "shapes", "type": "synthetic", "num_images": 8, "height": 32, "width": 48}],
         "models": [{"name": "fcn", "type": "builtin", "arch": "fcn"},
                    {"name": "unet", "type": "builtin", "arch": "unet"}]}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return segbench.run(SUITE, run_dir=tmp_path_factory.mktemp("gallery") / "run")


def show(*args):
    result = CliRunner().invoke(app, ["show", *map(str, args)])
    return result.exit_code, result.output


def shown_ids(page: str) -> list[str]:
    return re.findall(r'<div class="row"><h3><b>([^<]+)</b>', page)


def pictures(page: str) -> list[tuple[str, str]]:
    """(thumbnail, full size) data URIs of every picture."""
    return re.findall(r'<img src="([^"]+)" data-full="([^"]+)"', page)


def decoded(uri: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))


def test_worst_images_are_the_lowest_of_per_image_parquet(run_dir, tmp_path):
    code, output = show(run_dir, "--out", tmp_path / "g.html", "--worst", 3, "--by", "mIoU", "--of", "unet")
    assert code == 0, output
    page = (tmp_path / "g.html").read_text()
    per_image = pd.read_parquet(run_dir / "per_image.parquet")
    expected = per_image[per_image["model"] == "unet"].nsmallest(3, "mIoU")["image_id"].tolist()
    assert shown_ids(page) == expected
    # Per row: image, ground truth, and a prediction and an error map per model, all embedded.
    assert len(pictures(page)) == 3 * (2 + 2 * 2)
    assert "src=\"http" not in page and "src=\"file" not in page
    value = per_image.set_index(["model", "image_id"]).loc[("unet", expected[0]), "mIoU"]
    assert f"unet: mIoU {100 * value:.1f}" in page


def test_worst_by_a_distance_is_the_highest_and_each_model_gets_a_section(run_dir):
    calls = []
    page, _ = gallery(segbench.load(run_dir), worst_count=2, by="mHD95",
                      progress=lambda done, total: calls.append((done, total)))
    assert calls == [(1, 4), (2, 4), (3, 4), (4, 4)]
    per_image = pd.read_parquet(run_dir / "per_image.parquet")
    expected = [per_image[per_image["model"] == m].nlargest(2, "mHD95")["image_id"].tolist()
                for m in ("fcn", "unet")]
    assert shown_ids(page) == expected[0] + expected[1]
    assert 'id="worst-fcn"' in page and 'id="worst-unet"' in page


def test_pictures_are_the_data_the_predictions_and_their_errors(run_dir):
    page, _ = gallery(segbench.load(run_dir), image_ids=["synth_00002"], models=["fcn"])
    [image, truth, prediction, errors] = [(decoded(t), decoded(f)) for t, f in pictures(page)]
    sample = SyntheticDataset(num_images=8, height=32, width=48).load(2)
    assert image[1].size == (48, 32) and image[1].format == "JPEG"
    saved = read_label(run_dir / "cells" / "fcn__shapes" / "predictions" / "synth_00002.png")
    colours = np.array([*PALETTE, (150, 150, 150)])
    truth_rgb = np.asarray(truth[1].convert("RGB"))
    np.testing.assert_array_equal(truth_rgb, colours[np.where(sample.label == 255, 6, sample.label)])
    np.testing.assert_array_equal(np.asarray(prediction[1].convert("RGB")), colours[saved])
    error_rgb = np.asarray(errors[1].convert("RGB"))
    wrong = (saved != sample.label) & (sample.label != 255)
    assert (error_rgb[wrong] == (230, 25, 25)).all()
    assert (error_rgb[sample.label == 255] == (150, 150, 150)).all()
    assert (error_rgb[~wrong & (sample.label != 255)] == 255).all()
    for thumbnail, _ in (image, truth, prediction, errors):
        assert thumbnail.width <= THUMB_BOX[0] and thumbnail.height <= THUMB_BOX[1]


def test_disagree_picks_the_images_where_two_models_differ_most(run_dir):
    page, _ = gallery(segbench.load(run_dir), disagree_count=2)
    data = SyntheticDataset(num_images=8, height=32, width=48)
    shares = {}
    for i, image_id in enumerate(data.ids()):
        a, b = (read_label(run_dir / "cells" / f"{m}__shapes" / "predictions" / f"{image_id}.png")
                for m in ("fcn", "unet"))
        labelled = data.load(i).label != 255
        shares[image_id] = ((a != b) & labelled).sum() / labelled.sum()
    assert shown_ids(page) == sorted(shares, key=lambda i: -shares[i])[:2]


def test_html_report_links_to_the_worst_images_of_each_model(run_dir, tmp_path):
    result = CliRunner().invoke(app, ["report", str(run_dir), "--out", str(tmp_path / "report.html")])
    assert result.exit_code == 0, result.output
    report = (tmp_path / "report.html").read_text()
    assert 'href="report-gallery-shapes.html#worst-fcn"' in report
    assert 'href="report-gallery-shapes.html#worst-unet"' in report
    assert 'id="worst-unet"' in (tmp_path / "report-gallery-shapes.html").read_text()


def test_a_report_that_fails_writes_no_gallery(run_dir, tmp_path):
    result = CliRunner().invoke(app, ["report", str(run_dir), "--out", str(tmp_path / "report.html"),
                                      "--metric", "mIoUU"])
    assert result.exit_code == 2, result.output
    assert "mIoUU" in result.output
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("args, message", [
    (["--model", "segformer"], "no model 'segformer' on dataset 'shapes'; these runs have: fcn, unet"),
    (["--dataset", "cityscapes"], "no dataset 'cityscapes' in these runs; they have: shapes"),
    (["--worst", "9"], "--worst 9: dataset 'shapes' has 8 images, choose 1 to 8"),
    (["--by", "mIoUU"], "no per-image figure 'mIoUU'"),
    (["--images", "nope"], "no image 'nope' in dataset 'shapes'"),
])
def test_bad_input_is_one_message_and_exit_2(run_dir, tmp_path, args, message):
    code, output = show(run_dir, "--out", tmp_path / "g.html", *args)
    assert code == 2
    assert message in " ".join(output.split())
    assert not (tmp_path / "g.html").exists()


def test_a_run_without_saved_predictions_names_the_option(tmp_path):
    run = segbench.run({**SUITE, "save_predictions": False, "models": SUITE["models"][:1]},
                       run_dir=tmp_path / "run")
    code, output = show(run, "--out", tmp_path / "g.html")
    assert code == 2
    assert "no saved predictions for fcn on dataset 'shapes'" in output
    assert "save_predictions: true" in output


def test_a_dataset_that_is_gone_is_a_clear_error(tmp_path):
    root = tmp_path / "data"
    for folder in ("images", "labels"):
        (root / folder).mkdir(parents=True)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(root / "images" / "a.png")
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(root / "labels" / "a.png")
    suite = {**SUITE, "datasets": [{"name": "mine", "type": "folder", "root": str(root), "num_classes": 6}],
             "models": SUITE["models"][:1]}
    run = segbench.run(suite, run_dir=tmp_path / "run")
    (root / "images" / "a.png").unlink()
    (root / "images").rmdir()
    with pytest.raises(UserError, match="cannot open dataset 'mine' as the run recorded it"):
        gallery(segbench.load(run))


def test_full_max_bounds_the_enlarged_pictures_only(run_dir):
    page, _ = gallery(segbench.load(run_dir), image_ids=["synth_00002"], models=["fcn"], full_max=24)
    for thumbnail, full in pictures(page):
        assert decoded(full).size == (24, 16)
        assert decoded(thumbnail).size == (48, 32)


def test_worst_by_mhd99_is_the_highest_because_the_run_declares_it(tmp_path):
    suite = {**SUITE, "models": SUITE["models"][:1], "metrics": {"distance": {"percentile": 99}}}
    run = segbench.run(suite, run_dir=tmp_path / "run")
    page, _ = gallery(segbench.load(run), worst_count=3, by="mHD99")
    per_image = pd.read_parquet(run / "per_image.parquet")
    assert shown_ids(page) == per_image.nlargest(3, "mHD99")["image_id"].tolist()
    assert "does worst by mHD99 (highest first)" in page
    value = per_image.set_index("image_id").loc[shown_ids(page)[0], "mHD99"]
    assert f"fcn: mHD99 {value:.1f}" in page  # in pixels, as stored
    assert f"mHD99 {value:.1f}" in page.split("</h3>", 2)[1]  # and among the figures under the prediction


def test_gallery_labels_say_when_a_model_is_not_known_to_be_trained(tmp_path, nets):
    mine = {"name": "mine", "type": "python", "factory": "tiny_nets:pointwise", "kwargs": {"num_classes": 6},
            "num_classes": 6}
    suite = {**SUITE, "datasets": [{**SUITE["datasets"][0], "num_images": 2}],
             "models": [SUITE["models"][0], {"name": "rnd", "type": "builtin", "arch": "fcn", "weights": "random"},
                        mine]}
    page, _ = gallery(segbench.load(segbench.run(suite, run_dir=tmp_path / "run")))
    assert "<b>fcn</b>" in page and "<b>rnd†</b>" in page and "<b>mine?</b>" in page
    assert "† random weights: not a trained model; ? not known whether trained" in page
    assert "images where rnd† does worst" in page
