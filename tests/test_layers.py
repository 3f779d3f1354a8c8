"""The house's layers (DESIGN.md, "The house is open") hold, and segbench has no import cycle.

The layers are import-linter contracts in pyproject.toml ([tool.importlinter]); the cycles are
found here on grimp's graph, the one import-linter reads. Both count the imports made inside
functions: a lazy import is still an import of that room.
"""

import json
import subprocess
import sys
from pathlib import Path

import grimp  # installed with import-linter (the `dev` extra)

ROOT = Path(__file__).resolve().parents[1]


def import_graph() -> grimp.ImportGraph:
    """segbench's modules and the imports between them, those inside functions included."""
    return grimp.build_graph("segbench", cache_dir=None)


def where(graph: grimp.ImportGraph, importer: str, imported: str) -> str:
    """The lines of ``importer`` that import ``imported``."""
    return "; ".join(f"{importer}:{d['line_number']}: {d['line_contents'].strip()}"
                     for d in graph.get_import_details(importer=importer, imported=imported))


def import_cycles(graph: grimp.ImportGraph) -> list[tuple[str, ...]]:
    """One shortest cycle through each import that closes one, each cycle once."""
    cycles: dict[frozenset[str], tuple[str, ...]] = {}
    for importer in sorted(graph.modules):
        for imported in sorted(graph.find_modules_directly_imported_by(importer)):
            back = graph.find_shortest_chain(importer=imported, imported=importer)
            if back is not None:
                cycles.setdefault(frozenset(back), (importer, *back))
    return list(cycles.values())


def test_no_import_cycles() -> None:
    graph = import_graph()
    assert len(graph.modules) > 40, "grimp did not find segbench's modules"
    cycles = import_cycles(graph)
    assert not cycles, "import cycles in segbench:\n" + "\n".join(
        " -> ".join(cycle) + "\n    " + "\n    ".join(where(graph, a, b) for a, b in zip(cycle, cycle[1:]))
        for cycle in cycles)


def test_nothing_imports_the_root_package() -> None:
    # segbench/__init__.py imports the API on first use of segbench.run / segbench.load: a module
    # importing `segbench` itself would import the top of the house (layers contracts see only its rooms)
    graph = import_graph()
    importers = sorted(graph.find_modules_that_directly_import("segbench"))
    assert not importers, "modules import the root package `segbench`; import its modules instead:\n" + "\n".join(
        where(graph, importer, "segbench") for importer in importers)


def test_import_contracts_hold() -> None:
    lint_imports = Path(sys.executable).parent / "lint-imports"
    assert lint_imports.is_file(), f"{lint_imports} is missing: pip install -e '.[dev]' installs import-linter"
    done = subprocess.run([str(lint_imports), "--no-cache", "--no-logo"], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, f"lint-imports exited {done.returncode}:\n{done.stdout}\n{done.stderr}"


LOW_COMMANDS = """
import json, sys
from segbench import registry
registry.load_plugins()
import segbench.check, segbench.report
columns = registry.catalogue()
units = {name: getattr(columns.get(name), "unit", None) for name in ("eval_seconds", "latency_ms_p50", "params")}
print(json.dumps({"loaded": sorted(name for name in sys.modules if name.startswith("segbench.")), "units": units}))
"""


def test_checks_and_reports_learn_the_columns_without_the_runner() -> None:
    # load_plugins imports its declaration modules by name, which import-linter cannot see: the run's and
    # the profiler's columns are declared low, so `segbench check`, `report` and `list` import no runner
    done = subprocess.run([sys.executable, "-c", LOW_COMMANDS], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert {"segbench.runner", "segbench.profiling"}.isdisjoint(seen["loaded"])
    assert seen["units"] == {"eval_seconds": "s", "latency_ms_p50": "ms", "params": "count"}
