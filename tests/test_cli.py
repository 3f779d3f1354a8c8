"""The command line as a user runs it: a real process, its exit code, its output, its files."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from textwrap import dedent

import pandas as pd
import pytest

SUITE = """\
name: tiny
device: cpu
batch_size: 2
num_workers: 1
datasets:
  - name: shapes
    type: synthetic
    num_images: 6
models:
  - name: fcn
    type: builtin
    arch: fcn
  - name: unet
    type: builtin
    arch: unet
"""


def segbench(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "segbench", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=300)


def test_run_writes_the_run_folder_and_prints_its_path_last(tmp_path):
    suite = tmp_path / "tiny.yaml"
    suite.write_text(SUITE)
    result = segbench("run", str(suite), "--out", str(tmp_path / "results"))
    assert result.returncode == 0, result.stderr
    run_dir = Path(result.stdout.strip().splitlines()[-1])
    assert run_dir.parent == tmp_path / "results" / "tiny"
    for name in ("manifest.json", "summary.parquet", "summary.csv", "per_class.parquet",
                 "per_image.parquet", "cells/fcn__shapes/cell.json", "cells/unet__shapes/cell.json"):
        assert (run_dir / name).is_file(), name
    summary = pd.read_parquet(run_dir / "summary.parquet")
    for column in ("model", "dataset", "aAcc", "mAcc", "mIoU", "fwIoU", "mDice"):
        assert column in summary.columns
    per_class = pd.read_parquet(run_dir / "per_class.parquet")
    for column in ("model", "dataset", "class_id", "class_name", "IoU", "Acc", "Dice", "Precision", "Recall"):
        assert column in per_class.columns
    assert len(per_class) == 2 * 6 and len(pd.read_parquet(run_dir / "per_image.parquet")) == 2 * 6
    # trained weights: real numbers, and different ones per model
    assert summary["mIoU"].min() > 0.5 and summary["mIoU"].nunique() == 2
    assert pd.read_csv(run_dir / "summary.csv")["mIoU"].tolist() == pytest.approx(summary["mIoU"].tolist())
    assert "mIoU" in result.stdout  # the leaderboard


def test_run_dir_is_used_exactly(tmp_path):
    suite = tmp_path / "tiny.yaml"
    suite.write_text(SUITE.replace("num_images: 6", "num_images: 2"))
    result = segbench("run", str(suite), "--run-dir", str(tmp_path / "exact"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == str(tmp_path / "exact")


@pytest.mark.parametrize("mistake, expected", [
    ("name: tiny\ndatasets: [\n", "malformed YAML"),
    (SUITE.replace("    num_images: 6", "    num_images: 6\n    colour: red"), "unknown key 'colour'"),
    (SUITE.replace("num_images: 6", "num_images: six"), "num_images"),
])
def test_suite_mistakes_exit_2_with_one_message_and_write_nothing(tmp_path, mistake, expected):
    suite = tmp_path / "bad.yaml"
    suite.write_text(mistake)
    result = segbench("run", str(suite), "--out", str(tmp_path / "results"))
    assert result.returncode == 2
    assert expected in result.stderr and str(suite) in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "results").exists()


def test_failing_cell_exits_1_and_keeps_the_others(tmp_path, nets):
    suite = tmp_path / "s.yaml"
    suite.write_text(SUITE + "  - {name: bad, type: python, factory: 'tiny_nets:exploding', num_classes: 6}\n")
    result = segbench("run", str(suite), "--run-dir", str(tmp_path / "run"))
    assert result.returncode == 1
    assert "boom in forward" in result.stderr
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert {k: v["status"] for k, v in manifest["cells"].items()} == {
        "fcn__shapes": "complete", "unet__shapes": "complete", "bad__shapes": "failed"}


def slow_run(tmp_path: Path, images: int, seconds: dict[str, float], **pipes: Any) -> tuple[Path, subprocess.Popen]:
    """A suite of `tiny_nets:slow` models (name -> seconds per image) and `segbench run` of it, started."""
    suite = tmp_path / "slow.yaml"
    models = "".join(f'  - {{name: {name}, type: python, factory: "tiny_nets:slow", '
                     f'kwargs: {{num_classes: 6, seconds: {wait}}}, num_classes: 6}}\n'
                     for name, wait in seconds.items())
    suite.write_text("name: slow\ndevice: cpu\nbatch_size: 1\nnum_workers: 0\ndatasets:\n"
                     f"  - {{name: shapes, type: synthetic, num_images: {images}, height: 16, width: 16}}\n"
                     f"models:\n{models}")
    command = [sys.executable, "-m", "segbench", "run", str(suite), "--run-dir", str(tmp_path / "run")]
    return suite, subprocess.Popen(command, env=os.environ, **pipes)


def test_killed_run_resumes_without_half_written_files(tmp_path, nets):
    suite, process = slow_run(tmp_path, 6, {"first": 0.05, "second": 0.5},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    run_dir = tmp_path / "run"
    first = run_dir / "cells" / "first__shapes" / "cell.json"
    deadline = time.monotonic() + 120
    while not first.is_file() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert first.is_file()
    time.sleep(1.0)  # well inside the second cell (6 images x 0.5 s)
    process.send_signal(signal.SIGKILL)
    process.wait()

    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["cells"]["second__shapes"]["status"] == "running"
    assert not (run_dir / "cells" / "second__shapes").exists()
    first_mtime = first.stat().st_mtime_ns

    result = segbench("run", str(suite), "--run-dir", str(run_dir))
    assert result.returncode == 0, result.stderr
    assert "first__shapes: complete in this run folder, skipped" in result.stderr
    assert first.stat().st_mtime_ns == first_mtime
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert {v["status"] for v in manifest["cells"].values()} == {"complete"}
    leftovers = [p for p in run_dir.rglob("*") if ".tmp" in p.name]
    assert leftovers == []
    assert sorted(pd.read_parquet(run_dir / "summary.parquet")["model"]) == ["first", "second"]


def _cell_status(manifest: Path, cell: str) -> str | None:
    try:
        return json.loads(manifest.read_text())["cells"][cell]["status"]
    except (OSError, ValueError, KeyError):  # not written yet
        return None


def test_ctrl_c_exits_130_and_says_how_to_resume(tmp_path, nets):
    _, process = slow_run(tmp_path, 20, {"slow": 0.5}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    run_dir = tmp_path / "run"
    manifest = run_dir / "manifest.json"
    deadline = time.monotonic() + 120
    while _cell_status(manifest, "slow__shapes") != "running" and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130
    assert f"--run-dir {run_dir}` resumes it" in err and "Traceback" not in err
    record = json.loads(manifest.read_text())
    assert record["status"] == "interrupted" and record["cells"]["slow__shapes"]["status"] == "interrupted"


def test_list_and_env(tmp_path):
    models = segbench("list", "models")
    assert models.returncode == 0 and "builtin" in models.stdout and "unet" in models.stdout
    rows = table_rows(models.stdout)  # each type with what its registration says it is
    assert rows["builtin"][1] == "segbench's own nets: deeplabv3, fcn, pspnet, unet"
    assert {"python", "predictions", "mmseg"} <= set(rows)
    datasets = segbench("list", "datasets").stdout
    assert "synthetic" in datasets and {"synthetic", "folder", "cityscapes"} <= set(table_rows(datasets))
    assert "accuracy" in segbench("list", "metrics").stdout
    env = json.loads(segbench("env").stdout)
    assert env["versions"]["segbench"] and env["device"] == "cpu"


def table_rows(text: str) -> dict[str, list[str]]:
    """The rows of the rich tables in ``text`` by their first cell (wrapped continuation lines left out)."""
    rows = {}
    for line in text.splitlines():
        if line.startswith("│"):
            cells = [cell.strip() for cell in line.strip().strip("│").split("│")]
            if cells[0]:
                rows[cells[0]] = cells
    return rows


def test_list_metrics_prints_the_column_catalogue_and_the_groups():
    result = segbench("list", "metrics")
    assert result.returncode == 0, result.stderr
    rows = table_rows(result.stdout)
    assert rows["mIoU"][1:5] == ["accuracy", "fraction", "higher", "yes"]
    assert rows["mHD95"][1:5] == ["distance", "px", "lower", "yes"]
    assert rows["latency_ms_p50"][1:5] == ["efficiency", "ms", "lower", "no"]
    assert rows["latency_ms_p50"][5].startswith("median latency")
    assert rows["accuracy"][1] == "always" and rows["boundary"][1] == "yes"
    assert rows["boundary"][2].startswith("boundary F-score")
    per_class = table_rows(segbench("list", "metrics", "--table", "per_class").stdout)
    assert per_class["HD95"][1:5] == ["distance", "px", "lower", "no"] and "mIoU" not in per_class


def test_the_run_leaderboard_shows_the_report_default_columns(tmp_path, fake_runs):
    from rich.console import Console

    from segbench.cli import leaderboard_table
    from segbench.store import load

    cells = {(model, "d"): fake_runs.confusions(i, 5, accuracy=accuracy)
             for i, (model, accuracy) in enumerate((("weak", 0.6), ("strong", 0.95)))}
    extra = {("weak", "d"): {"mHD99": 9.0, "latency_ms_p50": 3.0, "params": 2_500_000},
             ("strong", "d"): {"mHD99": 5.0, "latency_ms_p50": 4.0, "params": 1_000_000}}
    run = load(fake_runs.write(tmp_path / "run", cells, extra=extra,
                               suite_metrics={"accuracy": {}, "distance": {"percentile": 99}}))
    console = Console(record=True, width=200)
    console.print(leaderboard_table(run))
    text = console.export_text()
    quality, efficiency = [[cell.strip() for cell in line.strip("┃").split("┃")]
                           for line in text.splitlines() if line.startswith("┃")]
    assert quality == ["dataset", "model", "mIoU", "aAcc", "mAcc", "mHD99 [px]"]
    assert efficiency == ["dataset", "model", "latency_ms_p50 [ms]", "params [M]"]
    summary = run.summary.set_index("model")
    lines = [line for line in text.splitlines() if line.startswith("│")]
    assert "strong" in lines[0] and "weak" in lines[1]  # best mIoU first
    assert lines[0].split("│")[3].strip() == f"{100 * summary.loc['strong', 'mIoU']:.2f}"
    assert [line.split("│")[6].strip() for line in lines[:2]] == ["5.00", "9.00"]
    assert [line.split("│")[4].strip() for line in lines[2:]] == ["1.00", "2.50"]


# ---------------------------------------------------------------- issue 15: a smoother first hour

def test_run_names_its_folder_on_stderr_before_the_first_cell(tmp_path):
    suite = tmp_path / "tiny.yaml"
    suite.write_text(SUITE.replace("num_images: 6", "num_images: 2"))
    result = segbench("run", str(suite), "--out", str(tmp_path / "results"))
    assert result.returncode == 0, result.stderr
    run_dir = result.stdout.strip().splitlines()[-1]
    assert f"run folder: {run_dir}" in result.stderr
    assert result.stderr.index("run folder:") < result.stderr.index("fcn__shapes")


def test_continue_resumes_the_newest_run_folder_of_the_suite(tmp_path):
    suite = tmp_path / "tiny.yaml"
    suite.write_text(SUITE.replace("num_images: 6", "num_images: 2"))
    out = tmp_path / "results"
    older = out / "tiny" / "20000101-000000-aaaa"  # an older run, by its manifest and by its name
    older.mkdir(parents=True)
    (older / "manifest.json").write_text(json.dumps({"created": "2000-01-01T00:00:00+00:00"}))
    first = segbench("run", str(suite), "--out", str(out))
    assert first.returncode == 0, first.stderr
    newest = first.stdout.strip().splitlines()[-1]
    again = segbench("run", str(suite), "--out", str(out), "--continue")
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip().splitlines()[-1] == newest
    assert "fcn__shapes: complete in this run folder, skipped" in again.stderr
    assert sorted(p.name for p in (out / "tiny").iterdir()) == sorted(["20000101-000000-aaaa",
                                                                      Path(newest).name])


def test_continue_without_a_run_or_with_run_dir_exits_2(tmp_path):
    suite = tmp_path / "tiny.yaml"
    suite.write_text(SUITE)
    none = segbench("run", str(suite), "--out", str(tmp_path / "results"), "--continue")
    assert none.returncode == 2
    assert "no run folder of suite 'tiny'" in none.stderr and "Traceback" not in none.stderr
    both = segbench("run", str(suite), "--continue", "--run-dir", str(tmp_path / "x"))
    assert both.returncode == 2 and "--run-dir" in both.stderr
    assert not (tmp_path / "results").exists() and not (tmp_path / "x").exists()


@pytest.mark.parametrize("model, field", [
    ("{name: m, type: builtin, arch: fcn, weights: 'https://example.org/fcn.pth'}", "weights"),
    ("{name: m, type: python, factory: 'a:b', num_classes: 6, checkpoint: 's3://bucket/w.pth'}", "checkpoint"),
    ("{name: m, type: onnx, path: 'http://example.org/m.onnx', num_classes: 6}", "path"),
])
def test_a_url_for_weights_is_a_suite_error_saying_to_fetch_it_first(tmp_path, model, field):
    suite = tmp_path / "url.yaml"
    suite.write_text(SUITE + f"  - {model}\n")
    result = segbench("run", str(suite), "--out", str(tmp_path / "results"))
    assert result.returncode == 2, result.stderr
    text = " ".join(result.stderr.split())
    assert "segbench downloads nothing: fetch it first, e.g. `wget" in text and field in text
    assert not (tmp_path / "results").exists()


def test_factory_module_beside_the_suite_imports_under_the_console_script(tmp_path):
    script = Path(sys.executable).parent / "segbench"
    if not script.is_file():
        pytest.skip("no segbench console script beside the interpreter")
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "my_local_nets.py").write_text(
        "import torch\nfrom torch import nn\n\ndef build(num_classes):\n"
        "    torch.manual_seed(0)\n    return nn.Conv2d(3, num_classes, kernel_size=1)\n")
    (folder / "s.yaml").write_text(dedent("""\
        name: local
        device: cpu
        num_workers: 0
        datasets: [{name: shapes, type: synthetic, num_images: 2}]
        models: [{name: mine, type: python, factory: 'my_local_nets:build', kwargs: {num_classes: 6},
                  num_classes: 6}]
        """))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run([str(script), "run", str(folder / "s.yaml"), "--run-dir", str(tmp_path / "run")],
                            capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    record = json.loads((tmp_path / "run" / "cells" / "mine__shapes" / "cell.json").read_text())
    assert record["provenance"]["trained"] == "unknown"
    assert "random weights" not in result.stderr  # the untrained warning is for False only


def test_factory_without_a_colon_is_explained_in_words(tmp_path):
    suite = tmp_path / "s.yaml"
    suite.write_text(SUITE + "  - {name: m, type: python, factory: nets.build, num_classes: 6}\n")
    result = segbench("run", str(suite), "--out", str(tmp_path / "results"))
    assert result.returncode == 2
    assert "write the factory as 'module:function', e.g. 'nets:build'" in " ".join(result.stderr.split())


def test_the_run_leaderboard_marks_models_with_random_weights(tmp_path):
    suite = tmp_path / "s.yaml"
    suite.write_text(SUITE.replace("num_images: 6", "num_images: 2")
                     + "  - {name: rnd, type: builtin, arch: fcn, weights: random}\n")
    result = segbench("run", str(suite), "--run-dir", str(tmp_path / "run"))
    assert result.returncode == 0, result.stderr
    assert "rnd†" in result.stdout and "fcn†" not in result.stdout
    assert "† random weights: not a trained model" in result.stdout
    summary = pd.read_parquet(tmp_path / "run" / "summary.parquet").set_index("model")
    assert summary.loc["fcn", "trained"] == True and summary.loc["rnd", "trained"] == False  # noqa: E712


def test_eval_runs_one_model_on_one_dataset_without_a_suite_file(tmp_path):
    (tmp_path / "evalnets.py").write_text(
        "import torch\nfrom torch import nn\n\ndef build():\n"
        "    torch.manual_seed(0)\n    return nn.Conv2d(3, 6, kernel_size=1)\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run([sys.executable, "-m", "segbench", "eval", "--model", "python:evalnets:build",
                             "--num-classes", "6", "--dataset", "synthetic", "--device", "cpu",
                             "--out", "res"], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    run_dir = tmp_path / result.stdout.strip().splitlines()[-1]
    assert run_dir.parent == tmp_path / "res" / "eval"
    summary = pd.read_parquet(run_dir / "summary.parquet")
    assert summary[["model", "dataset"]].values.tolist() == [["build", "synthetic"]]
    bad = segbench("eval", "--model", "evalnets.build", "--dataset", "synthetic", cwd=tmp_path)
    assert bad.returncode == 2 and "expected TYPE:REF" in bad.stderr
    assert "Examples" in segbench("eval", "--help").stdout


COMMANDS = ("run", "eval", "report", "check", "show", "corrupt", "list", "env")


def test_every_command_help_has_examples_and_flags_without_value_placeholders():
    for command in COMMANDS:
        result = segbench(command, "--help")
        assert result.returncode == 0, result.stderr
        assert "Example" in result.stdout and f"\n    segbench {command} " in result.stdout, command
        assert "<bool>" not in result.stdout, command
    flags = [line.split() for line in segbench("run", "--help").stdout.splitlines()
             if line.strip().startswith(("--continue", "--resume"))]
    assert [words[:3] for words in flags] == [["--resume", "/", "--no-resume"], ["--continue", "Resume", "the"]]


OUTPUTS_MODULE = """\
import torch
from torch import nn
from transformers.modeling_outputs import SemanticSegmenterOutput


