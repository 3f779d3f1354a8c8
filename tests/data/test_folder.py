import os
import pickle
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch.utils.data
from PIL import Image

from segbench.data.folder import FolderDataset
from segbench.errors import DataError, UserError
from segbench.registry import DATASETS


def _pixels(stem: str, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic image and label for ``stem``, so tests can recompute what was written."""
    rng = np.random.default_rng(sum(stem.encode()))
    image = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
    label = rng.integers(0, 3, shape, dtype=np.uint8)
    return image, label


def _write(root: Path, stem: str, shape=(4, 6), ext=".png", label_shape=None,
           image=True, label=True) -> None:
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "labels").mkdir(parents=True, exist_ok=True)
    pixels, indices = _pixels(stem, shape)
    if image:
        Image.fromarray(pixels).save(root / "images" / f"{stem}{ext}")
    if label:
        if label_shape is not None:
            indices = np.zeros(label_shape, dtype=np.uint8)
        Image.fromarray(indices).save(root / "labels" / f"{stem}.png")


def _dataset(root: Path, **kwargs) -> FolderDataset:
    return FolderDataset(name="mine", root=root, num_classes=3, **kwargs)


def test_pairs_are_read_in_sorted_stem_order(tmp_path):
    for stem in ["b", "c", "a"]:
        _write(tmp_path, stem)
    dataset = _dataset(tmp_path)
    assert dataset.ids() == ["a", "b", "c"]
    assert len(dataset) == 3
    for index, stem in enumerate(["a", "b", "c"]):
        sample = dataset[index]
        image, label = _pixels(stem, (4, 6))
        assert sample.id == stem
        assert sample.image.dtype == np.uint8 and sample.label.dtype == np.int64
        np.testing.assert_array_equal(sample.image, image)
        np.testing.assert_array_equal(sample.label, label)


def test_info_and_default_class_names(tmp_path):
    _write(tmp_path, "a")
    info = _dataset(tmp_path, ignore_index=0).info
    assert (info.name, info.num_classes, info.ignore_index) == ("mine", 3, 0)
    assert info.class_names == ["class_0", "class_1", "class_2"]
    named = _dataset(tmp_path, class_names=["road", "car", "sky"])
    assert named.info.class_names == ["road", "car", "sky"]


def test_wrong_number_of_class_names(tmp_path):
    _write(tmp_path, "a")
    with pytest.raises(UserError, match="2 class names"):
        _dataset(tmp_path, class_names=["road", "car"])


def test_images_of_any_extension_and_other_files_ignored(tmp_path):
    _write(tmp_path, "a", ext=".png")
    _write(tmp_path, "b", ext=".JPG")
    _write(tmp_path, "c", ext=".bmp")
    (tmp_path / "images" / "notes.txt").write_text("not an image")
    (tmp_path / "images" / "._a.png").write_bytes(b"macOS metadata")
    (tmp_path / "images" / "nested").mkdir()
    dataset = _dataset(tmp_path)
    assert dataset.ids() == ["a", "b", "c"]
    assert dataset[1].image.shape == (4, 6, 3)


def test_custom_folder_names(tmp_path):
    _write(tmp_path, "a")
    (tmp_path / "images").rename(tmp_path / "img")
    (tmp_path / "labels").rename(tmp_path / "ann")
    dataset = _dataset(tmp_path, images_dir="img", labels_dir="ann")
    assert dataset.ids() == ["a"]


def test_missing_root(tmp_path):
    root = tmp_path / "nowhere"
    with pytest.raises(UserError) as caught:
        _dataset(root)
    assert str(root) in str(caught.value)


@pytest.mark.parametrize("missing", ["images", "labels"])
def test_missing_subfolder(tmp_path, missing):
    _write(tmp_path, "a")
    for path in (tmp_path / missing).iterdir():
        path.unlink()
    (tmp_path / missing).rmdir()
    with pytest.raises(UserError, match=f"{missing}/") as caught:
        _dataset(tmp_path)
    assert str(tmp_path / missing) in str(caught.value)


def test_no_images(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    with pytest.raises(DataError, match="no images") as caught:
        _dataset(tmp_path)
    assert str(tmp_path / "images") in str(caught.value)


def test_unpaired_files_list_five_stems_and_the_count(tmp_path):
    _write(tmp_path, "matched")
    no_label = [f"img{i}" for i in range(7)]
    for stem in no_label:
        _write(tmp_path, stem, label=False)
    _write(tmp_path, "orphan", image=False)
    with pytest.raises(DataError) as caught:
        _dataset(tmp_path)
    message = str(caught.value)
    assert "7 images have no label" in message
    assert all(stem in message for stem in no_label[:5])
    assert no_label[5] not in message and "7 in all" in message
    assert "1 labels have no image" in message and "orphan" in message
    assert "matched" not in message
    assert str(tmp_path) in message


def test_same_stem_with_two_extensions(tmp_path):
    _write(tmp_path, "a", ext=".png")
    _write(tmp_path, "a", ext=".jpg")
    with pytest.raises(DataError, match="a.jpg, a.png"):
        _dataset(tmp_path)


def test_image_and_label_of_different_sizes(tmp_path):
    _write(tmp_path, "a", shape=(4, 6), label_shape=(4, 5))
    dataset = _dataset(tmp_path)
    with pytest.raises(DataError) as caught:
        dataset[0]
    message = str(caught.value)
    assert str(tmp_path / "images" / "a.png") in message
    assert str(tmp_path / "labels" / "a.png") in message
    assert "4x6" in message and "4x5" in message


def test_corrupt_file_fails_on_load(tmp_path):
    _write(tmp_path, "a")
    (tmp_path / "labels" / "a.png").write_bytes(b"broken")
    dataset = _dataset(tmp_path)
    with pytest.raises(DataError, match="labels"):
        dataset[0]


def test_fingerprint_is_stable_and_tracks_changes(tmp_path):
    _write(tmp_path, "a")
    _write(tmp_path, "b")
    first = _dataset(tmp_path).fingerprint()
    assert _dataset(tmp_path).fingerprint() == first

    label = tmp_path / "labels" / "b.png"
    stat = label.stat()
    os.utime(label, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    touched = _dataset(tmp_path).fingerprint()
    assert touched != first

    Image.fromarray(np.zeros((4, 6), dtype=np.uint8)).save(label)
    os.utime(label, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert _dataset(tmp_path).fingerprint() not in (first, touched)

    _write(tmp_path, "c")
    assert len({_dataset(tmp_path).fingerprint(), first, touched}) == 3


def test_fingerprint_does_not_depend_on_where_the_folder_is(tmp_path):
    _write(tmp_path / "one", "a")
    before = _dataset(tmp_path / "one").fingerprint()
    (tmp_path / "one").rename(tmp_path / "two")  # keeps sizes and mtimes
    assert _dataset(tmp_path / "two").fingerprint() == before


def test_pickle_and_dataloader_workers(tmp_path):
    stems = [f"s{i}" for i in range(6)]
    for stem in stems:
        _write(tmp_path, stem, shape=(3 + len(stem), 5))
    dataset = _dataset(tmp_path)
    assert pickle.loads(pickle.dumps(dataset)).ids() == stems

    loader = torch.utils.data.DataLoader(dataset, batch_size=2, num_workers=2, collate_fn=list)
    samples = [sample for batch in loader for sample in batch]
    assert [s.id for s in samples] == stems
    for sample in samples:
        np.testing.assert_array_equal(sample.label, _pixels(sample.id, sample.label.shape)[1])


def test_registered_builder(tmp_path):
    _write(tmp_path, "a")
    cfg = SimpleNamespace(name="mine", root=tmp_path, num_classes=3, ignore_index=255,
                          class_names=None)
    dataset = DATASETS["folder"].build(cfg)
    assert isinstance(dataset, FolderDataset)
    assert dataset.ids() == ["a"] and dataset.info.name == "mine"
