"""The column catalogue: every stored figure declared once, with its unit, direction and meaning.

A metric group declares its columns (for given options: ``distance`` with
``percentile: 99`` declares ``HD99`` and ``mHD99``); the profiler and the
runner declare theirs. Reports, ``check``, the bootstrap, the CLI leaderboard
and the gallery ask the catalogue what a column is; none keeps a list of its
own. ``segbench list metrics`` prints it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from typing import Literal

Direction = Literal["higher", "lower", "neither"]
Table = Literal["summary", "per_class", "per_image"]
PUBLISHED_PREFIX = "published_"
EFFICIENCY = "efficiency"  # the group of the profiler's columns: the terminal leaderboard shows them apart


@dataclass(frozen=True)
class Resampling:
    """How a dataset figure follows from per-image records, so the bootstrap can recompute it on resamples.

    ``kind``: ``counts``, the accuracy family from the summed per-class count
    vectors ``columns`` (``figure`` names which one); ``image_mean``, the mean over
    classes of the per-class mean over the images where the class was evaluated
    (``columns``: the per-image per-class values, NaN where not evaluated);
    ``band``, the mean over classes of summed intersections over summed unions
    (``columns``: intersection, union).
    """

    kind: Literal["counts", "image_mean", "band"]
    columns: tuple[str, ...]
    figure: str = ""


@dataclass(frozen=True)
class Spread:
    """How steady a figure's measurement was: the ratio of the figure ``upper`` to it (latency p90 / p50),
    shown as ``label``; above ``noisy``, reports warn that the measurement was noisy."""

    upper: str
    label: str
    noisy: float


@dataclass(frozen=True)
class Column:
    """One stored figure. ``unit``: fraction, px, ms, MiB, images/s, GFLOPs, count, s, or text."""

    name: str
    unit: str
    direction: Direction
    meaning: str
    table: Table = "summary"
    resampling: Resampling | None = None
    group: str = ""  # the metric group or other source declaring it
    leaderboard: bool = False  # shown in leaderboards unless the user names the columns
    shown_unit: str = ""  # the unit reports show it in, when not ``unit``: value * ``scale`` (params in M)
    scale: float = 1.0
    note: str = ""  # what a reader must know to compare it with figures from elsewhere: the report's legend
    spread: Spread | None = None

    @property
    def bootstrap(self) -> bool:
        """Whether per-image records can bootstrap it (confidence intervals, paired tests)."""
        return self.resampling is not None

    @property
    def percent(self) -> bool:
        """A fraction, shown in percent (points) in reports and checks."""
        return self.unit == "fraction"

    def shown(self, value: float) -> float:
        """``value`` in the unit reports show: percent for fractions, else times ``scale``."""
        return 100 * value if self.percent else self.scale * value


class Catalogue:
    """The declared columns by name; ``published_X`` columns are read as X (as its source published it)."""

    def __init__(self, columns: Iterable[Column]) -> None:
        self._columns: dict[tuple[str, str], Column] = {}
        for column in columns:
            self._columns.setdefault((column.table, column.name), column)

    def get(self, name: str, table: Table = "summary") -> Column | None:
        column = self._columns.get((table, name))
        if column is None and name.startswith(PUBLISHED_PREFIX):
            base = self._columns.get((table, name.removeprefix(PUBLISHED_PREFIX).split("_")[0]))
            if base is not None:
                column = replace(base, name=name, meaning=f"{base.meaning}, as its source published it",
                                 resampling=None, leaderboard=False)
        return column

    def __iter__(self) -> Iterator[Column]:
        return iter(self._columns.values())

    def table(self, table: Table) -> list[Column]:
        return [column for column in self if column.table == table]

    def higher_is_better(self, name: str) -> bool | None:
        """True or False for a declared figure with a direction; None otherwise."""
        column = self.get(name)
        if column is None or column.direction == "neither":
            return None
        return column.direction == "higher"
