"""Procedural shapes on textured backgrounds: a dataset that needs no download.

Image ``i`` is drawn from ``numpy.random.default_rng([seed, i])`` only, so it
does not depend on how many images the dataset has, nor on any global state.
Colours are class-informative but jittered (and sometimes random), so a model
has to use shape too. Label 255 marks a 1-pixel band on the outline of some
objects (as Pascal VOC does) and, in some images, a "void" blob.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import numpy as np

from pydantic import Field

from segbench.config import DatasetBase
from segbench.types import DatasetInfo
from segbench.data.base import Sample, SegDataset
from segbench.registry import register_dataset

GENERATOR_VERSION = "synthetic-v1"
IGNORE_INDEX = 255
CLASS_NAMES = ["background", "disc", "rectangle", "triangle", "ring", "bar"]
PALETTE = [(0, 0, 0), (128, 0, 0), (0, 128, 0), (128, 128, 0), (0, 0, 128), (128, 0, 128)]
# The typical colour of each object class in the images (not the palette).
CLASS_COLOURS = np.array(
    [(0, 0, 0), (215, 60, 50), (60, 175, 75), (50, 95, 215), (225, 195, 45), (170, 70, 200)],
    dtype=np.float32,
)
RANDOM_COLOUR_P = 0.2
OUTLINE_P = 0.4
VOID_P = 0.3

Grid = tuple[np.ndarray, np.ndarray]


def _rotated(grid: Grid, cy: float, cx: float, angle: float) -> Grid:
    """Coordinates relative to (cy, cx) in a frame rotated by ``angle``."""
    yy, xx = grid
    dy, dx = yy - cy, xx - cx
    c, s = np.cos(angle), np.sin(angle)
    return -dx * s + dy * c, dx * c + dy * s


def _disc(rng: np.random.Generator, grid: Grid, cy: float, cx: float, size: float) -> np.ndarray:
    yy, xx = grid
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= size**2


def _rectangle(rng: np.random.Generator, grid: Grid, cy: float, cx: float, size: float) -> np.ndarray:
    v, u = _rotated(grid, cy, cx, rng.uniform(0, np.pi / 2))
    return (np.abs(u) <= size) & (np.abs(v) <= size * rng.uniform(0.55, 1.0))


def _triangle(rng: np.random.Generator, grid: Grid, cy: float, cx: float, size: float) -> np.ndarray:
    yy, xx = grid
    angles = rng.uniform(0, 2 * np.pi) + np.array([0, 2, 4]) * np.pi / 3 + rng.uniform(-0.3, 0.3, 3)
    radius = size * rng.uniform(1.0, 1.3)
    py, px = cy + radius * np.sin(angles), cx + radius * np.cos(angles)
    # Inside: on the same side of all three edges, whichever way the vertices turn.
    sides = np.stack([(px[b] - px[a]) * (yy - py[a]) - (py[b] - py[a]) * (xx - px[a])
                      for a, b in ((0, 1), (1, 2), (2, 0))])
    return (sides >= 0).all(axis=0) | (sides <= 0).all(axis=0)


def _ring(rng: np.random.Generator, grid: Grid, cy: float, cx: float, size: float) -> np.ndarray:
    yy, xx = grid
    d2 = (yy - cy) ** 2 + (xx - cx) ** 2
    inner = size * rng.uniform(0.45, 0.65)
    return (d2 <= size**2) & (d2 >= inner**2)


def _bar(rng: np.random.Generator, grid: Grid, cy: float, cx: float, size: float) -> np.ndarray:
    v, u = _rotated(grid, cy, cx, rng.uniform(0, np.pi))
    half_width = max(1.5, size * rng.uniform(0.15, 0.25))
    return (np.abs(u) <= size * rng.uniform(1.3, 2.0)) & (np.abs(v) <= half_width)


SHAPES: dict[int, Callable[..., np.ndarray]] = {1: _disc, 2: _rectangle, 3: _triangle, 4: _ring, 5: _bar}


def _background(rng: np.random.Generator, grid: Grid) -> np.ndarray:
    """A gradient between two random colours, sometimes with stripes; float HxWx3."""
    yy, xx = grid
    h, w = yy.shape
    angle = rng.uniform(0, 2 * np.pi)
    ramp = (yy * np.sin(angle) + xx * np.cos(angle)) / max(h, w)
    ramp = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1e-6)
    c1, c2 = rng.uniform(30, 225, 3), rng.uniform(30, 225, 3)
    image = c1 + ramp[..., None] * (c2 - c1)
    if rng.random() < 0.5:
        phi = rng.uniform(0, np.pi)
        period = rng.uniform(4, 24)
        stripes = np.sin(2 * np.pi * (xx * np.cos(phi) + yy * np.sin(phi)) / period + rng.uniform(0, 2 * np.pi))
        image += rng.uniform(10, 40) * stripes[..., None]
    return image


def _object_colour(rng: np.random.Generator, cls: int) -> np.ndarray:
    if rng.random() < RANDOM_COLOUR_P:
        return rng.uniform(20, 235, 3)
    return CLASS_COLOURS[cls] + rng.normal(0, 25, 3)


def _shading(rng: np.random.Generator, grid: Grid) -> np.ndarray:
    """A gentle linear brightness ramp, HxWx1, so objects are not flat."""
    yy, xx = grid
    angle = rng.uniform(0, 2 * np.pi)
    ramp = (yy * np.sin(angle) + xx * np.cos(angle)) / max(yy.shape)
    return (rng.uniform(-30, 30) * ramp)[..., None]


def _blocky_noise(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Random colours in 4x4 cells: the texture of a void blob."""
    h, w = shape
    cells = rng.uniform(0, 255, ((h + 3) // 4, (w + 3) // 4, 3))
    return np.repeat(np.repeat(cells, 4, axis=0), 4, axis=1)[:h, :w]


def _inner_outline(mask: np.ndarray) -> np.ndarray:
    """Pixels of ``mask`` with a 4-neighbour outside it; the image frame is not an outline."""
    padded = np.pad(mask, 1, mode="edge")
    interior = (padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:])
    return mask & ~interior


def generate(seed: int, index: int, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Image ``index`` of generator ``seed``: (uint8 HxWx3 RGB, uint8 HxW label)."""
    rng = np.random.default_rng([seed, index])
    grid = np.mgrid[0:height, 0:width].astype(np.float32)
    grid = (grid[0], grid[1])
    image = _background(rng, grid)
    label = np.zeros((height, width), dtype=np.uint8)
    outlines = np.zeros((height, width), dtype=bool)
    num_objects = int(rng.integers(3, 9))
    void_at = int(rng.integers(0, num_objects + 1)) if rng.random() < VOID_P else -1
    for k in range(num_objects + 1):
        if k == void_at:
            _paint_void(rng, grid, image, label)
        if k == num_objects:
            break
        cls = int(rng.integers(1, len(CLASS_NAMES)))
        size = min(height, width) * float(np.exp(rng.uniform(np.log(0.1), np.log(0.45))))
        cy, cx = rng.uniform(-0.1, 1.1) * height, rng.uniform(-0.1, 1.1) * width
        mask = SHAPES[cls](rng, grid, cy, cx, size)
        image[mask] = (_object_colour(rng, cls) + _shading(rng, grid))[mask]
        label[mask] = cls
        outlines &= ~mask
        if rng.random() < OUTLINE_P:
            outlines |= _inner_outline(mask)
    label[outlines] = IGNORE_INDEX
    image += rng.normal(0, rng.uniform(4, 16), image.shape)
    return np.clip(image, 0, 255).astype(np.uint8), label


def _paint_void(rng: np.random.Generator, grid: Grid, image: np.ndarray, label: np.ndarray) -> None:
    """An ellipse of blocky noise labelled ignore; later objects may cover it."""
    h, w = label.shape
    v, u = _rotated(grid, rng.uniform(0, h), rng.uniform(0, w), rng.uniform(0, np.pi))
    a, b = min(h, w) * rng.uniform(0.08, 0.25, 2)
    mask = (u / a) ** 2 + (v / b) ** 2 <= 1
    image[mask] = _blocky_noise(rng, (h, w))[mask]
    label[mask] = IGNORE_INDEX


class SyntheticDataset(SegDataset):
    """``num_images`` procedural scenes of ``height`` x ``width``, reproducible from ``seed``."""

    def __init__(self, name: str = "synthetic", num_images: int = 32, height: int = 64,
                 width: int = 128, seed: int = 0) -> None:
        self.num_images = num_images
        self.height = height
        self.width = width
        self.seed = seed
        self.info = DatasetInfo(name=name, num_classes=len(CLASS_NAMES), class_names=list(CLASS_NAMES),
                                ignore_index=IGNORE_INDEX, palette=list(PALETTE))

    def ids(self) -> list[str]:
        return [f"synth_{i:05d}" for i in range(self.num_images)]

    def load(self, index: int) -> Sample:
        if not 0 <= index < self.num_images:
            raise IndexError(f"index {index} out of range for {self.num_images} images")
        image, label = generate(self.seed, index, self.height, self.width)
        return Sample(id=f"synth_{index:05d}", image=image, label=label.astype(np.int64))

    def fingerprint_parts(self) -> list[str]:
        return [GENERATOR_VERSION, f"num_images={self.num_images}", f"height={self.height}",
                f"width={self.width}", f"seed={self.seed}"]


class SyntheticDatasetConfig(DatasetBase):
    type: Literal["synthetic"]
    num_images: int = Field(32, ge=1)
    height: int = Field(64, ge=8)
    width: int = Field(128, ge=8)
    seed: int = 0


@register_dataset("synthetic", config=SyntheticDatasetConfig,
                  describe="procedural shapes on textured backgrounds; needs no download")
def build_synthetic(cfg: SyntheticDatasetConfig) -> SyntheticDataset:
    """Build from a suite entry with ``name, num_images, height, width, seed``."""
    return SyntheticDataset(name=cfg.name, num_images=cfg.num_images, height=cfg.height,
                            width=cfg.width, seed=cfg.seed)
