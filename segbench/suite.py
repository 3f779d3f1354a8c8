"""Suite files: the pydantic schema, validation with YAML line numbers, expansion into cells.

A suite is validated once, at the door; nothing after this module reads the file.
Paths in a suite may use ``${ENV_VAR}``; relative paths are resolved against
the suite file's folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import (AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError,
                      ValidationInfo, field_validator, model_validator)

from segbench.errors import UserError

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


def _resolve_path(value: Any, info: ValidationInfo) -> Any:
    if not isinstance(value, (str, Path)):
        return value
    path = Path(expand_env(str(value))).expanduser()
    base = (info.context or {}).get("base_dir")
    if base is not None and not path.is_absolute():
        path = Path(base) / path
    return path


SuitePath = Annotated[Path, BeforeValidator(_resolve_path)]


def _path_or_name(value: str, info: ValidationInfo) -> str:
    """An mmseg config given as a file path is resolved like any path; a bare name is kept."""
    if value.endswith(".py") or "/" in value:
        return str(_resolve_path(value, info))
    return value


ConfigRef = Annotated[str, AfterValidator(_path_or_name)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# ---------------------------------------------------------------- datasets

class DatasetBase(Strict):
    name: str = Field(pattern=NAME_PATTERN)
    invalid_labels: Literal["error", "ignore"] = "error"
    """A label value outside [0, K) that is not the ignore index: an error, or mapped to ignore and counted."""


class SyntheticDatasetConfig(DatasetBase):
    type: Literal["synthetic"]
    num_images: int = Field(32, ge=1)
    height: int = Field(64, ge=8)
    width: int = Field(128, ge=8)
    seed: int = 0


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


class CityscapesDatasetConfig(DatasetBase):
    type: Literal["cityscapes"]
    root: SuitePath
    """The folder holding leftImg8bit/ and gtFine/."""
    split: str = "val"


class ADE20KDatasetConfig(DatasetBase):
    type: Literal["ade20k"]
    root: SuitePath
    """ADEChallengeData2016, or the folder holding it."""
    split: str = "validation"


class PascalVOCDatasetConfig(DatasetBase):
    type: Literal["pascal_voc"]
    root: SuitePath
    """VOC2012, or a folder holding VOCdevkit/VOC2012."""
    split: str = "val"


class MMSegDatasetConfig(DatasetBase):
    type: Literal["mmseg"]
    config: ConfigRef
    """A dataset config file, or a name under mmseg's configs/_base_/datasets/ (e.g. coco-stuff164k)."""
    root: SuitePath
    """The data_root the config's paths are relative to."""


DatasetConfig = Annotated[Union[SyntheticDatasetConfig, FolderDatasetConfig, CityscapesDatasetConfig,
                                ADE20KDatasetConfig, PascalVOCDatasetConfig, MMSegDatasetConfig],
                          Field(discriminator="type")]


# ---------------------------------------------------------------- models

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


class ModelBase(Strict):
    name: str = Field(pattern=NAME_PATTERN)
    save_predictions: bool | None = None
    """Overrides the suite's ``save_predictions`` for this model; None: the suite's."""


class BuiltinModelConfig(ModelBase):
    type: Literal["builtin"]
    arch: str
    weights: str = "demo"
    """'demo' for the shipped weights, 'random' for none, or a .safetensors/.pth path."""
    num_classes: int | None = Field(None, ge=1)
    inference: InferenceConfig = InferenceConfig()

    @field_validator("arch")
    @classmethod
    def _known_arch(cls, value: str) -> str:
        from segbench.models.nets import ARCHS
        if value not in ARCHS:
            raise ValueError(f"unknown arch {value!r}; known: {', '.join(sorted(ARCHS))}")
        return value

    @field_validator("weights")
    @classmethod
    def _weights_path(cls, value: str, info: ValidationInfo) -> str:
        if value in ("demo", "random"):
            return value
        return str(_resolve_path(value, info))