class Wrapped(nn.Module):
    def __init__(self, wrap):
        super().__init__()
        torch.manual_seed(0)
        self.conv, self.wrap = nn.Conv2d(3, 6, kernel_size=1), wrap

    def forward(self, x):
        return self.wrap(self.conv(x))


def plain():
    return Wrapped(lambda logits: logits)


def as_dict():
    return Wrapped(lambda logits: {"out": logits, "aux": -logits})


def as_tuple():
    return Wrapped(lambda logits: (logits, -logits))


def as_transformers():
    return Wrapped(lambda logits: SemanticSegmenterOutput(logits=logits))


def as_text():
    return Wrapped(lambda logits: "logits")
"""


def test_eval_reads_dict_tuple_and_transformers_outputs_of_a_module_in_the_working_folder(tmp_path):
    """Under the console script, with no PYTHONPATH: `python:outputs:...` imports outputs.py from the working
    folder, and every form of output predicts exactly what the plain tensor does; anything else fails the cell
    in one line saying what the model returned."""
    script = Path(sys.executable).parent / "segbench"
    if not script.is_file():
        pytest.skip("no segbench console script beside the interpreter")
    (tmp_path / "outputs.py").write_text(OUTPUTS_MODULE)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}

    def evaluate(factory: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(script), "eval", "--model", f"python:outputs:{factory}", "--num-classes", "6",
                               "--dataset", "synthetic", "--device", "cpu", "--run-dir", factory],
                              capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)

    counts = {}
    for factory in ("plain", "as_dict", "as_tuple", "as_transformers"):
        result = evaluate(factory)
        assert result.returncode == 0, result.stderr
        per_image = pd.read_parquet(tmp_path / factory / "per_image.parquet")
        counts[factory] = per_image["area_intersect"].map(list).tolist()
    assert counts["as_dict"] == counts["as_tuple"] == counts["as_transformers"] == counts["plain"]
    failed = evaluate("as_text")
    assert failed.returncode == 1
    message = "the model returned a str; expected a tensor N x K x H x W"
    assert f"as_text__synthetic: UserError: {message}" in " ".join(failed.stderr.split())
    error = json.loads((tmp_path / "as_text" / "manifest.json").read_text())["cells"]["as_text__synthetic"]["error"]
    assert message in error and "\n" not in error


def test_eval_errors_name_the_types_that_take_the_value(tmp_path):
    synthetic_root = segbench("eval", "--model", "builtin:fcn", "--dataset", "synthetic:data", cwd=tmp_path)
    assert synthetic_root.returncode == 2
    assert ("--dataset 'synthetic:data': type 'synthetic' takes no REF, write --dataset synthetic; the types that "
            "take one: ade20k, cityscapes, folder, pascal_voc") in " ".join(synthetic_root.stderr.split())
    onnx_weights = segbench("eval", "--model", "onnx:m.onnx", "--checkpoint", "w.pth", "--num-classes", "6",
                            "--dataset", "synthetic", cwd=tmp_path)
    assert onnx_weights.returncode == 2
    assert ("--checkpoint: model type 'onnx' takes no checkpoint; the types that do: builtin, mmseg, python"
            in " ".join(onnx_weights.stderr.split()))
    no_ref = segbench("eval", "--model", "mmseg", "--dataset", "synthetic", cwd=tmp_path)
    assert no_ref.returncode == 2 and "--model 'mmseg': expected mmseg:CONFIG" in no_ref.stderr
    for result in (synthetic_root, onnx_weights, no_ref):
        assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not (tmp_path / "results").exists()


WITHOUT_EXTRAS = '''\
"""segbench's console script in an environment where the optional extras are not installed."""
import sys
from importlib.abc import MetaPathFinder


