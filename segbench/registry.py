"""Registries: plain dictionaries of declarations, filled by decorators, plus entry points for plugins.

A model source, a dataset type and a metric group are each one module that
declares itself here with everything the rest of segbench needs:

- ``@register_model("type", config=ConfigClass, check=..., classes=...)`` on
  the function that builds the model adapter: ``MODELS["type"]`` is a
  :class:`ModelSource`;
- ``@register_dataset("type", config=ConfigClass)`` on the function that
  builds the dataset: ``DATASETS["type"]`` is a :class:`DatasetType`;
- ``@register_metric("group", options=OptionsClass, columns=...)`` on the
  metric state class: ``METRICS["group"]`` is a :class:`MetricGroup`.

A model source or dataset type also names the config fields that ``segbench
eval`` fills from its command line (``eval_ref``, a model's ``eval_checkpoint``).

Other figures (efficiency, the run's bookkeeping) declare their columns with
``register_columns``. The suite's schema is assembled from these
registrations (:mod:`segbench.suite`), so a plugin's types are named in a suite
exactly like the built-in ones. Plugins register through the entry point groups
``segbench.models``, ``segbench.datasets`` and ``segbench.metrics``: each entry
point names a module, imported for its declarations.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from segbench.columns import Catalogue, Column
from segbench.errors import UserError

T = TypeVar("T")

# The built-in declarations, imported by name like plugins: this module imports no room above it.
BUILTIN_MODULES = (
    "segbench.data.synthetic", "segbench.data.folder", "segbench.data.cityscapes", "segbench.data.ade20k",
    "segbench.data.pascal_voc", "segbench.data.mmseg_dataset",
    "segbench.models.torch_adapter", "segbench.models.predictions", "segbench.models.mmseg_adapter",
    "segbench.models.exported",
    "segbench.models.hf_adapter",
    "segbench.metrics.confusion", "segbench.metrics.boundary", "segbench.metrics.distance",
    "segbench.metrics.fine_grained",
    "segbench.metrics.cityscapes",
    "segbench.metrics.calibration",
    "segbench.harness_columns",
)
ENTRY_POINT_GROUPS = ("segbench.models", "segbench.datasets", "segbench.metrics")


@dataclass(frozen=True)
class ModelSource:
    """``build(config, dataset_info, device)`` gives a ModelAdapter; ``check(config)`` runs before any work."""

    type: str
    config: type[BaseModel]
    build: Callable[..., Any]
    check: Callable[[Any], None] | None = None
    describe: str = ""
    eval_ref: str | None = None
    """The config field that ``segbench eval --model TYPE:REF`` fills with REF; None: the type takes no REF."""
    eval_checkpoint: str | None = None
    """The config field that ``segbench eval --checkpoint FILE`` fills; None: the type takes no checkpoint."""
    classes: Callable[[Any], int | None] | None = None
    """``classes(config)``: the number of classes the model predicts, read from its config or files without
    building it, after ``check`` passed; the runner compares it (through the config's ``class_map`` where it
    has one) with each dataset's before any work. None, or a None answer (a count known only once the model is
    built, or the dataset's own): not checked before work; the cell still checks it."""


@dataclass(frozen=True)
class DatasetType:
    """``build(config)`` gives a SegDataset; it is called before any work, so it is also the check."""

    type: str
    config: type[BaseModel]
    build: Callable[[Any], Any]
    describe: str = ""
    eval_ref: str | None = None
    """The config field that ``segbench eval --dataset TYPE:REF`` fills with REF; None: the type takes none."""


@dataclass(frozen=True)
class MetricGroup:
    """``state(num_classes, ignore_index, device, **options)`` is the mergeable state; ``columns(options)`` its
    figures. ``default_on``: whether a suite that does not name the group runs it; ``required``: whether a
    suite may turn it off (``null``). ``needs``: inputs beside (pred, label, image_id) that ``update`` takes as
    keyword arguments, None where the model or dataset has none (the group then records itself as not
    applicable): ``confidence`` (float HxW, the predicted class's probability) or a Sample extra such as
    ``instances``. ``shares``: groups with the same tag reuse one another's per-image work, so the runner
    scores them on one thread (boundary and distance: the boundary pair)."""

    name: str
    options: type[BaseModel]
    state: type
    columns: Callable[[Any], list[Column]]
    default_on: bool = True
    required: bool = False
    describe: str = ""
    needs: tuple[str, ...] = ()
    shares: str = ""