class PythonModelConfig(ModelBase):
    type: Literal["python"]
    factory: str = Field(pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
    kwargs: dict[str, Any] = Field(default_factory=dict)
    num_classes: int = Field(ge=1)
    mean: tuple[float, float, float] = tuple(IMAGENET_MEAN)
    std: tuple[float, float, float] = tuple(IMAGENET_STD)
    checkpoint: SuitePath | None = None
    inference: InferenceConfig = InferenceConfig()


class PredictionsModelConfig(ModelBase):
    type: Literal["predictions"]
    root: str
    """Folder of <image stem>.png label maps; '{dataset}' is replaced by the dataset's name."""
    num_classes: int | None = Field(None, ge=1)

    @field_validator("root")
    @classmethod
    def _root_path(cls, value: str, info: ValidationInfo) -> str:
        return str(_resolve_path(value, info))


class MMSegModelConfig(ModelBase):
    type: Literal["mmseg"]
    config: ConfigRef
    """A name from mmseg's packaged model index, or a path to a config file."""
    checkpoint: SuitePath | None = None
    tta: bool = False
    cfg_options: dict[str, Any] = Field(default_factory=dict)
    allow_unsafe_checkpoint: bool = False
    class_map: list[int] | None = None
    """For each class the model predicts, the dataset class it counts as."""


ModelConfig = Annotated[Union[BuiltinModelConfig, PythonModelConfig, PredictionsModelConfig,
                              MMSegModelConfig],
                        Field(discriminator="type")]


# ---------------------------------------------------------------- metrics, suite

class AccuracyOptions(Strict):
    pass


class BoundaryOptions(Strict):
    """BF and BIoU (DESIGN.md, "Boundary family")."""

    tolerance: float | str = 0.0075
    """BF tolerance: a fraction of the image diagonal in [0, 1), or pixels as a string such as "3px"."""
    dilation_ratio: float = Field(0.02, gt=0)
    """BIoU band width as a fraction of the image diagonal (rounded, at least 1 pixel)."""

    @field_validator("tolerance")
    @classmethod
    def _valid_tolerance(cls, value: float | str) -> float | str:
        from segbench.metrics.boundary import parse_tolerance
        parse_tolerance(value)
        return value


class DistanceOptions(Strict):
    """HD and HD95 (DESIGN.md, "Boundary family")."""

    percentile: float = Field(95.0, ge=0, le=100)
    """The percentile of the robust Hausdorff distance; other than 95 it renames the columns (HD99, mHD99)."""
    one_sided: Literal["diagonal", "inf", "skip"] = "diagonal"
    """The value when a class is in only one of the two masks; such cases are always counted."""


class MetricsConfig(Strict):
    """Metric groups and their options; ``null`` turns a group off."""

    accuracy: AccuracyOptions = AccuracyOptions()
    boundary: BoundaryOptions | None = BoundaryOptions()
    distance: DistanceOptions | None = DistanceOptions()


class EfficiencyConfig(Strict):
    """The profiling pass (segbench/profiling.py): what is timed, how, and at which sizes."""

    batch_sizes: list[Annotated[int, Field(ge=1)]] = Field(default_factory=lambda: [1], min_length=1)
    warmup: int = Field(10, ge=0)
    iters: int = Field(50, ge=1)
    time_budget_s: float | None = Field(None, gt=0)
    """When set, a measurement also stops once this many seconds of timed calls are spent (at least one call)."""
    precision: list[Literal["fp32", "fp16", "bf16"]] = Field(default_factory=lambda: ["fp32"], min_length=1)
    """fp16 and bf16 run the model under torch.autocast; the weights stay fp32."""
    channels_last: bool = False
    compile: bool = False
    cudnn_benchmark: bool = False
    input_size: tuple[Annotated[int, Field(ge=8)], Annotated[int, Field(ge=8)]] | None = None
    """[h, w]; by default the size of the dataset's first image."""
    scopes: list[Literal["model", "end_to_end"]] = Field(default_factory=lambda: ["model", "end_to_end"],
                                                         min_length=1)


class Suite(Strict):
    name: str = Field(pattern=NAME_PATTERN)
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda|cuda:\d+|mps)$")
    batch_size: int = Field(4, ge=1)
    num_workers: int = Field(2, ge=0)
    datasets: list[DatasetConfig] = Field(min_length=1)
    models: list[ModelConfig] = Field(min_length=1)
    metrics: MetricsConfig = MetricsConfig()
    efficiency: EfficiencyConfig | None = None
    """The profiling pass; None (the default) runs none."""
    save_predictions: bool = False
    """Write each prediction as a palette PNG to cells/<id>/predictions/ (a model may override it)."""

    @field_validator("datasets", "models")
    @classmethod
    def _unique_names(cls, entries: list) -> list:
        names = [entry.name for entry in entries]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"names must be unique; repeated: {', '.join(repeated)}")
        return entries

    def cells(self) -> list["Cell"]:
        """Every (model, dataset) pair, models outermost, in file order."""
        return [Cell(model, dataset, self.metrics, self.efficiency,
                     self.save_predictions if model.save_predictions is None else model.save_predictions)
                for model in self.models for dataset in self.datasets]

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class Cell:
    model: ModelConfig
    dataset: DatasetConfig
    metrics: MetricsConfig
    efficiency: EfficiencyConfig | None = None
    save_predictions: bool = False

    @property
    def id(self) -> str:
        return f"{self.model.name}__{self.dataset.name}"

    def settings(self) -> dict[str, Any]:
        """Everything of the suite that this cell's numbers depend on (for resume)."""
        settings = {"model": self.model.model_dump(mode="json", exclude={"save_predictions"}),
                    "dataset": self.dataset.model_dump(mode="json"),
                    "metrics": self.metrics.model_dump(mode="json")}
        if self.efficiency is not None:  # absent, not null: suites without it keep their digests
            settings["efficiency"] = self.efficiency.model_dump(mode="json")
        if self.save_predictions:  # likewise; a resumed run redoes the cells saved without predictions
            settings["save_predictions"] = True
        return settings


