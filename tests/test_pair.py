"""The deployment gate on a real run: an eager net and its ONNX and TorchScript exports, `check --pair`."""

import json
import warnings

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import segbench
from segbench.api import execute
from segbench.check import AGREEMENT, check, pixel_agreement
from segbench.cli import app
from segbench.images import read_label

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

runner = CliRunner()
SHAPES = {"name": "shapes", "type": "synthetic", "num_images": 6, "height": 48, "width": 64}


def export_onnx(path, net):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript-based exporter is deprecated in favour of dynamo's
        torch.onnx.export(net, (torch.randn(2, 3, 24, 40),), str(path), dynamo=False, input_names=["input"],
                          output_names=["logits"], dynamic_axes={"input": {0: "b", 2: "h", 3: "w"},
                                                                 "logits": {0: "b", 2: "h", 3: "w"}})
    return str(path)


def export_torchscript(path, net):
    torch.jit.trace(net, torch.randn(1, 3, 24, 40)).save(str(path))
    return str(path)


@pytest.fixture
def pair_run(tmp_path, nets):
    """A run of the small net (`python`), its ONNX and TorchScript exports and a perturbed ONNX export,
    with saved predictions."""
    import tiny_nets

    perturbed = tiny_nets.small_convnet(6)
    with torch.no_grad():
        perturbed.layers[-1].weight.add_(0.3 * torch.randn_like(perturbed.layers[-1].weight))
    models = [{"name": "net", "type": "python", "factory": "tiny_nets:small_convnet", "kwargs": {"num_classes": 6},
               "num_classes": 6},
              {"name": "net_onnx", "type": "onnx", "num_classes": 6,
               "path": export_onnx(tmp_path / "net.onnx", tiny_nets.small_convnet(6))},
              {"name": "net_ts", "type": "torchscript", "num_classes": 6,
               "path": export_torchscript(tmp_path / "net.pt", tiny_nets.small_convnet(6))},
              {"name": "net_bad", "type": "onnx", "num_classes": 6,
               "path": export_onnx(tmp_path / "bad.onnx", perturbed)}]
    suite = {"name": "t", "device": "cpu", "batch_size": 2, "num_workers": 0, "save_predictions": True,
             "datasets": [SHAPES], "models": models}
    outcome = execute(suite, run_dir=tmp_path / "run")
    assert outcome.ok, outcome.errors
    return tmp_path / "run"


def _reference_agreement(run, first, second):
    """Independently of segbench.check: the share of all pixels of the saved PNGs that are equal."""
    folders = [run / "cells" / f"{model}__shapes" / "predictions" for model in (first, second)]
    same = total = 0
    for path in sorted(folders[0].glob("*.png")):
        one, other = read_label(path), read_label(folders[1] / path.name)
        same, total = same + int((one == other).sum()), total + one.size
    return same / total


def test_each_export_passes_the_gate_and_a_perturbed_one_fails_it(pair_run):
    run = str(pair_run)
    for export in ("net_onnx", "net_ts"):
        result = runner.invoke(app, ["check", run, run, "--pair", f"net={export}", "--relative", "0.99",
                                     "--agreement", "0.999", "--json"])
        report = json.loads(result.stdout)
        assert result.exit_code == 0, result.output
        assert {r["model"] for r in report["rows"]} == {f"net={export}"}
        [row] = [r for r in report["rows"] if r["metric"] == AGREEMENT]
        assert row["candidate"] == pytest.approx(_reference_agreement(pair_run, "net", export))
        assert row["candidate"] >= 0.999 and row["limit"] == 0.999 and row["dataset"] == "shapes"

    bad = _reference_agreement(pair_run, "net", "net_bad")
    assert bad < 0.999  # the perturbation changes predictions
    result = runner.invoke(app, ["check", run, run, "--pair", "net=net_onnx", "--pair", "net=net_bad",
                                 "--relative", "0.99", "--agreement", "0.999"])
    assert result.exit_code == 1
    assert "net=net_bad" in result.stdout and "REGRESSED: agreement < 99.9 %" in result.stdout
    table = check(segbench.load(run), segbench.load(run), pairs=[("net", "net_onnx"), ("net", "net_bad")],
                  relative=0.99, agreement=0.999).table
    agreement = table[table["metric"] == AGREEMENT].set_index("model")
    assert list(agreement["regressed"]) == [False, True]
    assert agreement.loc["net=net_bad", "candidate"] == pytest.approx(bad)
    # without --agreement the agreement is reported, not required
    table = check(segbench.load(run), segbench.load(run), pairs=[("net", "net_bad")]).table
    [row] = table[table["metric"] == AGREEMENT].to_dict("records")
    assert not row["regressed"] and row["reason"] == "reported" and np.isnan(row["limit"])


def test_pixel_agreement_counts_every_pixel_and_names_missing_predictions(tmp_path):
    from segbench.images import write_label

    for folder, values in (("one", [0, 1, 2, 3]), ("two", [0, 1, 2, 0])):
        (tmp_path / folder).mkdir()
        write_label(tmp_path / folder / "a.png", np.array(values, dtype=np.uint8).reshape(2, 2))
    write_label(tmp_path / "one" / "b.png", np.zeros((2, 2), dtype=np.uint8))
    share, missing = pixel_agreement(tmp_path / "one", tmp_path / "two", ["a", "b"])
    assert share == 0.75 and missing == ["b"]
