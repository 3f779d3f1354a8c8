"""The command line: a thin typer layer over the Python API.

Exit codes: 0 success, 1 some cell failed (or a regression), 2 a usage or suite error.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer
from rich.console import Console, Group
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from segbench.errors import UserError

if TYPE_CHECKING:
    from segbench.store import RunResults

# Plain help (rich_markup_mode=None): typer's rich help shows a value placeholder (`<bool>`) after every flag.
app = typer.Typer(help="Benchmark and evaluate semantic segmentation models.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  rich_markup_mode=None)
out_console = Console()
err_console = Console(stderr=True)


def fail(error: UserError, rank: int | None = None) -> None:
    where = "" if rank is None else f"rank {rank}: "
    err_console.print(f"[bold red]error:[/] {escape(where + str(error))}", highlight=False, soft_wrap=True)
    raise typer.Exit(2)


class RichReporter:
    """One progress bar per cell, on stderr so stdout ends with the run folder's path."""

    def __init__(self, progress: Progress, shard_note: str = "") -> None:
        self.progress = progress
        self.shard_note = shard_note
        self.task = None

    def run_started(self, run_dir: Path) -> None:
        self.progress.console.print(f"run folder: {escape(str(run_dir))}", highlight=False, soft_wrap=True)

    def cell_started(self, cell_id: str, total: int) -> None:
        self.task = self.progress.add_task(cell_id + self.shard_note, total=total)

    def advance(self, count: int) -> None:
        self.progress.advance(self.task, count)

    def warn(self, message: str) -> None:
        self.progress.console.print(f"[bold yellow]warning:[/] {escape(message)}", highlight=False)

    def cell_finished(self, cell_id: str, status: str, error: str | None) -> None:
        if status == "skipped":
            self.progress.console.print(f"[dim]{escape(cell_id)}: complete in this run folder, skipped[/]")
        elif status == "failed":
            self.progress.console.print(f"[bold red]{escape(cell_id)} failed:[/] {escape(str(error))}",
                                        highlight=False)
        self.task = None


def leaderboard_table(results: "RunResults") -> Group:
    """The columns a report's leaderboard shows by default, a row per (dataset, model), best first by the
    first of them; the efficiency figures, when measured, in a table of their own, a latency with its spread.
    Marks after a model's name say when it is not known to be trained."""
    from segbench.columns import EFFICIENCY
    from segbench.report import (column_header, default_metrics, format_value, leaderboard_long, noisy_spreads,
                                 results_catalogue, trained_legend, trained_marks)

    columns = results_catalogue(results)
    summary = results.clean().summary  # the clean images' rows: robustness has a table of its own
    names = default_metrics(summary, columns)
    long = leaderboard_long(results, names)
    spread = long.set_index(["model", "dataset", "metric"])["spread"] if "spread" in long.columns else None
    lower_first = [columns.get(name).direction == "lower" for name in names[:1]]
    ordered = summary.sort_values(["dataset", *names[:1]], ascending=[True, *lower_first])
    marks = trained_marks(summary)

    def board(shown: list[str], title: str, caption: list[str]) -> Table:
        spreads = [n for n in shown if spread is not None and spread.xs(n, level="metric").notna().any()]
        table = Table(title=title, caption="\n".join(caption) or None, caption_justify="left")
        table.add_column("dataset", no_wrap=True)
        table.add_column("model", no_wrap=True)
        for name in shown:
            table.add_column(escape(column_header(name, columns.get(name))), justify="right", overflow="fold")
            if name in spreads:
                table.add_column(columns.get(name).spread.label, justify="right")
        for _, row in ordered.iterrows():
            cells = []
            for name in shown:
                cells.append(format_value(columns.get(name), row[name], 2))
                if name in spreads:
                    cells.append(format_value(None, spread.get((row["model"], row["dataset"], name)), 2))
            table.add_row(row["dataset"], escape(row["model"] + marks.get(row["model"], "")), *cells)
        return table

    efficiency = [name for name in names if columns.get(name).group == EFFICIENCY]
    suite = results.manifest["suite_name"]
    tables = [board([name for name in names if name not in efficiency], f"{suite}: fractions in %",
                    [trained_legend(marks)] if marks else [])]
    if efficiency:
        notes = dict.fromkeys(columns.get(name).note for name in efficiency if columns.get(name).note)
        tables.append(board(efficiency, f"{suite}: efficiency", [*notes, *noisy_spreads(long, columns)]))
    return Group(*tables)


