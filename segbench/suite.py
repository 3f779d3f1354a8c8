"""Suite files: the schema assembled from the registries, validation with YAML line numbers, cells.

A suite is validated once, at the door; nothing after this module reads the
file. Its datasets, models and metrics entries are whatever the registries
declare (built-in and plugin types alike): see :mod:`segbench.registry`.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import BaseModel, Field, ValidationError, create_model, field_validator, model_validator

from segbench.config import NAME_PATTERN, DatasetBase, ModelBase, Strict
from segbench.corruptions import CLEAN, CorruptionsConfig
from segbench.errors import UserError
from segbench.profiling import EfficiencyConfig
from segbench.registry import DATASETS, METRICS, MODELS, load_plugins

MAX_EXPANDED_VALUES = 100_000
"""The most values a suite may expand to through YAML aliases; a real suite has a few hundred."""
_MERGE_TAG = "tag:yaml.org,2002:merge"


class Suite(Strict):
    """A validated suite. Instances are of the class :func:`suite_model` assembles from the registries,
    whose ``datasets``, ``models`` and ``metrics`` fields accept every registered type and group."""

    name: str = Field(pattern=NAME_PATTERN)
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda|cuda:\d+|mps)$")
    batch_size: int = Field(4, ge=1)
    num_workers: Annotated[int, Field(ge=0)] | Literal["auto"] = "auto"
    """DataLoader processes reading and decoding images; ``auto``: sized to the machine's cores."""
    metric_workers: Annotated[int, Field(ge=0)] | Literal["auto"] = "auto"
    """Threads scoring earlier batches while the model computes the next; 0: scored inline, after each
    forward pass; ``auto``: sized to the machine and the metric groups. Results are identical, to the bit,
    for any number, so it is no part of a cell's settings."""
    datasets: list[DatasetBase] = Field(min_length=1)
    models: list[ModelBase] = Field(min_length=1)
    metrics: BaseModel
    efficiency: EfficiencyConfig | None = None
    """The profiling pass; None (the default) runs none."""
    save_predictions: bool = False
    """Write each prediction as a palette PNG to cells/<id>/predictions/ (a model may override it)."""
    corruptions: CorruptionsConfig | None = None
    """Also evaluate every (model, dataset) on corrupted images; None (the default): clean images only."""

    @field_validator("datasets", "models")
    @classmethod
    def _unique_names(cls, entries: list) -> list:
        names = [entry.name for entry in entries]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"names must be unique; repeated: {', '.join(repeated)}")
        return entries

    @model_validator(mode="after")
    def _reference_is_a_model(self) -> "Suite":
        reference = self.corruptions.reference if self.corruptions is not None else None
        names = [model.name for model in self.models]
        if reference is not None and reference not in names:
            raise ValueError(f"corruptions.reference {reference!r} is not a model of the suite; "
                             f"its models: {', '.join(names)}")
        return self

    def cells(self) -> list["Cell"]:
        """Every (model, dataset) pair, models outermost, in file order; with ``corruptions``, each pair's
        clean cell is followed by its corrupted ones (corruption, then severity), which measure no
        efficiency (a model's is measured once, on clean images)."""
        cells = []
        for model in self.models:
            save = self.save_predictions if model.save_predictions is None else model.save_predictions
            for dataset in self.datasets:
                clean = Cell(model, dataset, self.metrics, self.efficiency, save)
                cells.append(clean)
                if self.corruptions is not None:
                    cells += [replace(clean, efficiency=None, corruption=name, severity=severity,
                                      corruption_settings=self.corruptions.settings(name, severity))
                              for name in self.corruptions.names for severity in self.corruptions.severities]
        return cells

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()


def _tagged_union(configs: list[type[BaseModel]]) -> Any:
    """The registered config classes, told apart by their ``type`` field."""
    if len(configs) == 1:
        return configs[0]
    return Annotated[Union[tuple(configs)], Field(discriminator="type")]


def metrics_model() -> type[BaseModel]:
    """The ``metrics`` section: one optional entry per registered group, ``null`` turning it off.

    A group declared ``required`` cannot be turned off; one not ``default_on`` runs only when named.
    """
    fields: dict[str, Any] = {}
    for name, group in METRICS.items():
        default = group.options() if group.default_on else None
        fields[name] = (group.options, default) if group.required else (group.options | None, default)
    return create_model("MetricsConfig", __base__=Strict, __doc__="Metric groups and their options.", **fields)


def suite_model() -> type[Suite]:
    """The suite schema for the types and groups registered now (built-ins and plugins)."""
    load_plugins()
    key = (tuple(MODELS.values()), tuple(DATASETS.values()), tuple(METRICS.values()))
    if key not in _schemas:
        metrics = metrics_model()
        _schemas[key] = create_model(
            "Suite", __base__=Suite,
            datasets=(list[_tagged_union([d.config for d in DATASETS.values()])], Field(min_length=1)),
            models=(list[_tagged_union([m.config for m in MODELS.values()])], Field(min_length=1)),
            metrics=(metrics, metrics()))
    return _schemas[key]


_schemas: dict[tuple, type[Suite]] = {}


@dataclass(frozen=True)
class Cell:
    model: ModelBase
    dataset: DatasetBase
    metrics: BaseModel
    efficiency: EfficiencyConfig | None = None
    save_predictions: bool = False
    corruption: str = CLEAN
    severity: int = 0
    corruption_settings: dict[str, Any] | None = None

    @property
    def id(self) -> str:
        """``model__dataset``, and ``model__dataset__corruption__severity`` for a corrupted cell ('__' is
        in no name, so ids never collide)."""
        base = f"{self.model.name}__{self.dataset.name}"
        return base if self.corruption == CLEAN else f"{base}__{self.corruption}__{self.severity}"

    @property
    def keys(self) -> dict[str, Any]:
        """The columns that identify the cell's rows in every table."""
        return {"model": self.model.name, "dataset": self.dataset.name, "corruption": self.corruption,
                "severity": self.severity}

    def metrics_on(self) -> dict[str, Any]:
        """The options of the metric groups that run: a group turned off, or one a plugin adds and a suite
        does not turn on, changes no figure of the cell, so installing a plugin redoes nothing."""
        return {name: options for name, options in self.metrics.model_dump(mode="json").items()
                if options is not None}

    def settings(self) -> dict[str, Any]:
        """Everything of the suite that this cell's numbers depend on (for resume)."""
        settings = {"model": self.model.model_dump(mode="json", exclude={"save_predictions"}),
                    "dataset": self.dataset.model_dump(mode="json"),
                    "metrics": self.metrics_on()}
        if self.efficiency is not None:  # absent, not null: suites without it keep their digests
            settings["efficiency"] = self.efficiency.model_dump(mode="json")
        if self.save_predictions:  # likewise; a resumed run redoes the cells saved without predictions
            settings["save_predictions"] = True
        if self.corruption_settings is not None:
            settings["corruption"] = self.corruption_settings
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
        return suite_model().model_validate(data, context={"base_dir": base_dir})
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