# ---------------------------------------------------------------- loading

def _line_index(node: yaml.Node, path: tuple = (), index: dict | None = None) -> dict[tuple, int]:
    """Map each key path of a composed YAML document to its 1-based line."""
    index = {} if index is None else index
    index.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            index[path + (key.value,)] = key.start_mark.line + 1
            _line_index(value, path + (key.value,), index)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _line_index(item, path + (i,), index)
    return index


def _locate(loc: tuple, data: Any, lines: dict[tuple, int]) -> tuple[str, int | None]:
    """Field path as the user wrote it, and its line.

    pydantic puts the union tag (the entry's ``type``) into the location of an
    error inside a datasets/models entry; it is not a key of the file, so it is dropped.
    """
    path: tuple = ()
    node = data
    for part in loc:
        if isinstance(node, dict) and part not in node and part == node.get("type"):
            continue
        path += (part,)
        node = node[part] if isinstance(node, (dict, list)) and _has(node, part) else None
    line = next((lines[path[:end]] for end in range(len(path), -1, -1) if path[:end] in lines), None)
    dotted = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".")
    return dotted, line


def _has(node: dict | list, key: Any) -> bool:
    if isinstance(node, dict):
        return key in node
    return isinstance(key, int) and 0 <= key < len(node)


def _first_error(error: ValidationError, data: Any, source: str | None,
                 lines: dict[tuple, int]) -> UserError:
    problems = []
    first = None
    for item in error.errors():
        loc = item["loc"] + (("type",) if item["type"] == "union_tag_invalid" else ())
        field, line = _locate(loc, data, lines)
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = f"unknown key '{item['loc'][-1]}'"
        if item["type"] == "union_tag_invalid":
            message = f"unknown type {item['input'].get('type')!r}; expected one of {item['ctx']['expected_tags']}"
        if first is None:
            first = (field, line, message)
        problems.append(f"{field or '<suite>'}" + (f" (line {line})" if line else "") + f": {message}")
    field, line, message = first
    if len(problems) > 1:
        message += "\n" + "\n".join(f"  also: {p}" for p in problems[1:])
    return UserError(message, source=source, field=field, line=line)


def parse_suite(data: Any, *, base_dir: Path | None = None, source: str | None = None,
                lines: dict[tuple, int] | None = None) -> Suite:
    """Validate an already-loaded mapping (what the Python API takes)."""
    if not isinstance(data, dict):
        raise UserError("a suite must be a mapping with name, datasets and models", source=source)
    try:
        return Suite.model_validate(data, context={"base_dir": base_dir})
    except ValidationError as error:
        raise _first_error(error, data, source, lines or {}) from None


def load_suite(path: str | Path) -> Suite:
    """Read, validate and resolve a suite file; every mistake is a UserError naming file, field and line."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as error:
        raise UserError(f"cannot read the suite file: {error.strerror}", source=str(path)) from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        problem = getattr(error, "problem", None) or str(error)
        raise UserError(f"malformed YAML: {problem}", source=str(path),
                        line=mark.line + 1 if mark else None) from None
    lines = _line_index(node) if node is not None else {}
    return parse_suite(data, base_dir=path.resolve().parent, source=str(path), lines=lines)
