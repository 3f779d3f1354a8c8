"""Reading images and label maps from disk, and writing label maps as PNGs.

Images are returned exactly as stored: EXIF orientation is not applied, since
the labels of a dataset are aligned with the stored pixels.
"""

from __future__ import annotations

import colorsys
import io
from pathlib import Path

import numpy as np
from PIL import Image

from segbench.atomic import atomic_write_bytes
from segbench.errors import DataError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")

_INTEGER_GREY_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")
_LABEL_MODES = ("P", "L", "1", *_INTEGER_GREY_MODES)
# What PIL raises for a missing, unidentifiable, truncated or corrupt file.
_READ_ERRORS = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)


def _open(path: Path, what: str) -> Image.Image:
    """Open and fully decode ``path``: PIL decodes lazily, so errors would otherwise surface later."""
    try:
        image = Image.open(path)
        try:
            image.load()
        except BaseException:
            image.close()
            raise
    except FileNotFoundError:
        raise DataError(f"{what} file not found", source=str(path)) from None
    except _READ_ERRORS as exc:
        raise DataError(f"cannot read {what} file (corrupt or truncated?): {exc}",
                        source=str(path)) from exc
    return image


def read_image(path: Path) -> np.ndarray:
    """The image at ``path`` as uint8 HxWx3 RGB; alpha is dropped, 16-bit grey is scaled to 8 bits."""
    with _open(path, "image") as image:
        if image.mode == "F":
            raise DataError("floating-point images are not supported", source=str(path))
        if image.mode in _INTEGER_GREY_MODES:
            grey = np.asarray(image).astype(np.float64).clip(0, 65535) / 257.0
            return np.repeat(np.rint(grey).astype(np.uint8)[:, :, None], 3, axis=2)
        return np.asarray(image.convert("RGB"), dtype=np.uint8)


def read_label(path: Path) -> np.ndarray:
    """The label map at ``path`` as int64 HxW class indices (a palette PNG's indices, not its colours)."""
    with _open(path, "label") as image:
        if image.mode not in _LABEL_MODES:
            raise DataError(
                f"a label must be a single-channel (L, I;16) or palette (P) image of class "
                f"indices, got mode {image.mode}; convert colour-coded labels to indices first",
                source=str(path))
        return np.asarray(image).astype(np.int64)


def read_palette(path: Path, count: int) -> list[tuple[int, int, int]]:
    """The first ``count`` colours of a palette (mode P) label PNG; [] for any other label file.

    Only the header is read, and an unreadable file gives []: it fails later, when its label is read.
    """
    try:
        with Image.open(path) as image:
            colours = (image.getpalette() or []) if image.mode == "P" else []
    except _READ_ERRORS:
        return []
    triples = [tuple(colours[i:i + 3]) for i in range(0, len(colours) - 2, 3)]
    return triples[:count] if len(triples) >= count else []


def write_label(path: Path, label: np.ndarray,
                palette: list[tuple[int, int, int]] | None = None) -> None:
    """Write ``label`` (HxW non-negative integers) as a PNG of indices, atomically.

    A palette PNG when ``palette`` is given and every value is below 256, else
    8-bit grey when values fit, else 16-bit grey.
    """
    label = np.asarray(label)
    if label.ndim != 2 or label.dtype.kind not in "iu":
        raise ValueError(f"label must be a 2-D integer array, got {label.dtype} {label.shape}")
    if label.min() < 0 or label.max() > 65535:
        raise ValueError(f"label values must be in [0, 65535], got [{label.min()}, {label.max()}]")
    if palette is not None and len(palette) > 256:
        raise ValueError(f"a palette has at most 256 colours, got {len(palette)}")
    if label.max() < 256:
        image = Image.fromarray(label.astype(np.uint8))
        if palette is not None:
            # A full 256-colour palette: with a short one PIL writes fewer bits per pixel,
            # wrapping larger indices (255 would become 3 with a 4-colour palette).
            colours = [channel for colour in palette for channel in colour]
            image.putpalette(colours + [0] * (768 - len(colours)))
    else:
        image = Image.fromarray(label.astype(np.uint16))
    _save_atomically(image, Path(path))


def _save_atomically(image: Image.Image, path: Path) -> None:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    atomic_write_bytes(path, buffer.getvalue())


# Kelly's colours of maximum contrast, without white, black and grey (grey marks ignored pixels
# in pictures): the palette of datasets that bring none.
DISTINCT_PALETTE = [
    (243, 195, 0), (135, 86, 146), (243, 132, 0), (161, 202, 241), (190, 0, 50), (194, 178, 128),
    (0, 136, 86), (230, 143, 172), (0, 103, 165), (249, 147, 121), (96, 78, 151), (246, 166, 0),
    (179, 68, 108), (220, 211, 0), (136, 45, 23), (141, 182, 0), (101, 69, 34), (226, 88, 34),
    (43, 61, 38),
]


def distinct_palette(count: int) -> list[tuple[int, int, int]]:
    """``count`` fixed colours: Kelly's first, then hues a golden angle apart at alternating brightness."""
    colours = DISTINCT_PALETTE[:count]
    for i in range(count - len(colours)):
        hue = (i * 0.381966) % 1.0
        value = (0.95, 0.7, 0.5)[i % 3]
        colours.append(tuple(round(255 * c) for c in colorsys.hsv_to_rgb(hue, 0.85, value)))
    return colours
