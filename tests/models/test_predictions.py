from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from segbench.types import DatasetInfo
from segbench.errors import DataError, UserError
from segbench.models.predictions import PredictionsAdapter
from segbench.registry import MODELS

CPU = torch.device("cpu")
INFO = DatasetInfo(name="mine", num_classes=4, class_names=["a", "b", "c", "d"])


def _save_prediction(folder: Path, stem: str, values: np.ndarray, palette: bool = False) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(values.astype(np.uint8))
    if palette:
        image.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255, 9, 9, 9])
    image.save(folder / f"{stem}.png")


def _images(*shapes: tuple[int, int]) -> list[np.ndarray]:
    return [np.zeros((*shape, 3), dtype=np.uint8) for shape in shapes]


def test_reads_the_file_of_each_id_in_the_order_asked(tmp_path):
    first = np.array([[0, 1, 2], [3, 2, 1]])
    second = np.array([[3, 3], [0, 1], [2, 2]])
    _save_prediction(tmp_path, "a", first)
    _save_prediction(tmp_path, "b", second, palette=True)
    adapter = PredictionsAdapter(tmp_path, 4, CPU)
    preds = adapter.predict(_images((3, 2), (2, 3)), ["b", "a"])
    assert all(p.dtype == torch.int64 and p.device == CPU for p in preds)
    np.testing.assert_array_equal(preds[0].numpy(), second)
    np.testing.assert_array_equal(preds[1].numpy(), first)


def test_provenance(tmp_path):
    for stem in ["a", "b", "c"]:
        _save_prediction(tmp_path, stem, np.zeros((2, 2)))
    (tmp_path / "readme.txt").write_text("not a prediction")
    assert PredictionsAdapter(tmp_path, 4, CPU).provenance() == {
        "type": "predictions", "root": str(tmp_path), "num_files": 3}


def test_missing_file_names_the_expected_path_and_hints_at_naming(tmp_path):
    _save_prediction(tmp_path, "a_leftImg8bit", np.zeros((2, 2)))
    _save_prediction(tmp_path, "b_leftImg8bit", np.zeros((2, 2)))
    adapter = PredictionsAdapter(tmp_path, 4, CPU)
    with pytest.raises(DataError) as caught:
        adapter.predict(_images((2, 2)), ["a"])
    message = str(caught.value)
    assert str(tmp_path / "a.png") in message
    assert "2 other .png files" in message


def test_missing_file_in_an_empty_folder(tmp_path):
    with pytest.raises(DataError, match="no .png files") as caught:
        PredictionsAdapter(tmp_path, 4, CPU).predict(_images((2, 2)), ["a"])
    assert str(tmp_path / "a.png") in str(caught.value)


def test_prediction_of_another_size_than_its_image(tmp_path):
    _save_prediction(tmp_path, "a", np.zeros((3, 5)))
    adapter = PredictionsAdapter(tmp_path, 4, CPU)
    with pytest.raises(DataError) as caught:
        adapter.predict(_images((5, 3)), ["a"])
    message = str(caught.value)
    assert "3x5" in message and "5x3" in message and str(tmp_path / "a.png") in message


def test_builder_substitutes_the_dataset_name(tmp_path):
    _save_prediction(tmp_path / "preds" / "mine", "a", np.full((2, 2), 3))
    cfg = SimpleNamespace(name="saved", root=str(tmp_path / "preds" / "{dataset}"),
                          num_classes=None)
    adapter = MODELS["predictions"].build(cfg, INFO, CPU)
    assert isinstance(adapter, PredictionsAdapter)
    assert adapter.root == tmp_path / "preds" / "mine"
    assert adapter.num_classes == 4
    np.testing.assert_array_equal(adapter.predict(_images((2, 2)), ["a"])[0].numpy(), 3)


def test_builder_keeps_an_explicit_num_classes_and_a_path_root(tmp_path):
    cfg = SimpleNamespace(name="saved", root=tmp_path, num_classes=7)
    adapter = MODELS["predictions"].build(cfg, INFO, CPU)
    assert adapter.num_classes == 7 and adapter.root == tmp_path


def test_builder_rejects_a_missing_folder(tmp_path):
    template = str(tmp_path / "preds" / "{dataset}")
    cfg = SimpleNamespace(name="saved", root=template, num_classes=None)
    with pytest.raises(UserError) as caught:
        MODELS["predictions"].build(cfg, INFO, CPU)
    message = str(caught.value)
    assert str(tmp_path / "preds" / "mine") in message and template in message