def robustness_board(results: "RunResults") -> Table:
    """The robustness leaderboard's figures (mCE, relative mCE, retention), a row per (dataset, model), best
    first by the first of them; the notes saying why a figure is missing below."""
    from segbench.report import column_header, format_value, robustness_catalogue, robustness_long
    from segbench.store import corruption_reference

    long, columns = robustness_long(results), robustness_catalogue(results)
    names = list(long["metric"].unique())
    wide = long.pivot(index=["dataset", "model"], columns="metric", values="value")[names].reset_index()
    wide = wide.sort_values(["dataset", names[0]], ascending=[True, columns.get(names[0]).direction != "higher"])
    notes = [f"{row.model} on {row.dataset}: {row.note}" for row in long.dropna(subset=["note"]).itertuples()]
    reference = corruption_reference(results.manifest)
    against = f"reference model: {reference}" if reference else "no reference model"
    title = f"{results.manifest['suite_name']}: robustness ({against}), fractions in %"
    table = Table(title=title, caption="\n".join(dict.fromkeys(notes)) or None, caption_justify="left")
    table.add_column("dataset", no_wrap=True)
    table.add_column("model", no_wrap=True)
    for name in names:
        table.add_column(escape(column_header(name, columns.get(name))), justify="right")
    for _, row in wide.iterrows():
        table.add_row(row["dataset"], escape(row["model"]),
                      *(format_value(columns.get(name), row[name], 2) for name in names))
    return table


def _wide_console() -> Console:
    """stdout; when it is no terminal (CI logs, pipes), 120 columns wide rather than 80, so tables don't wrap."""
    return out_console if out_console.is_terminal else Console(width=120)


@app.command()
def run(
    suite: Path = typer.Argument(..., metavar="SUITE", help="Suite YAML file (see suites/ and the README)."),
    out: Path = typer.Option(Path("results"), help="Parent folder: the run goes to OUT/<suite name>/<run id>/."),
    run_dir: Optional[Path] = typer.Option(None, help="Write the run exactly here; an existing run folder is "
                                           "resumed."),
    device: Optional[str] = typer.Option(None, help="auto, cpu, cuda or cuda:N; overrides the suite's device."),
    resume: bool = typer.Option(True, "--resume/--no-resume", help="Skip cells already complete with the same "
                                "settings."),
    continue_: bool = typer.Option(False, "--continue", help="Resume the newest run folder of SUITE under OUT "
                                   "(e.g. after Ctrl-C or a failed cell) instead of starting a new one."),
) -> None:
    """Run every model of SUITE over every dataset of it and write a run folder.

    Examples:

    \b
      segbench run suites/demo.yaml
      segbench run suites/demo.yaml --continue     # resume its newest run folder, e.g. after Ctrl-C
      segbench run suites/cityscapes.yaml --device cuda:1 --out runs

    The run folder is named on stderr as the run starts; the last line on
    stdout is its path. Exit 0 when every cell succeeded, 1 when some cell
    failed (the others are still written), 2 for a usage or suite error
    (nothing is written).

    Under torchrun (`torchrun --nproc-per-node N -m segbench run SUITE`) each
    process evaluates a shard of every dataset on its own device; rank 0
    merges the metric states exactly and alone writes and prints.
    """
    _run_and_print(suite, f"`segbench run {suite}", run_dir=run_dir, out=out, device=device, resume=resume,
                   continue_latest=continue_)


