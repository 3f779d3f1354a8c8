import pickle
import time
from types import SimpleNamespace

import numpy as np
import pytest

from segbench.data.synthetic import CLASS_NAMES, SyntheticDataset
from segbench.registry import DATASETS

K = len(CLASS_NAMES)


def samples(ds: SyntheticDataset) -> list:
    return [ds.load(i) for i in range(len(ds))]


def test_same_seed_and_index_give_identical_arrays_whatever_the_dataset_size():
    small, large = SyntheticDataset(num_images=4, seed=3), SyntheticDataset(num_images=50, seed=3)
    for i in range(4):
        a, b = small.load(i), large.load(i)
        assert a.id == b.id == f"synth_{i:05d}"
        np.testing.assert_array_equal(a.image, b.image)
        np.testing.assert_array_equal(a.label, b.label)


def test_different_seeds_and_indices_differ():
    a, b = SyntheticDataset(seed=0).load(0), SyntheticDataset(seed=1).load(0)
    assert not np.array_equal(a.image, b.image)
    assert not np.array_equal(a.label, b.label)
    assert not np.array_equal(SyntheticDataset(seed=0).load(1).image, a.image)


def test_shapes_dtypes_and_ids():
    ds = SyntheticDataset(num_images=3)
    assert len(ds) == 3
    assert ds.ids() == ["synth_00000", "synth_00001", "synth_00002"]
    sample = ds[2]
    assert sample.id == "synth_00002"
    assert sample.image.shape == (64, 128, 3) and sample.image.dtype == np.uint8
    assert sample.label.shape == (64, 128) and sample.label.dtype == np.int64
    with pytest.raises(IndexError):
        ds.load(3)


def test_info():
    info = SyntheticDataset(name="shapes").info
    assert info.name == "shapes"
    assert info.num_classes == K == len(info.class_names) == len(info.palette)
    assert info.ignore_index == 255


def test_labels_cover_every_class_and_ignore_and_nothing_else():
    labels = np.stack([s.label for s in samples(SyntheticDataset(num_images=16))])
    values = set(np.unique(labels).tolist())
    assert values <= set(range(K)) | {255}
    assert values == set(range(K)) | {255}
    assert (labels == 0).mean() < 0.9  # objects are not a rarity


def test_backgrounds_are_textured_not_flat():
    for sample in samples(SyntheticDataset(num_images=4)):
        background = sample.image[sample.label == 0].astype(float)
        assert background.std(axis=0).min() > 3


def test_fingerprint_depends_on_every_parameter_but_not_the_name():
    base = dict(num_images=8, height=64, width=128, seed=0)
    reference = SyntheticDataset(**base).fingerprint()
    assert SyntheticDataset(name="other", **base).fingerprint() == reference
    for key, value in [("num_images", 9), ("height", 65), ("width", 127), ("seed", 1)]:
        assert SyntheticDataset(**{**base, key: value}).fingerprint() != reference, key


def test_odd_sizes():
    for height, width in [(61, 97), (7, 5)]:
        for sample in samples(SyntheticDataset(num_images=4, height=height, width=width)):
            assert sample.image.shape == (height, width, 3)
            assert sample.label.shape == (height, width)
            assert set(np.unique(sample.label).tolist()) <= set(range(K)) | {255}


def test_cheap_and_pickleable():
    ds = SyntheticDataset(num_images=32, seed=7)
    start = time.perf_counter()
    samples(ds)
    assert (time.perf_counter() - start) / 32 < 0.05  # a few ms each; loose for a shared CPU
    clone = pickle.loads(pickle.dumps(ds))
    np.testing.assert_array_equal(clone.load(5).image, ds.load(5).image)


def test_registered_builder():
    cfg = SimpleNamespace(name="shapes", num_images=5, height=61, width=97, seed=4)
    ds = DATASETS["synthetic"].build(cfg)
    assert isinstance(ds, SyntheticDataset)
    assert (ds.info.name, len(ds), ds.load(0).label.shape) == ("shapes", 5, (61, 97))
    assert ds.fingerprint() == SyntheticDataset(num_images=5, height=61, width=97, seed=4).fingerprint()
