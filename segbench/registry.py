"""Registries: plain dictionaries filled by decorators, plus entry points for plugins.

``MODELS[type]`` builds a model adapter from its suite entry, ``DATASETS[type]``
builds a dataset from its suite entry, ``METRICS[group]`` is a metric-group class.
Plugins register through the entry point groups ``segbench.models`` and
``segbench.datasets``: each entry point names a module, imported for its
decorators' side effect.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any, TypeVar

T = TypeVar("T")

MODELS: dict[str, Callable[..., Any]] = {}
DATASETS: dict[str, Callable[..., Any]] = {}
METRICS: dict[str, type] = {}


def _register(table: dict[str, Any], name: str) -> Callable[[T], T]:
    def decorator(obj: T) -> T:
        if name in table and table[name] is not obj:
            raise ValueError(f"{name!r} is registered twice")
        table[name] = obj
        return obj
    return decorator


def register_model(name: str) -> Callable[[T], T]:
    return _register(MODELS, name)


def register_dataset(name: str) -> Callable[[T], T]:
    return _register(DATASETS, name)


def register_metric(name: str) -> Callable[[T], T]:
    return _register(METRICS, name)


_loaded = False


def load_plugins() -> None:
    """Import the built-in modules and every plugin entry point, once."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    import segbench.data  # noqa: F401  (registers the readers)
    import segbench.metrics  # noqa: F401
    import segbench.models  # noqa: F401
    for group in ("segbench.models", "segbench.datasets"):
        for ep in entry_points(group=group):
            ep.load()
