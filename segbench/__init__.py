"""segbench: benchmarking and evaluation of semantic segmentation models."""

from typing import Any

from segbench.version import __version__

__all__ = ["__version__", "load", "run"]


def __getattr__(name: str) -> Any:
    # Imported on first use, so that `import segbench.<module>` stays light.
    if name == "run":
        from segbench.api import run
        return run
    if name == "load":
        from segbench.api import load
        return load
    raise AttributeError(f"module 'segbench' has no attribute {name!r}")