def _run_and_print(suite: "Path | dict", resume_hint: str, *, run_dir: Optional[Path], out: Path,
                   device: Optional[str], resume: bool, continue_latest: bool = False) -> None:
    """Run a suite with progress on stderr, print the leaderboard and, last on stdout, the run folder."""
    from segbench.api import execute
    from segbench.distributed import world_from_env
    from segbench.runner import Interrupted
    from segbench.store import load

    world = world_from_env()
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())
    try:
        # Under torchrun, rank 0 alone shows progress (of its own shard) and prints the results.
        with Progress(*columns, console=err_console, disable=not world.main) as progress:
            try:
                outcome = execute(suite, run_dir=run_dir, out=out, device=device, resume=resume,
                                  continue_latest=continue_latest,
                                  reporter=RichReporter(progress, _shard_note(world.size)) if world.main else None)
            except UserError:  # refused before any work: no bars to leave, nor the empty line Progress ends with
                progress.live.transient = True
                progress.live.stop()
                progress.disable = True  # so leaving the block stops nothing more
                raise
    except UserError as error:
        fail(error, world.rank if world.size > 1 else None)
    except Interrupted as stop:
        hint = f"the manifest says so; {resume_hint} --run-dir {stop.run_dir}` resumes it"
        err_console.print(f"[bold yellow]interrupted:[/] {escape(hint)}", highlight=False, soft_wrap=True)
        raise typer.Exit(130) from None
    except KeyboardInterrupt:  # before any cell started: nothing to resume
        err_console.print("[bold yellow]interrupted[/]", highlight=False)
        raise typer.Exit(130) from None
    if not world.main:
        raise typer.Exit(0 if outcome.ok else 1)
    results = load(outcome.run_dir)
    if not results.clean().summary.empty:  # leaderboard_table shows the clean rows
        out_console.print(leaderboard_table(results))
    if not results.robustness.empty:
        out_console.print(robustness_board(results))
    for cell_id, message in outcome.errors.items():
        err_console.print(f"[red]failed:[/] {escape(f'{cell_id}: {message}')}", highlight=False)
    print(outcome.run_dir)
    raise typer.Exit(0 if outcome.ok else 1)


@app.command("eval")
def eval_(
    model: str = typer.Option(..., metavar="TYPE:REF", help="mmseg:CONFIG (a model index name or a config file), "
                              "python:module:function, onnx:FILE, torchscript:FILE, hf:FOLDER, builtin:ARCH, "
                              "predictions:FOLDER."),
    dataset: str = typer.Option(..., metavar="TYPE[:REF]", help="cityscapes:ROOT, ade20k:ROOT, folder:ROOT, "
                                "pascal_voc:ROOT, or a type that takes no REF, such as synthetic."),
    checkpoint: Optional[str] = typer.Option(None, metavar="FILE", help="A local weights file (mmseg, python, "
                                             "builtin)."),
    num_classes: Optional[int] = typer.Option(None, min=1, help="The number of classes, for the model and the "
                                              "dataset where their type takes one: python, onnx and "
                                              "torchscript models and folder datasets need it."),
    out: Path = typer.Option(Path("results"), help="Parent folder: the run goes to OUT/eval/<run id>/."),
    run_dir: Optional[Path] = typer.Option(None, help="Write the run exactly here."),
    device: str = typer.Option("auto", help="auto, cpu, cuda or cuda:N."),
) -> None:
    """Evaluate one model on one dataset without a suite file; writes an ordinary run folder.

    Examples:

    \b
      segbench eval --model builtin:fcn --dataset synthetic
      segbench eval --model mmseg:deeplabv3_r50-d8_4xb2-40k_cityscapes-512x1024 --checkpoint ckpt.pth \\
          --dataset cityscapes:data/cityscapes
      segbench eval --model python:nets:build --num-classes 19 --dataset folder:data/mine

    REF fills the field that the type's registration names (`segbench list models` and `segbench list
    datasets` list the types). Paths are relative to the working folder, where a python model's module
    (nets.py) may lie; exit codes and output are those of `run`.
    """
    from segbench.api import eval_suite

    try:
        suite = eval_suite(model, dataset, checkpoint=checkpoint, num_classes=num_classes, device=device)
    except UserError as error:
        fail(error)
    _run_and_print(suite, "`the same segbench eval", run_dir=run_dir, out=out, device=None, resume=True)


