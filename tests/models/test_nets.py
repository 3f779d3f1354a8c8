import hashlib

import numpy as np
import pytest
import scipy.ndimage
import torch
import torch.nn.functional as F

from segbench.data.synthetic import CLASS_NAMES, SyntheticDataset
from segbench.models import nets
from segbench.models.nets import ARCHS, demo_weights_path, load_demo_weights

K = len(CLASS_NAMES)
MMSEG_MEAN = [123.675, 116.28, 103.53]
MMSEG_STD = [58.395, 57.12, 57.375]
# On the 8 images below the shipped models score 0.965-0.975; all-background scores 0.846, and
# the same weights fed BGR or /255 inputs score 0.85-0.92.
MIN_PIXEL_ACCURACY = 0.94


def test_archs():
    assert set(ARCHS) == {"fcn", "unet", "deeplabv3", "pspnet"}


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_forward_on_an_odd_size(arch):
    torch.manual_seed(0)
    net = ARCHS[arch](K).eval()
    with torch.no_grad():
        out = net(torch.randn(1, 3, 61, 97))
    expected = (61, 97) if arch == "unet" else (8, 13)  # full resolution, or stride 8 rounded up
    assert out.shape == (1, K, *expected)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_every_parameter_gets_a_gradient(arch):
    net = ARCHS[arch](3).train()
    net(torch.randn(2, 3, 33, 47)).square().mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_shipped_weights_load_strictly_with_metadata(arch):
    assert demo_weights_path(arch).stat().st_size < 2_000_000
    net, meta = load_demo_weights(arch)
    assert not net.training
    assert meta["arch"] == arch
    assert meta["num_classes"] == K and meta["class_names"] == CLASS_NAMES
    assert meta["mean"] == MMSEG_MEAN and meta["std"] == MMSEG_STD
    assert meta["dataset"] == "synthetic" and meta["train_seed"] != 0 and meta["steps"] > 0
    assert meta["sha256"] == hashlib.sha256(demo_weights_path(arch).read_bytes()).hexdigest()


def predict(arch: str, images: np.ndarray) -> np.ndarray:
    net, meta = load_demo_weights(arch)
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float()
    x = (x - torch.tensor(meta["mean"]).view(1, 3, 1, 1)) / torch.tensor(meta["std"]).view(1, 3, 1, 1)
    with torch.no_grad():
        logits = F.interpolate(net(x), size=images.shape[1:3], mode="bilinear", align_corners=False)
    return logits.argmax(1).numpy()


@pytest.fixture(scope="module")
def seed0_images() -> tuple[np.ndarray, np.ndarray]:
    ds = SyntheticDataset(num_images=8, seed=0)
    return np.stack([ds.load(i).image for i in range(8)]), np.stack([ds.load(i).label for i in range(8)])


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_shipped_model_segments_synthetic_images(arch, seed0_images):
    images, labels = seed0_images
    pred = predict(arch, images)
    valid = labels != 255
    assert (pred[valid] == labels[valid]).mean() > MIN_PIXEL_ACCURACY


def test_unet_is_sharper_than_fcn_near_boundaries(seed0_images):
    images, labels = seed0_images
    # Pixels with a 4-neighbour of another label value.
    cross = scipy.ndimage.generate_binary_structure(2, 1)[None]
    lowest, highest = (f(labels, footprint=cross) for f in (scipy.ndimage.minimum_filter, scipy.ndimage.maximum_filter))
    edges = (lowest != highest) & (labels != 255)
    accuracy = {arch: (predict(arch, images)[edges] == labels[edges]).mean() for arch in ("unet", "fcn")}
    assert accuracy["unet"] > accuracy["fcn"] + 0.08  # shipped: 0.81 vs 0.68


def test_missing_weights_name_the_path_and_the_script(tmp_path, monkeypatch):
    monkeypatch.setattr(nets, "WEIGHTS_DIR", tmp_path)
    with pytest.raises(FileNotFoundError, match=r"unet_demo\.safetensors.*scripts/train_demo_models\.py"):
        load_demo_weights("unet")
