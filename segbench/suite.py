"""Suite files: the pydantic schema, validation with YAML line numbers, expansion into cells.

A suite is validated once, at the door; nothing after this module reads the file.
Paths in a suite may use ``${ENV_VAR}``; relative paths are resolved against
the suite file's folder.
"""

from __future__ import annotations

import hashlib
import json
import math
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
MAX_EXPANDED_VALUES = 100_000
"""The most values a suite may expand to through YAML aliases; a real suite has a few hundred."""
_ENV_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_MERGE_TAG = "tag:yaml.org,2002:merge"


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


def _no_double_underscore(name: str) -> str:
    """A cell id is ``<model>__<dataset>``: with '__' inside a name, two cells could share one id."""
    if "__" in name:
        raise ValueError(f"name {name!r} contains '__': '__' separates model and dataset in cell ids")
    return name


EntryName = Annotated[str, Field(pattern=NAME_PATTERN), AfterValidator(_no_double_underscore)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# ---------------------------------------------------------------- datasets

class DatasetBase(Strict):
    name: EntryName
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
    name: EntryName
    save_predictions: bool | None = None
    """Overrides the suite's ``save_predictions`` for this model; None: the suite's."""

    def input_paths(self, dataset: str) -> list[Path]:
        """The files this model reads on ``dataset`` that can change in place (a resume redoes the cell)."""
        return []


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

    def input_paths(self, dataset: str) -> list[Path]:
        return [] if self.weights in ("demo", "random") else [Path(self.weights)]


class PythonModelConfig(ModelBase):
    type: Literal["python"]
    factory: str = Field(pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
    kwargs: dict[str, Any] = Field(default_factory=dict)
    num_classes: int = Field(ge=1)
    mean: tuple[float, float, float] = tuple(IMAGENET_MEAN)
    std: tuple[float, float, float] = tuple(IMAGENET_STD)
    checkpoint: SuitePath | None = None
    inference: InferenceConfig = InferenceConfig()

    def input_paths(self, dataset: str) -> list[Path]:
        return [] if self.checkpoint is None else [self.checkpoint]


class PredictionsModelConfig(ModelBase):
    type: Literal["predictions"]
    root: str
    """Folder of <image stem>.png label maps; '{dataset}' is replaced by the dataset's name."""
    num_classes: int | None = Field(None, ge=1)

    @field_validator("root")
    @classmethod
    def _root_path(cls, value: str, info: ValidationInfo) -> str:
        return str(_resolve_path(value, info))

    def input_paths(self, dataset: str) -> list[Path]:
        return [Path(self.root.replace("{dataset}", dataset))]


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

    def input_paths(self, dataset: str) -> list[Path]:
        config = [Path(self.config)] if self.config.endswith(".py") or "/" in self.config else []
        return config + ([] if self.checkpoint is None else [self.checkpoint])


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

def _read_text(path: Path) -> str:
    """The file decoded as UTF-8 whatever the locale, newlines normalised as ``Path.read_text`` does."""
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise UserError(f"cannot read the suite file: {error.strerror}", source=str(path)) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise UserError(f"not UTF-8 text: byte 0x{raw[error.start]:02x} at byte offset {error.start}",
                        source=str(path), line=raw.count(b"\n", 0, error.start) + 1) from None
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _parse_yaml(text: str, source: str) -> tuple[Any, dict[tuple, int]]:
    """The document's data and the line of each key path; a malformed document is a UserError."""
    try:
        return _compose_and_construct(text, source)
    except yaml.YAMLError as error:
        raise _malformed(error, text, source) from None
    except RecursionError:  # PyYAML composes recursively: a few hundred nested brackets exhaust the stack
        raise UserError("malformed YAML: nested too deeply", source=source) from None


def _compose_and_construct(text: str, source: str) -> tuple[Any, dict[tuple, int]]:
    """Compose the document once, check it, and only then build Python objects from the same nodes."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, {}
        if _expanded_size(node) > MAX_EXPANDED_VALUES:
            raise UserError(f"the suite expands to more than {MAX_EXPANDED_VALUES} values through YAML "
                            "aliases (&anchor / *alias)", source=source)
        lines = _line_index(node, source)
        return loader.construct_document(node), lines
    finally:
        loader.dispose()


def _malformed(error: yaml.YAMLError, text: str, source: str) -> UserError:
    """One line: the problem and its line (a reader error, e.g. a control character, has only an offset)."""
    mark = getattr(error, "problem_mark", None)
    position = getattr(error, "position", None)
    if mark is not None:
        line = mark.line + 1
    elif position is not None:
        line = text.count("\n", 0, position) + 1
    else:
        line = None
    problem = getattr(error, "problem", None) or str(error).splitlines()[0]
    return UserError(f"malformed YAML: {problem}", source=source, line=line)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [child for pair in node.value for child in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _expanded_size(root: yaml.Node) -> float:
    """How many nodes the document holds once every alias is expanded, found without expanding it.

    Each node object is sized once (memoised by ``id``), so a "billion laughs" document costs what
    is written, not what it expands to. A node counts as infinite while it is being sized: an alias
    back into it (a node that contains itself) expands without end.
    """
    sizes: dict[int, float] = {}

    def size(node: yaml.Node) -> float:
        if id(node) not in sizes:
            sizes[id(node)] = math.inf
            sizes[id(node)] = 1 + sum(size(child) for child in _children(node))
        return sizes[id(node)]

    return size(root)


def _line_index(root: yaml.Node, source: str) -> dict[tuple, int]:
    """Map each key path of a composed YAML document to its 1-based line; refuse a repeated key.

    Each node object is visited once: a node reached again through an alias is not descended into,
    so a path under an alias falls back to the line of its nearest indexed ancestor (the alias's key).
    """
    index: dict[tuple, int] = {}
    seen: set[int] = set()

    def visit(node: yaml.Node, path: tuple) -> None:
        if id(node) in seen:
            return
        seen.add(id(node))
        index.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                visit(item, path + (i,))
        elif isinstance(node, yaml.MappingNode):
            _refuse_duplicate_keys(node, path, source)
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode):  # other keys are refused when the data is built
                    index[path + (key.value,)] = key.start_mark.line + 1
                    visit(value, path + (key.value,))

    visit(root, ())
    return index


def _refuse_duplicate_keys(node: yaml.MappingNode, path: tuple, source: str) -> None:
    """PyYAML silently keeps the last of two equal keys; a suite refuses them (merge keys ``<<`` aside)."""
    first: dict[tuple[str, str], int] = {}
    for key, _ in node.value:
        if not isinstance(key, yaml.ScalarNode) or key.tag == _MERGE_TAG:
            continue
        line = key.start_mark.line + 1
        if (key.tag, key.value) in first:
            raise UserError(f"duplicate key '{key.value}' (first at line {first[(key.tag, key.value)]})",
                            source=source, field=_dotted(path + (key.value,)), line=line)
        first[(key.tag, key.value)] = line


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
    return _dotted(path), line


def _dotted(path: tuple) -> str:
    """A key path as the user reads it: ``models[0].name``."""
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".")


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


def read_suite(path: str | Path) -> tuple[Suite, dict[str, Any]]:
    """Read a suite file once: the validated Suite, and the suite as given (its path, text and data).

    Every mistake is a UserError naming the file, and the field and line where they apply.
    """
    path = Path(path)
    text = _read_text(path)
    data, lines = _parse_yaml(text, str(path))
    suite = parse_suite(data, base_dir=path.resolve().parent, source=str(path), lines=lines)
    return suite, {"path": str(path.resolve()), "text": text, "data": data}


def load_suite(path: str | Path) -> Suite:
    """Read, validate and resolve a suite file; every mistake is a UserError naming file, field and line."""
    return read_suite(path)[0]
