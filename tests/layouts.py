"""Miniature copies of the standard datasets' folder layouts, generated in a test's tmp_path."""

from pathlib import Path

import numpy as np
from PIL import Image

CITIES = {"frankfurt": ["000000_000294", "000000_000576"], "lindau": ["000000_000019"]}
# label id -> train id, the official Cityscapes table (ids not listed are ignored)
TRAIN_TO_ID = np.array([7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33])


def to_train_ids(label_ids: np.ndarray) -> np.ndarray:
    lut = np.full(256, 255)
    lut[TRAIN_TO_ID] = np.arange(19)
    return lut[label_ids]


def save_rgb(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image.astype(np.uint8)).save(path)


def save_grey(path: Path, values: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(values.astype(np.uint8), mode="L").save(path)


def make_cityscapes(root: Path, train_ids: bool, size: tuple[int, int] = (12, 20),
                    seed: int = 0) -> dict[str, np.ndarray]:
    """Random images and labelIds drawn from every id 0..33; returns the labelIds by image id."""
    rng = np.random.default_rng(seed)
    label_ids = {}
    for city, frames in CITIES.items():
        for frame in frames:
            stem = f"{city}_{frame}"
            save_rgb(root / "leftImg8bit" / "val" / city / f"{stem}_leftImg8bit.png",
                     rng.integers(0, 255, (*size, 3)))
            ids = rng.integers(0, 34, size)
            save_grey(root / "gtFine" / "val" / city / f"{stem}_gtFine_labelIds.png", ids)
            if train_ids:
                save_grey(root / "gtFine" / "val" / city / f"{stem}_gtFine_labelTrainIds.png",
                          to_train_ids(ids))
            label_ids[f"{stem}_leftImg8bit"] = ids
    return label_ids
