"""The command line: a thin typer layer over the Python API.

Exit codes: 0 success, 1 some cell failed (or a regression), 2 a usage or suite error.
"""

from __future__ import annotations

import math
from enum import Enum
from pathlib import Path
from typing import Optional

import pandas as pd
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from segbench.errors import UserError

app = typer.Typer(help="Benchmark and evaluate semantic segmentation models.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
out_console = Console()
err_console = Console(stderr=True)

LEADERBOARD_COLUMNS = ("mIoU", "aAcc", "mAcc", "mDice", "fwIoU")


def fail(error: UserError) -> None:
    err_console.print(f"[bold red]error:[/] {error}", highlight=False, soft_wrap=True)
    raise typer.Exit(2)


class RichReporter:
    """One progress bar per cell, on stderr so stdout ends with the run folder's path."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.task = None

    def cell_started(self, cell_id: str, total: int) -> None:
        self.task = self.progress.add_task(cell_id, total=total)

    def advance(self, count: int) -> None:
        self.progress.advance(self.task, count)

    def cell_finished(self, cell_id: str, status: str, error: str | None) -> None:
        if status == "skipped":
            self.progress.console.print(f"[dim]{cell_id}: complete in this run folder, skipped[/]")
        elif status == "failed":
            self.progress.console.print(f"[bold red]{cell_id} failed:[/] {error}", highlight=False)
        self.task = None


def leaderboard_table(summary: pd.DataFrame, title: str) -> Table:
    table = Table(title=title)
    columns = [c for c in LEADERBOARD_COLUMNS if c in summary.columns]
    for name in ("dataset", "model", *columns):
        table.add_column(name, justify="right" if name in columns else "left")
    ordered = summary.sort_values(["dataset", "mIoU"], ascending=[True, False])
    for _, row in ordered.iterrows():
        values = [row[c] for c in columns]
        table.add_row(row["dataset"], row["model"],
                      *("-" if math.isnan(v) else f"{100 * v:.2f}" for v in values))
    return table


@app.command()
def run(
    suite: Path = typer.Argument(..., help="Suite YAML file (see suites/ and the README)."),
    out: Path = typer.Option(Path("results"), help="Parent folder: the run goes to OUT/<suite name>/<run id>/."),
    run_dir: Optional[Path] = typer.Option(None, help="Write the run exactly here; an existing run folder is resumed."),
    device: Optional[str] = typer.Option(None, help="auto, cpu, cuda or cuda:N; overrides the suite's device."),
    resume: bool = typer.Option(True, "--resume/--no-resume", help="Skip cells already complete with the same settings."),
) -> None:
    """Run every model of SUITE over every dataset of it and write a run folder.

    The last line on stdout is the run folder's path. Exit 0 when every cell
    succeeded, 1 when some cell failed (the others are still written), 2 for a
    usage or suite error (nothing is written).
    """
    from segbench.api import execute
    from segbench.store import load

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())
    try:
        with Progress(*columns, console=err_console) as progress:
            outcome = execute(suite, run_dir=run_dir, out=out, device=device, resume=resume,
                              reporter=RichReporter(progress))
    except UserError as error:
        fail(error)
    results = load(outcome.run_dir)
    if not results.summary.empty:
        out_console.print(leaderboard_table(results.summary, f"{results.manifest['suite_name']} (%)"))
    for cell_id, message in outcome.errors.items():
        err_console.print(f"[red]failed:[/] {cell_id}: {message}", highlight=False)
    print(outcome.run_dir)
    raise typer.Exit(0 if outcome.ok else 1)


class ListWhat(str, Enum):
    models = "models"
    datasets = "datasets"
    metrics = "metrics"


@app.command("list")
def list_(what: ListWhat = typer.Argument(..., help="models, datasets or metrics.")) -> None:
    """List the registered model types and built-in archs, dataset types, or metric groups."""
    from segbench.registry import DATASETS, METRICS, MODELS, load_plugins

    load_plugins()
    table = Table()
    if what is ListWhat.models:
        from segbench.models.nets import ARCHS
        table.add_column("type")
        table.add_column("arch")
        for name in sorted(MODELS):
            table.add_row(name, ", ".join(sorted(ARCHS)) if name == "builtin" else "")
    else:
        registry = DATASETS if what is ListWhat.datasets else METRICS
        table.add_column("name")
        for name in sorted(registry):
            table.add_row(name)
    out_console.print(table)


@app.command()
def env() -> None:
    """Print the versions and devices that results would record."""
    import json

    from segbench.environment import environment, resolve_device

    print(json.dumps(environment(resolve_device("auto")), indent=2))