class Missing(MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in ("transformers", "onnxruntime"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, Missing())
from segbench.cli import app

app(prog_name="segbench")
'''


@pytest.mark.parametrize("model, hint", [
    ("{name: seg, type: hf, path: hf_model}", "type 'hf' needs transformers: pip install 'segbench[hf]'"),
    ("{name: net, type: onnx, path: net.onnx, num_classes: 6}",
     "model type 'onnx' needs ONNX Runtime: pip install 'segbench[onnx]'"),
])
def test_a_missing_extra_is_named_with_its_brackets(tmp_path, model, hint):
    """The install hint is printed as written: rich must not take `[hf]` for markup and drop it."""
    (tmp_path / "hf_model").mkdir()
    script = tmp_path / "without_extras.py"
    script.write_text(WITHOUT_EXTRAS)
    suite = tmp_path / "s.yaml"
    suite.write_text(f"name: t\ndevice: cpu\ndatasets: [{{name: shapes, type: synthetic, num_images: 2}}]\n"
                     f"models: [{model}]\n")
    result = subprocess.run([sys.executable, str(script), "run", str(suite), "--run-dir", str(tmp_path / "run")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr
    assert hint in " ".join(result.stderr.split())
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("what, built_in", [
    ("models", {"builtin", "hf", "mmseg", "onnx", "predictions", "python", "torchscript"}),
    ("datasets", {"ade20k", "cityscapes", "folder", "mmseg", "pascal_voc", "synthetic"}),
])
def test_list_says_what_every_model_source_and_dataset_type_is(what, built_in):
    """Each registration's describe= line, none left empty (the mmseg model index after the table is not read)."""
    result = segbench("list", what)
    assert result.returncode == 0, result.stderr
    rows = table_rows(result.stdout.split("└")[0])
    assert built_in <= set(rows)
    assert [name for name, cells in rows.items() if not cells[1]] == []