def _shard_note(world_size: int) -> str:
    return f" (rank 0's shard of {world_size})" if world_size > 1 else ""


class ReportFormat(str, Enum):
    md = "md"
    csv = "csv"
    tex = "tex"
    html = "html"


class Prefer(str, Enum):
    newest = "newest"
    last = "last"


class CiStyle(str, Enum):
    pm = "pm"
    interval = "interval"


SUFFIX_FORMATS = {".md": "md", ".markdown": "md", ".csv": "csv", ".tex": "tex", ".html": "html", ".htm": "html"}


@app.command()
def report(
    run_dirs: list[Path] = typer.Argument(..., metavar="RUN_DIR", help="Run folders; several merge into one "
                                          "set of tables."),
    fmt: Optional[ReportFormat] = typer.Option(None, "--format", help="md, csv (the leaderboard alone), tex "
                                               "or html; default: from the suffix of --out, else md."),
    out: Optional[Path] = typer.Option(None, help="Write the report here instead of to stdout."),
    sort: str = typer.Option("mIoU", help="Order models by this metric, averaged over datasets."),
    metric: Optional[list[str]] = typer.Option(None, help="A leaderboard column (repeat it); default: the "
                                               "accuracy, boundary, distance and efficiency figures present."),
    per_class_metric: str = typer.Option("IoU", help="The per-class column of the per-class tables."),
    ci: bool = typer.Option(False, "--ci", help="Image-level bootstrap intervals, and marks for results not "
                            "significantly different from the best."),
    ci_style: CiStyle = typer.Option(CiStyle.pm, help="pm: value ± half the interval; interval: value [lo, hi]."),
    resamples: int = typer.Option(1000, min=10, help="Bootstrap resamples and permutations."),
    seed: int = typer.Option(0, help="Seed of the resampling."),
    alpha: float = typer.Option(0.05, min=0.0, max=1.0, help="Significance level of the paired tests."),
    decimals: int = typer.Option(2, min=0, max=6, help="Decimals shown."),
    prefer: Prefer = typer.Option(Prefer.newest, help="Which result of a (model, dataset) found in several "
                                  "run folders wins: the newest, or the one of the run folder given last."),
    allow_different_data: bool = typer.Option(
        False, "--allow-different-data", help="Report run folders whose data of one dataset name differ (its "
        "fingerprint) side by side, each labelled with its data, instead of refusing them."),
) -> None:
    """Leaderboard, per-class tables and published-vs-measured figures of one or more run folders.

    Examples:

    \b
      segbench report results/demo/20250101-120000-ab12
      segbench report RUN_A RUN_B --out report.html     # both runs in one HTML report
      segbench report RUN --ci --format tex --out table.tex
    """
    from segbench.atomic import atomic_write_bytes
    from segbench.report import ReportOptions, merge_runs, render
    from segbench.store import load

    chosen = fmt.value if fmt else SUFFIX_FORMATS.get(out.suffix.lower(), "md") if out else "md"
    options = ReportOptions(metrics=metric or None, sort=sort, ci=ci, ci_style=ci_style.value,
                            decimals=decimals, per_class_metric=per_class_metric,
                            resamples=resamples, seed=seed, alpha=alpha)
    galleries: dict[Path, bytes] = {}
    try:
        results = merge_runs([load(path) for path in run_dirs], prefer=prefer.value,
                             allow_different_data=allow_different_data)
        if chosen == "html" and out is not None:
            galleries, options.galleries = _galleries(results, out)
        text = render(results, chosen, options)
        if out is None:
            print(text, end="")
            return
        for path, html in galleries.items():  # written once the report has rendered, before it links them
            atomic_write_bytes(path, html)
        atomic_write_bytes(out, text.encode("utf-8"))
    except UserError as error:
        fail(error)
    print(out)


