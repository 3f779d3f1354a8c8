import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segbench.images import read_image, read_label, write_label
from segbench.errors import DataError

RNG = np.random.default_rng(0)


def _save(path: Path, image: Image.Image, **kwargs) -> Path:
    image.save(path, **kwargs)
    return path


def _noise_png_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(RNG.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


# --- read_label ---------------------------------------------------------------------

def test_palette_label_is_read_as_indices_not_colours(tmp_path):
    indices = np.array([[0, 1, 2], [2, 1, 0]], dtype=np.uint8)
    image = Image.fromarray(indices)
    image.putpalette([10, 20, 30, 200, 0, 0, 0, 200, 0])
    path = _save(tmp_path / "p.png", image)
    assert Image.open(path).mode == "P"
    label = read_label(path)
    assert label.dtype == np.int64
    np.testing.assert_array_equal(label, indices)


def test_grey_label_values(tmp_path):
    values = np.array([[0, 7, 255], [19, 3, 254]], dtype=np.uint8)
    path = _save(tmp_path / "l.png", Image.fromarray(values))
    np.testing.assert_array_equal(read_label(path), values)


def test_16bit_label_values(tmp_path):
    values = np.array([[0, 300], [1000, 65535]], dtype=np.uint16)
    path = _save(tmp_path / "i16.png", Image.fromarray(values))
    assert Image.open(path).mode.startswith("I")
    label = read_label(path)
    assert label.dtype == np.int64
    np.testing.assert_array_equal(label, values)


def test_32bit_label_values(tmp_path):
    values = np.array([[0, 70000], [5, 123456]], dtype=np.int32)
    path = _save(tmp_path / "i32.tif", Image.fromarray(values))
    np.testing.assert_array_equal(read_label(path), values)


@pytest.mark.parametrize("mode", ["RGB", "RGBA"])
def test_colour_label_is_an_error_naming_the_file(tmp_path, mode):
    path = _save(tmp_path / "colour.png", Image.new(mode, (4, 3)))
    with pytest.raises(DataError, match="single-channel") as caught:
        read_label(path)
    assert str(path) in str(caught.value)


# --- read_image ---------------------------------------------------------------------

def test_rgb_image_round_trip(tmp_path):
    pixels = RNG.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    image = read_image(_save(tmp_path / "rgb.png", Image.fromarray(pixels)))
    assert image.dtype == np.uint8
    np.testing.assert_array_equal(image, pixels)


def test_rgba_image_drops_alpha(tmp_path):
    pixels = RNG.integers(0, 256, (5, 7, 4), dtype=np.uint8)
    image = read_image(_save(tmp_path / "rgba.png", Image.fromarray(pixels)))
    np.testing.assert_array_equal(image, pixels[:, :, :3])


def test_grey_image_becomes_three_equal_channels(tmp_path):
    grey = RNG.integers(0, 256, (5, 7), dtype=np.uint8)
    image = read_image(_save(tmp_path / "grey.png", Image.fromarray(grey)))
    assert image.shape == (5, 7, 3)
    for channel in range(3):
        np.testing.assert_array_equal(image[:, :, channel], grey)


def test_palette_image_is_read_as_colours(tmp_path):
    image = Image.fromarray(np.array([[0, 1]], dtype=np.uint8))
    image.putpalette([10, 20, 30, 200, 0, 0])
    pixels = read_image(_save(tmp_path / "p.png", image))
    np.testing.assert_array_equal(pixels, [[[10, 20, 30], [200, 0, 0]]])


def test_16bit_grey_image_is_scaled_to_8_bits(tmp_path):
    grey = np.array([[0, 257, 32896, 65535]], dtype=np.uint16)
    pixels = read_image(_save(tmp_path / "g16.png", Image.fromarray(grey)))
    np.testing.assert_array_equal(pixels[:, :, 0], [[0, 1, 128, 255]])
    assert pixels.shape == (1, 4, 3)


def test_exif_orientation_is_not_applied(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees": a reader applying it would return 8x6
    path = _save(tmp_path / "rotated.jpg", Image.new("RGB", (8, 6), (90, 90, 90)), exif=exif)
    assert Image.open(path).getexif()[0x0112] == 6
    assert read_image(path).shape == (6, 8, 3)


# --- bad files ----------------------------------------------------------------------

@pytest.mark.parametrize("reader", [read_image, read_label])
def test_truncated_file_is_a_data_error_naming_it(tmp_path, reader):
    data = _noise_png_bytes()
    path = tmp_path / "truncated.png"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError) as caught:
        reader(path)
    assert str(path) in str(caught.value)


@pytest.mark.parametrize("reader", [read_image, read_label])
def test_not_an_image_is_a_data_error_naming_it(tmp_path, reader):
    path = tmp_path / "garbage.png"
    path.write_bytes(b"this is not a png")
    with pytest.raises(DataError) as caught:
        reader(path)
    assert str(path) in str(caught.value)


@pytest.mark.parametrize("reader", [read_image, read_label])
def test_missing_file_is_a_data_error_naming_it(tmp_path, reader):
    path = tmp_path / "absent.png"
    with pytest.raises(DataError, match="not found") as caught:
        reader(path)
    assert str(path) in str(caught.value)


# --- write_label --------------------------------------------------------------------

def test_write_label_with_palette(tmp_path):
    label = np.array([[0, 1], [2, 255]], dtype=np.int64)
    palette = [(128, 64, 128), (244, 35, 232), (70, 70, 70)]
    path = tmp_path / "pred.png"
    write_label(path, label, palette)
    written = Image.open(path)
    assert written.mode == "P"
    assert written.getpalette()[:9] == [128, 64, 128, 244, 35, 232, 70, 70, 70]
    np.testing.assert_array_equal(np.asarray(written), label)
    np.testing.assert_array_equal(read_label(path), label)


def test_write_label_grey_without_palette(tmp_path):
    label = np.array([[0, 1], [2, 200]], dtype=np.int32)
    path = tmp_path / "pred.png"
    write_label(path, label)
    assert Image.open(path).mode == "L"
    np.testing.assert_array_equal(read_label(path), label)


def test_write_label_16bit_when_values_exceed_255(tmp_path):
    label = np.array([[0, 256], [1000, 65535]], dtype=np.int64)
    path = tmp_path / "pred.png"
    write_label(path, label, palette=[(0, 0, 0)])
    assert Image.open(path).mode.startswith("I")
    np.testing.assert_array_equal(np.asarray(Image.open(path)), label)


def test_write_label_replaces_and_leaves_no_temporary_file(tmp_path):
    path = tmp_path / "pred.png"
    write_label(path, np.zeros((2, 3), dtype=np.uint8))
    write_label(path, np.full((4, 5), 3, dtype=np.uint8))
    np.testing.assert_array_equal(read_label(path), np.full((4, 5), 3))
    assert [p.name for p in tmp_path.iterdir()] == ["pred.png"]


@pytest.mark.parametrize("label", [
    np.array([[-1, 0]]),
    np.array([[0, 70000]]),
    np.zeros((2, 2, 3), dtype=np.uint8),
    np.zeros((2, 2), dtype=np.float32),
])
def test_write_label_rejects_what_a_png_of_indices_cannot_hold(tmp_path, label):
    with pytest.raises(ValueError):
        write_label(tmp_path / "bad.png", label)
    assert list(tmp_path.iterdir()) == []
