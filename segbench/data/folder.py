"""A dataset in plain folders: ``root/images/<stem>.<ext>`` paired with ``root/labels/<stem>.png``."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from segbench.config import DatasetBase, SuitePath
from segbench.types import DatasetInfo
from segbench.data.files import FilePairsDataset, listed
from segbench.images import IMAGE_EXTENSIONS, read_palette
from segbench.errors import DataError, UserError
from segbench.registry import register_dataset

class FolderDataset(FilePairsDataset):
    """Flat folders (subfolders are not searched); ids are the sorted file stems.

    Hidden files (names starting with ".", such as macOS "._x.png") are skipped.
    Label values are not checked here: the runner checks them against ``num_classes``.
    """

    def __init__(self, name: str, root: Path, num_classes: int, ignore_index: int = 255,
                 class_names: list[str] | None = None, images_dir: str = "images",
                 labels_dir: str = "labels") -> None:
        root = Path(root)
        if class_names is not None and len(class_names) != num_classes:
            raise UserError(f"dataset {name!r}: {len(class_names)} class names given "
                            f"for num_classes={num_classes}", source=str(root))
        if class_names is None:
            class_names = [f"class_{i}" for i in range(num_classes)]
        images = _files_by_stem(_folder(root, images_dir), IMAGE_EXTENSIONS)
        labels = _files_by_stem(_folder(root, labels_dir), (".png",))
        _check_pairs(root, images_dir, labels_dir, images, labels)
        # Palette PNG labels bring their own colours: pictures of predictions use them.
        palette = read_palette(labels[min(labels)], num_classes)
        info = DatasetInfo(name=name, num_classes=num_classes, class_names=class_names,
                           ignore_index=ignore_index, palette=palette)
        super().__init__(info, root, [(stem, images[stem], labels[stem]) for stem in sorted(images)])


def _folder(root: Path, subdir: str) -> Path:
    if not root.is_dir():
        raise UserError(f"dataset folder not found (expected a folder holding {subdir}/)",
                        source=str(root))
    folder = root / subdir
    if not folder.is_dir():
        raise UserError(f"folder {subdir}/ not found in the dataset folder", source=str(folder))
    return folder


def _files_by_stem(folder: Path, extensions: tuple[str, ...]) -> dict[str, Path]:
    """The files of ``folder`` with one of ``extensions``; a stem found twice is an error."""
    found: dict[str, list[Path]] = {}
    for path in folder.iterdir():
        if path.name.startswith(".") or path.suffix.lower() not in extensions:
            continue
        if path.is_file():
            found.setdefault(path.stem, []).append(path)
    duplicates = sorted(stem for stem, paths in found.items() if len(paths) > 1)
    if duplicates:
        names = [", ".join(sorted(p.name for p in found[stem])) for stem in duplicates]
        raise DataError(f"{len(duplicates)} file stems appear with several extensions, so the "
                        f"pairing is ambiguous: {listed(names)}", source=str(folder))
    return {stem: paths[0] for stem, paths in found.items()}


def _check_pairs(root: Path, images_dir: str, labels_dir: str,
                 images: dict[str, Path], labels: dict[str, Path]) -> None:
    if not images:
        raise DataError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in {images_dir}/ "
                        f"(subfolders are not searched)", source=str(root / images_dir))
    problems = []
    no_label = sorted(images.keys() - labels.keys())
    if no_label:
        problems.append(f"{len(no_label)} images have no label {labels_dir}/<stem>.png: "
                        f"{listed(no_label)}")
    no_image = sorted(labels.keys() - images.keys())
    if no_image:
        problems.append(f"{len(no_image)} labels have no image {images_dir}/<stem>.<ext>: "
                        f"{listed(no_image)}")
    if problems:
        raise DataError("images and labels must have matching file stems; " + "; ".join(problems),
                        source=str(root))


class FolderDatasetConfig(DatasetBase):
    type: Literal["folder"]
    root: SuitePath
    num_classes: int = Field(ge=1)
    ignore_index: int = 255
    class_names: list[str] | None = None

    @model_validator(mode="after")
    def _names_match(self) -> "FolderDatasetConfig":
        if self.class_names is not None and len(self.class_names) != self.num_classes:
            raise ValueError(f"class_names has {len(self.class_names)} names "
                             f"but num_classes is {self.num_classes}")
        return self


@register_dataset("folder", config=FolderDatasetConfig, eval_ref="root",
                  describe="your own data: root/images/<stem>.* paired with root/labels/<stem>.png")
def build_folder(cfg: FolderDatasetConfig) -> FolderDataset:
    return FolderDataset(name=cfg.name, root=Path(cfg.root), num_classes=cfg.num_classes,
                         ignore_index=cfg.ignore_index, class_names=cfg.class_names)