def _galleries(results: "RunResults", report: Path) -> tuple[dict[Path, bytes], dict[str, str]]:
    """Galleries of each model's worst images beside an HTML report, when predictions were saved, and the
    report's links to them."""
    from segbench.gallery import worst_galleries

    files, links, notes = worst_galleries(results, report)
    for note in notes:
        err_console.print(f"[yellow]note:[/] {escape(note)}", highlight=False)
    return files, links


@app.command()
def check(
    baseline: Path = typer.Argument(..., metavar="BASELINE", help="The baseline run folder."),
    candidate: Path = typer.Argument(..., metavar="CANDIDATE",
                                     help="The run folder to check against it."),
    tolerance: Optional[list[str]] = typer.Option(
        None, help="How far a figure may worsen. A number: fractions, in points (default 0.5: half a point "
        "of mIoU). FIGURE=LIMIT: that figure, in its unit (points for fractions, px for distances, a ratio "
        "for latency, throughput and memory), and FIGURE is checked too. Repeat it: --tolerance 0.3 "
        "--tolerance mHD95=2 --tolerance latency_ms_p50=1.2."),
    latency_ratio: float = typer.Option(1.10, min=1.0, help="Largest worsening of latency, throughput, memory "
                                        "and FLOPs allowed, as a ratio."),
    ci: bool = typer.Option(False, "--ci", help="A drop regresses when the paired permutation test over "
                            "images says the candidate is worse (p < alpha), instead of by --tolerance."),
    alpha: float = typer.Option(0.05, min=0.0, max=1.0, help="Significance level of --ci."),
    allow_missing: bool = typer.Option(False, "--allow-missing", help="A (model, dataset) missing from the "
                                       "candidate is not a regression."),
    metric: Optional[list[str]] = typer.Option(None, help="A figure to check (repeat it): any summary figure "
                                               "with a direction, e.g. mHD95 (segbench list metrics); default: "
                                               "the fractions and latencies that leaderboards show, those "
                                               "present."),
    resamples: int = typer.Option(1000, min=10, help="Permutations of --ci."),
    seed: int = typer.Option(0, help="Seed of --ci."),
    relative: Optional[float] = typer.Option(
        None, help="Each fraction checked must reach this share of the baseline's (0.99: 99 %, the MLPerf "
        "rule), instead of --tolerance points."),
    pair: Optional[list[str]] = typer.Option(
        None, help="NET=NET_ONNX: compare model NET of the baseline with model NET_ONNX of the candidate, "
        "dataset by dataset (the same run folder may be given twice), in rows of model NET=NET_ONNX; where "
        "both saved predictions, their pixel agreement is a row. Repeat it for more pairs."),
    agreement: Optional[float] = typer.Option(
        None, help="With --pair: the share of pixels on which the pair's saved predictions must agree "
        "(e.g. 0.999); needs save_predictions: true."),
    allow_different_data: bool = typer.Option(
        False, "--allow-different-data", help="Compare rows of a dataset whose fingerprint differs between "
        "the runs (a note) instead of refusing them."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON, for machines."),
) -> None:
    """Check CANDIDATE against BASELINE: exit 0 when nothing regressed, 1 when something did.

    Examples:

    \b
      segbench check results/baselines/demo results/demo/20250101-120000-ab12
      segbench check BASE CAND --tolerance 0.3 --tolerance mHD95=2 --ci
      segbench check RUN RUN --pair net=net_onnx --relative 0.99     # an exported model against its source

    Run folders made with different metric options, or whose data differ (a dataset's fingerprint), are
    refused (exit 2), with the difference named.
    """
    import json

    from segbench.check import display_rows
    from segbench.check import check as check_runs
    from segbench.store import load

    try:
        points, tolerances = _tolerances(tolerance or [])
        result = check_runs(load(baseline), load(candidate), tolerance=points, tolerances=tolerances,
                            latency_ratio=latency_ratio, ci=ci, alpha=alpha, allow_missing=allow_missing,
                            metrics=metric or None, resamples=resamples, seed=seed, relative=relative,
                            pairs=_pairs(pair or []) or None, agreement=agreement,
                            allow_different_data=allow_different_data)
    except UserError as error:
        fail(error)
    if as_json:
        print(json.dumps(result.to_json(), indent=2))
        raise typer.Exit(0 if result.ok else 1)
    table = Table(title=f"{candidate} against {baseline}")
    for name in ("model", "dataset", "metric", "baseline", "candidate", "change", "p", "status"):
        table.add_column(name, justify="right" if name in ("baseline", "candidate", "change", "p") else "left")
    for row, regressed in zip(display_rows(result), result.table["regressed"]):
        table.add_row(*row, style="bold red" if regressed else None)
    _wide_console().print(table)
    for note in result.notes:
        err_console.print(f"[yellow]note:[/] {escape(note)}", highlight=False)
    count = int(result.table["regressed"].sum())
    print(f"{count} regression(s)" if count else f"no regression ({len(result.table)} checks)")
    raise typer.Exit(0 if result.ok else 1)


def _pairs(values: list[str]) -> list[tuple[str, str]]:
    """``--pair NET=NET_ONNX`` values as (baseline model, candidate model)."""
    pairs = []
    for value in values:
        net, _, deployed = value.partition("=")
        if not net or not deployed:
            raise UserError(f"--pair {value!r}: expected NET=DEPLOYED, two model names, e.g. --pair net=net_onnx",
                            field="pair")
        pairs.append((net, deployed))
    return pairs


def _tolerances(values: list[str]) -> tuple[float, dict[str, float]]:
    """``--tolerance`` values: the points of fractions (a plain number, the last one given; default 0.5) and
    FIGURE=LIMIT pairs."""
    points, named = 0.5, {}
    for value in values:
        name, _, number = value.rpartition("=")
        try:
            limit = float(number)
        except ValueError:
            raise UserError(f"--tolerance {value!r}: expected a number (points, for fractions) or FIGURE=LIMIT, "
                            "e.g. --tolerance mHD95=2", field="tolerance") from None
        if name:
            named[name] = limit
        elif limit >= 0:
            points = limit
        else:
            raise UserError(f"--tolerance {value}: expected at least 0 points", field="tolerance")
    return points, named


@app.command()
def show(
    run_dirs: list[Path] = typer.Argument(..., metavar="RUN_DIR", help="Run folders whose suites had "
                                          "save_predictions: true."),
    out: Path = typer.Option(..., help="The gallery: one self-contained HTML file."),
    dataset: Optional[str] = typer.Option(None, help="The dataset shown; needed when the runs have several."),
    model: Optional[list[str]] = typer.Option(None, help="A model shown (repeat it, in order); default: every "
                                              "model with saved predictions."),
    worst: Optional[int] = typer.Option(None, help="The N images where a model does worst (default: 10, "
                                        "for each model)."),
    by: str = typer.Option("mIoU", help="The per-image figure of --worst: mIoU, aAcc, mAcc, mBF, mHD95, ..."),
    of: Optional[str] = typer.Option(None, help="--worst for this model only."),
    disagree: Optional[int] = typer.Option(None, help="The N images where the first two models' predictions "
                                           "differ on the largest share of labelled pixels."),
    images: Optional[list[str]] = typer.Option(None, help="An image id to show (repeat it)."),
    prefer: Prefer = typer.Option(Prefer.newest, help="As for report: which result of a (model, dataset) "
                                  "found in several run folders is shown."),
    full_max: Optional[int] = typer.Option(None, min=64, help="Bound the longer side of the pictures a click "
                                           "shows (default: full size). Full-size photographs are most of a "
                                           "gallery's size: about 0.5 MB each at 2048x1024."),
    allow_different_data: bool = typer.Option(
        False, "--allow-different-data", help="As for report: show run folders whose data of one dataset name "
        "differ side by side, each dataset labelled with its data, instead of refusing them."),
) -> None:
    """A gallery of image, ground truth, each model's prediction and its error map, with per-image figures.

    One self-contained HTML file: thumbnails, a click shows the picture at full size.

    Examples:

    \b
      segbench show RUN --out worst.html                        # each model's 10 worst images by mIoU
      segbench show RUN --out hd95.html --worst 5 --by mHD95 --of unet
      segbench show RUN_A RUN_B --out diff.html --model fcn --model unet --disagree 8
    """
    from segbench.gallery import gallery
    from segbench.report import merge_runs
    from segbench.atomic import atomic_write_bytes
    from segbench.store import load

    try:
        results = merge_runs([load(path) for path in run_dirs], prefer=prefer.value,
                             allow_different_data=allow_different_data)
        with Progress(TextColumn("gallery rows"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=err_console, transient=True) as bar:
            task = bar.add_task("rows", total=None)
            text, notes = gallery(results, dataset=dataset, models=model or None, worst_count=worst, by=by,
                                  of=of, disagree_count=disagree, image_ids=images or None, full_max=full_max,
                                  progress=lambda done, total: bar.update(task, completed=done, total=total))
        atomic_write_bytes(out, text.encode("utf-8"))
    except UserError as error:
        fail(error)
    for note in notes:
        err_console.print(f"[yellow]note:[/] {escape(note)}", highlight=False)
    err_console.print(f"gallery: {len(text) / 2**20:.1f} MB", highlight=False)
    print(out)


@app.command()
def corrupt(
    suite: Path = typer.Argument(..., metavar="SUITE", help="Suite YAML file holding the dataset."),
    dataset: str = typer.Option(..., help="The name of a dataset of SUITE."),
    out: Path = typer.Option(..., help="Folder of the copies: OUT/<corruption>/<severity>/{images,labels}/."),
    corruption: Optional[list[str]] = typer.Option(None, help="A corruption (repeat it); default: ImageNet-C's "
                                                   "15 common ones; `all`: all 19."),
    severity: Optional[list[int]] = typer.Option(None, help="A severity, 1 to 5 (repeat it); default: 1 to 5."),
    seed: int = typer.Option(0, help="The seed: each image's own is a hash of it with the image id, "
                             "corruption and severity."),
) -> None:
    """Write corrupted copies of a dataset of SUITE, one `folder` dataset per corruption and severity.

    Example:

    \b
      segbench corrupt suites/demo.yaml --dataset shapes --out corrupted --corruption fog --severity 3

    then a suite dataset `{type: folder, root: corrupted/fog/3, num_classes: ...}`.

    Layout: OUT/<corruption>/<severity>/images/<image id>.png (the corrupted image, lossless PNG) and
    OUT/<corruption>/<severity>/labels/<image id>.png (its label, unchanged); a `/` in an image id
    becomes `__`. Deterministic: the same seed gives the same pixels. Needs
    `pip install 'segbench[robustness]'`. The last line on stdout is OUT.
    """
    from segbench.corruptions import COMMON, CORRUPTIONS_ALL, SEVERITIES, write_corrupted_dataset
    from segbench.registry import DATASETS
    from segbench.suite import load_suite

    names = [n for name in (corruption or list(COMMON))
             for n in (CORRUPTIONS_ALL if name == "all" else (name,))]
    try:
        loaded = load_suite(suite)
        entries = {entry.name: entry for entry in loaded.datasets}
        if dataset not in entries:
            raise UserError(f"no dataset {dataset!r} in the suite; its datasets: {', '.join(entries)}",
                            source=str(suite), field="--dataset")
        entry = entries[dataset]
        built = DATASETS[entry.type].build(entry)
        severities = severity or list(SEVERITIES)
        total = len(built.ids()) * len(dict.fromkeys(names)) * len(dict.fromkeys(severities))
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=err_console) as bar:
            task = bar.add_task(f"{dataset}: corrupted images", total=total)
            write_corrupted_dataset(built, out, names, severities, seed=seed,
                                    advance=lambda count: bar.advance(task, count))
    except UserError as error:
        fail(error)
    print(out)


class ListWhat(str, Enum):
    models = "models"
    datasets = "datasets"
    metrics = "metrics"


class ListTable(str, Enum):
    summary = "summary"
    per_class = "per_class"
    per_image = "per_image"


@app.command("list")
def list_(
    what: ListWhat = typer.Argument(..., metavar="WHAT", help="models, datasets or metrics."),
    name: Optional[str] = typer.Option(None, help="models: only mmseg index entries whose name contains this."),
    dataset: Optional[str] = typer.Option(None, help="models: only mmseg index entries for this dataset, e.g. "
                                          "cityscapes."),
    table: ListTable = typer.Option(ListTable.summary, help="metrics: the table whose columns are listed."),
) -> None:
    """List model types (and mmseg's model index), dataset types, or the column catalogue and metric groups.

    Examples:

    \b
      segbench list metrics                    # every column: unit, which way is better, what it means
      segbench list models --name deeplabv3 --dataset cityscapes
      segbench list datasets
    """
    from segbench.registry import DATASETS, MODELS, load_plugins

    try:
        load_plugins()
    except UserError as error:  # a plugin that fails to import
        fail(error)
    if what is ListWhat.models:
        out_console.print(_registrations("model types", MODELS))
        out_console.print(mmseg_index_table(name, dataset))
    elif what is ListWhat.datasets:
        out_console.print(_registrations("dataset types", DATASETS))
    else:
        _wide_console().print(_catalogue_table(table.value))
        _wide_console().print(_groups_table())


def _registrations(title: str, registry: dict) -> Table:
    """One row per registered type, with what its registration says it is."""
    listed = Table(title=title)
    listed.add_column("type", no_wrap=True)
    listed.add_column("what it is")
    for type_name in sorted(registry):
        listed.add_row(type_name, escape(registry[type_name].describe))
    return listed


def _catalogue_table(table: str) -> Table:
    """The declared columns of ``table``, at each metric group's default options."""
    from segbench.registry import catalogue

    listed = Table(title=f"{table} columns (metric groups at their default options)")
    for heading in ("column", "group", "unit", "direction", "bootstrap"):
        listed.add_column(heading, no_wrap=True)
    listed.add_column("meaning")
    for column in catalogue().table(table):
        listed.add_row(column.name, column.group, column.unit, column.direction,
                       "yes" if column.bootstrap else "no", column.meaning)
    return listed


def _groups_table() -> Table:
    """The metric groups: on by default or not (always: a suite cannot turn it off), and what they compute."""
    from segbench.registry import METRICS

    listed = Table(title="metric groups (a suite's `metrics:` section)")
    listed.add_column("group", no_wrap=True)
    listed.add_column("on by default", no_wrap=True)
    listed.add_column("what it computes")
    for group in METRICS.values():
        default = "always" if group.required else "yes" if group.default_on else "no"
        listed.add_row(group.name, default, group.describe)
    return listed


def mmseg_index_table(name: str | None, dataset: str | None) -> Table | str:
    """mmseg's packaged model index, filtered; a hint when mmseg is not installed."""
    from segbench.models.mmseg_adapter import model_index, require_mmseg

    try:
        require_mmseg()
    except UserError as error:
        return f"mmseg model index: not available ({error.message})"
    table = Table(title="mmseg model index (type: mmseg, config: NAME)")
    for column in ("config", "dataset", "mIoU", "mIoU ms+flip"):
        table.add_column(column)
    for entry, info in sorted(model_index().items()):
        if name and name.lower() not in entry.lower():
            continue
        if dataset and dataset.lower().replace("-", "") not in str(info["dataset"]).lower().replace("-", ""):
            continue
        table.add_row(entry, str(info["dataset"]), _number(info["mIoU"]), _number(info["mIoU(ms+flip)"]))
    return table


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


@app.command()
def env() -> None:
    """Print the versions and devices that results would record, as JSON.

    Example:

    \b
      segbench env > environment.json
    """
    import json

    from segbench.environment import environment, resolve_device

    print(json.dumps(environment(resolve_device("auto")), indent=2))