MODELS: dict[str, ModelSource] = {}
DATASETS: dict[str, DatasetType] = {}
METRICS: dict[str, MetricGroup] = {}
COLUMNS: dict[str, Callable[[], list[Column]]] = {}


def _add(table: dict[str, Any], name: str, entry: Any) -> None:
    if name in table and table[name] != entry:
        raise ValueError(f"{name!r} is registered twice")
    table[name] = entry


def _config_type(config: type[BaseModel]) -> str:
    """The ``type`` a config class answers to: its ``type`` field's single literal value."""
    field = config.model_fields.get("type")
    values = getattr(field.annotation, "__args__", ()) if field is not None else ()
    if len(values) != 1:
        raise ValueError(f"{config.__name__} needs a field `type: Literal['<name>']`")
    return values[0]


def _check_type(name: str, config: type[BaseModel]) -> None:
    if _config_type(config) != name:
        raise ValueError(f"{config.__name__}'s type field says {_config_type(config)!r}, registered as {name!r}")


def register_model(name: str, *, config: type[BaseModel], check: Callable[[Any], None] | None = None,
                   describe: str = "", eval_ref: str | None = None, eval_checkpoint: str | None = None,
                   classes: Callable[[Any], int | None] | None = None) -> Callable[[T], T]:
    _check_type(name, config)
    _check_fields(config, eval_ref, eval_checkpoint)

    def decorator(build: T) -> T:
        _add(MODELS, name, ModelSource(name, config, build, check, describe, eval_ref, eval_checkpoint, classes))
        return build
    return decorator


def register_dataset(name: str, *, config: type[BaseModel], describe: str = "",
                     eval_ref: str | None = None) -> Callable[[T], T]:
    _check_type(name, config)
    _check_fields(config, eval_ref)

    def decorator(build: T) -> T:
        _add(DATASETS, name, DatasetType(name, config, build, describe, eval_ref))
        return build
    return decorator


def _check_fields(config: type[BaseModel], *names: str | None) -> None:
    """A registration's ``eval_*`` names are fields of its config class."""
    for field in names:
        if field is not None and field not in config.model_fields:
            raise ValueError(f"{config.__name__} has no field {field!r}")


def register_metric(name: str, *, options: type[BaseModel], columns: Callable[[Any], list[Column]],
                    default_on: bool = True, required: bool = False, describe: str = "",
                    needs: tuple[str, ...] = (), shares: str = "") -> Callable[[T], T]:
    def decorator(state: T) -> T:
        _add(METRICS, name, MetricGroup(name, options, state, columns, default_on, required, describe, needs,
                                        shares))
        return state
    return decorator


def register_columns(source: str, columns: Callable[[], list[Column]]) -> None:
    """Columns that no metric group computes (efficiency, the run's bookkeeping), under ``source``."""
    _add(COLUMNS, source, columns)


_loaded = False


def load_plugins() -> None:
    """Import the built-in declarations and every plugin entry point, once."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    for module in BUILTIN_MODULES:
        importlib.import_module(module)
    for group in ENTRY_POINT_GROUPS:
        for entry in entry_points(group=group):
            try:
                entry.load()
            except Exception as error:  # a broken plugin is the user's to fix, named
                raise UserError(f"plugin {entry.name!r} ({entry.value}, entry point group {group}) failed "
                                f"to load: {type(error).__name__}: {error}") from None


def catalogue(metric_options: Mapping[str, Any] | None = None) -> Catalogue:
    """Every declared column; metric groups' for ``metric_options`` (group -> options, None: off), as a run
    recorded them in its suite. Without options, each group's defaults. Groups a run recorded but that are
    not installed here have no columns."""
    load_plugins()
    columns = []
    for name, group in sorted(METRICS.items(), key=lambda item: _declared_order(item[1].state.__module__)):
        if metric_options is None:
            options: Any = group.options()
        elif name not in metric_options:
            continue
        else:
            options = metric_options[name]
            if options is None:
                continue
            try:
                options = group.options.model_validate(options)
            except ValidationError:  # recorded by another version of the group: its defaults' columns
                options = group.options()
        columns += group.columns(options)
    others = sorted(COLUMNS.values(), key=lambda declare: _declared_order(declare.__module__))
    return Catalogue(columns + [column for declare in others for column in declare()])


def _declared_order(module: str) -> int:
    """Built-in declarations in BUILTIN_MODULES' order, whichever was imported first; plugins after them, in
    the order they registered (the sorts are stable). Leaderboards show columns in catalogue order."""
    return BUILTIN_MODULES.index(module) if module in BUILTIN_MODULES else len(BUILTIN_MODULES)
