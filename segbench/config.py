"""What every suite entry's schema is built from: names, paths, and the bases of datasets and models.

A dataset type or model source declares its own config class (a subclass of
:class:`DatasetBase` or :class:`ModelBase` whose ``type`` field names it) in
its module; the suite's schema is assembled from the registries
(:mod:`segbench.suite`). Paths may use ``${ENV_VAR}``; relative paths are
resolved against the suite file's folder.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationInfo, model_validator

IMAGENET_MEAN = [123.675, 116.28, 103.53]
IMAGENET_STD = [58.395, 57.12, 57.375]
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"
_ENV_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def expand_env(text: str) -> str:
    """Replace each ``${VAR}``; an unset variable is an error naming it."""
    def substitute(match: re.Match) -> str:
        value = os.environ.get(match.group(1))
        if value is None:
            raise ValueError(f"environment variable ${{{match.group(1)}}} is not set")
        return value
    return _ENV_VAR.sub(substitute, text)


def resolve_path(value: Any, info: ValidationInfo) -> Any:
    """A path with ``${VAR}`` and ``~`` expanded, relative to the suite file's folder."""
    if not isinstance(value, (str, Path)):
        return value
    path = Path(expand_env(str(value))).expanduser()
    base = (info.context or {}).get("base_dir")
    if base is not None and not path.is_absolute():
        path = Path(base) / path
    return path


_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
MMSEG_WEIGHTS_HINT = ("such URLs are the `Weights` of mmseg's model index metafiles "
                      "(`segbench list models` lists the index)")


def reject_url(value: Any, hint: str = "") -> Any:
    """A path given as a URL (http://, https://, s3://, ...) is an error: segbench downloads nothing."""
    if isinstance(value, str) and _URL.match(value.strip()):
        url = value.strip()
        raise ValueError(f"{url!r} is a URL, and segbench downloads nothing: fetch it first, e.g. "
                         f"`wget {url} -P checkpoints/`, and give the local path" + (f"; {hint}" if hint else ""))
    return value


def local_path(hint: str = "") -> BeforeValidator:
    """The validator of every path field: no URL (``hint`` says where such URLs come from), then
    :func:`resolve_path`."""
    return BeforeValidator(lambda value, info: resolve_path(reject_url(value, hint), info))


SuitePath = Annotated[Path, local_path()]


def is_file_reference(value: str) -> bool:
    """A config given as a file (``x.py`` or a path with '/'), not a name from an index."""
    return value.endswith(".py") or "/" in value


def _path_or_name(value: str, info: ValidationInfo) -> str:
    """An mmseg config given as a file path is resolved like any path; a bare name is kept."""
    if is_file_reference(value):
        return str(resolve_path(value, info))
    return value


ConfigRef = Annotated[str, AfterValidator(_path_or_name)]


def _no_double_underscore(name: str) -> str:
    """A cell id is ``<model>__<dataset>``: with '__' inside a name, two cells could share one id."""
    if "__" in name:
        raise ValueError(f"name {name!r} contains '__': '__' separates model and dataset in cell ids")
    return name


EntryName = Annotated[str, Field(pattern=NAME_PATTERN), AfterValidator(_no_double_underscore)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatasetBase(Strict):
    """What every dataset entry has; a dataset type adds ``type: Literal["its name"]`` and its fields."""

    name: EntryName
    invalid_labels: Literal["error", "ignore"] = "error"
    """A label value outside [0, K) that is not the ignore index: an error, or mapped to ignore and counted."""


class ModelBase(Strict):
    """What every model entry has; a model source adds ``type: Literal["its name"]`` and its fields."""

    name: EntryName
    save_predictions: bool | None = None
    """Overrides the suite's ``save_predictions`` for this model; None: the suite's."""

    def input_paths(self, dataset: str) -> list[Path]:
        """The files this model reads on ``dataset`` that can change in place (a resume redoes the cell)."""
        return []


class InferenceConfig(Strict):
    """How a torch model is applied to an image: whole or sliding window, with optional TTA."""

    mode: Literal["whole", "slide"] = "whole"
    crop_size: tuple[int, int] | None = None
    stride: tuple[int, int] | None = None
    flip: bool = False
    scales: list[float] = Field(default_factory=lambda: [1.0], min_length=1)

    @model_validator(mode="after")
    def _slide_needs_crop(self) -> "InferenceConfig":
        if self.mode == "slide" and (self.crop_size is None or self.stride is None):
            raise ValueError("mode 'slide' needs crop_size and stride, e.g. [512, 512] and [341, 341]")
        if any(s <= 0 for s in self.scales):
            raise ValueError("scales must be positive")
        return self
