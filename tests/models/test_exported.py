"""Exported models (`onnx`, `torchscript`): the same predictions as the eager net, fixed input sizes, bad input."""

import json
import math
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import segbench
from segbench.api import execute
from segbench.config import IMAGENET_MEAN, IMAGENET_STD
from segbench.data.synthetic import SyntheticDataset
from segbench.errors import UserError
from segbench.fingerprint import file_sha256
from segbench.images import read_label

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")  # torch.onnx.export needs it; segbench runs ONNX files with onnxruntime alone

SHAPES = {"name": "shapes", "type": "synthetic", "num_images": 6, "height": 48, "width": 64}
EAGER = {"name": "eager", "type": "python", "factory": "tiny_nets:small_convnet", "kwargs": {"num_classes": 6},
         "num_classes": 6}


def suite(models, **extra):
    return {"name": "t", "device": "cpu", "batch_size": 2, "num_workers": 0, "save_predictions": True,
            "datasets": [SHAPES], "models": models, **extra}


def small_convnet(num_classes=6):
    import tiny_nets
    return tiny_nets.small_convnet(num_classes)


def export_onnx(path, net=None, size=None):
    """Dynamic batch, height and width; with ``size`` [h, w], all fixed (batch 1) instead."""
    example = torch.randn(1, 3, *size) if size else torch.randn(2, 3, 24, 40)
    axes = None if size else {"input": {0: "batch", 2: "height", 3: "width"},
                              "logits": {0: "batch", 2: "h", 3: "w"}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript-based exporter is deprecated in favour of dynamo's
        torch.onnx.export(net or small_convnet(), (example,), str(path), dynamo=False, input_names=["input"],
                          output_names=["logits"], dynamic_axes=axes)
    return path


def export_torchscript(path, net=None):
    torch.jit.trace(net or small_convnet(), torch.randn(1, 3, 24, 40)).save(str(path))
    return path


def export_program(path):
    """A torch.export program with dynamic batch, height and width (an example batch of 1 would fix it)."""
    from torch.export import Dim

    dims = {0: Dim("batch", max=64), 2: Dim("height", min=8, max=4096), 3: Dim("width", min=8, max=4096)}
    program = torch.export.export(small_convnet(), (torch.randn(2, 3, 24, 40),), dynamic_shapes=(dims,))
    torch.export.save(program, str(path))
    return path


def exported(tmp_path, kind, **extra):
    """A model entry of the small net exported as ``kind``: onnx, torchscript (torch.jit) or pt2."""
    if kind == "onnx":
        return {"name": "onnx", "type": "onnx", "path": str(export_onnx(tmp_path / "net.onnx")),
                "num_classes": 6, **extra}
    path = export_torchscript(tmp_path / "net.pt") if kind == "torchscript" else export_program(tmp_path / "net.pt2")
    return {"name": kind, "type": "torchscript", "path": str(path), "num_classes": 6, **extra}


def predictions(run_dir, model):
    folder = Path(run_dir) / "cells" / f"{model}__shapes" / "predictions"
    return {path.stem: read_label(path) for path in sorted(folder.glob("*.png"))}


def agreement(first, second):
    """The fraction of pixels on which two sets of per-image predictions agree."""
    assert first.keys() == second.keys() and first
    same = sum(int((first[key] == second[key]).sum()) for key in first)
    return same / sum(prediction.size for prediction in first.values())


def test_exports_predict_as_the_eager_model(tmp_path, nets):
    models = [EAGER] + [exported(tmp_path, kind) for kind in ("onnx", "torchscript", "pt2")]
    outcome = execute(suite(models), run_dir=tmp_path / "run")
    assert outcome.ok, outcome.errors
    eager = predictions(tmp_path / "run", "eager")
    assert len(np.unique(np.concatenate([p.ravel() for p in eager.values()]))) > 2  # the check means something
    summary = segbench.load(tmp_path / "run").summary.set_index("model")
    for name in ("onnx", "torchscript", "pt2"):
        assert agreement(predictions(tmp_path / "run", name), eager) >= 0.9999, name
        assert summary.loc[name, "mIoU"] == pytest.approx(summary.loc["eager", "mIoU"], abs=1e-3)


@pytest.mark.parametrize("kind, inference", [
    ("onnx", {"flip": True}),
    ("pt2", {"mode": "slide", "crop_size": [32, 32], "stride": [20, 20]}),
    ("torchscript", {"scales": [0.75, 1.0], "flip": True}),
])
def test_exports_follow_the_inference_options(tmp_path, nets, kind, inference):
    models = [{**EAGER, "inference": inference}, exported(tmp_path, kind, inference=inference)]
    assert execute(suite(models), run_dir=tmp_path / "run").ok
    plain = execute(suite([EAGER]), run_dir=tmp_path / "plain")
    assert plain.ok
    eager = predictions(tmp_path / "run", "eager")
    assert agreement(predictions(tmp_path / "run", kind), eager) >= 0.9999
    assert agreement(predictions(tmp_path / "plain", "eager"), eager) < 0.9999  # the options change something


def test_a_torchscript_model_returning_a_dict_is_read_by_its_out_entry(tmp_path, nets):
    import tiny_nets

    path = tmp_path / "dict.pt"
    traced = torch.jit.trace(tiny_nets.wrapped(6, "out"), torch.randn(1, 3, 24, 40), strict=False)
    traced.save(str(path))
    plain = {"name": "plain", "type": "python", "factory": "tiny_nets:pointwise", "kwargs": {"num_classes": 6},
             "num_classes": 6}
    model = {"name": "dict", "type": "torchscript", "path": str(path), "num_classes": 6}
    assert execute(suite([plain, model]), run_dir=tmp_path / "run").ok
    got, expected = (predictions(tmp_path / "run", name) for name in ("dict", "plain"))
    assert agreement(got, expected) == 1.0


def test_a_fixed_size_graph_runs_on_images_of_another_size(tmp_path, nets):
    path = export_onnx(tmp_path / "fixed.onnx", size=(32, 32))
    model = {"name": "fixed", "type": "onnx", "path": str(path), "num_classes": 6, "input_size": [32, 32]}
    outcome = execute(suite([model]), run_dir=tmp_path / "run")  # batches of 2 to a graph of batch size 1
    assert outcome.ok, outcome.errors

    net, data = small_convnet(), SyntheticDataset(num_images=6, height=48, width=64)
    expected = {}
    for i in range(len(data)):  # resized to 32x32, the logits back to 48x64, both bilinear
        image = torch.from_numpy(data.load(i).image).float()
        x = ((image - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)).permute(2, 0, 1)[None]
        with torch.no_grad():
            logits = net(F.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False))
        logits = F.interpolate(logits, size=(48, 64), mode="bilinear", align_corners=False)
        expected[data.ids()[i]] = logits.argmax(1)[0].numpy()
    got = predictions(tmp_path / "run", "fixed")
    assert {prediction.shape for prediction in got.values()} == {(48, 64)}
    assert agreement(got, expected) >= 0.9999


def test_a_fixed_size_graph_without_input_size_is_refused_before_work(tmp_path, nets):
    path = export_onnx(tmp_path / "fixed.onnx", size=(32, 32))
    model = {"name": "fixed", "type": "onnx", "path": str(path), "num_classes": 6}
    with pytest.raises(UserError, match=r"fixed size \(1 x 3 x 32 x 32\).*input_size: \[32, 32\]"):
        segbench.run(suite([model]), run_dir=tmp_path / "run")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("type_, name, content, message", [
    ("onnx", "net.onnx", b"not a model" * 50, "ONNX Runtime cannot load it as a model (InvalidProtobuf"),
    ("torchscript", "net.pt", b"not a model" * 50, "cannot load it as a TorchScript file"),
    ("torchscript", "net.pt2", b"not a model" * 50, "cannot load it as a torch.export program"),
    ("onnx", "absent.onnx", None, "ONNX file not found"),
    ("torchscript", "absent.pt", None, "model file not found"),
])
def test_a_file_that_is_no_model_is_one_error_before_work(tmp_path, type_, name, content, message):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(np.random.default_rng(0).bytes(200) + content)
    model = {"name": "m", "type": type_, "path": str(path), "num_classes": 6}
    with pytest.raises(UserError) as info:
        segbench.run(suite([model]), run_dir=tmp_path / "run")
    text = str(info.value)
    assert message in text and str(path) in text and "\n" not in text
    assert info.value.field == "models[0].path (m)"
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("type_, num_classes, message", [
    ("onnx", 6, "the graph's output has 4 channels (? x 4 x ? x ?), but num_classes is 6"),
    ("onnx", 4, "model 'four' predicts 4 classes but dataset 'shapes' has 6"),
    ("torchscript", 4, "model 'four' predicts 4 classes but dataset 'shapes' has 6"),
])
def test_wrong_num_classes_is_refused_before_work(tmp_path, nets, type_, num_classes, message):
    """num_classes against the graph's fixed output channels (onnx), and against the dataset's classes."""
    export, name = (export_onnx, "four.onnx") if type_ == "onnx" else (export_torchscript, "four.pt")
    path = export(tmp_path / name, net=small_convnet(num_classes=4))
    model = {"name": "four", "type": type_, "path": str(path), "num_classes": num_classes}
    with pytest.raises(UserError) as info:
        segbench.run(suite([model]), run_dir=tmp_path / "run")
    assert info.value.message == message and info.value.field == "models[0].num_classes (four)"
    assert not (tmp_path / "run").exists()


def test_a_torchscript_graph_with_other_channels_than_num_classes_still_fails_its_cell(tmp_path, nets):
    """A TorchScript file does not tell its output channels without running: the cell's check catches it."""
    path = export_torchscript(tmp_path / "four.pt", net=small_convnet(num_classes=4))
    model = {"name": "four", "type": "torchscript", "path": str(path), "num_classes": 6}
    outcome = execute(suite([model]), run_dir=tmp_path / "run")
    assert outcome.errors == {"four__shapes": "UserError: the model returned 4 channels, but num_classes is 6"}


def test_without_onnxruntime_the_check_names_the_extra(tmp_path, nets, monkeypatch):
    model = exported(tmp_path, "onnx")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(UserError, match=r"pip install 'segbench\[onnx\]'"):
        segbench.run(suite([model]), run_dir=tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_an_unavailable_provider_is_refused_before_work(tmp_path, nets):
    model = exported(tmp_path, "onnx", providers=["NoSuchExecutionProvider", "CPUExecutionProvider"])
    with pytest.raises(UserError, match="has no NoSuchExecutionProvider; available: .*CPUExecutionProvider") as info:
        segbench.run(suite([model]), run_dir=tmp_path / "run")
    assert info.value.field == "models[0].providers (onnx)"
    assert not (tmp_path / "run").exists()


def test_provenance_and_resume_follow_the_file(tmp_path, nets):
    model = exported(tmp_path, "onnx")
    run_dir = tmp_path / "run"
    assert execute(suite([model]), run_dir=run_dir).ok
    record = json.loads((run_dir / "cells" / "onnx__shapes" / "cell.json").read_text())
    provenance = record["provenance"]
    assert provenance["type"] == "onnx" and provenance["path"] == model["path"]
    assert provenance["sha256"] == file_sha256(Path(model["path"]))
    assert provenance["providers"] == ["CPUExecutionProvider"]
    assert provenance["input_size"] is None and provenance["trained"] is True
    assert record["summary"]["trained"] is True
    assert execute(suite([model]), run_dir=run_dir).statuses == {"onnx__shapes": "skipped"}

    import tiny_nets
    torch.manual_seed(1)
    export_onnx(Path(model["path"]), net=tiny_nets.SmallConvNet(6).eval())  # same path, other weights
    assert execute(suite([model]), run_dir=run_dir).statuses == {"onnx__shapes": "complete"}
    record = json.loads((run_dir / "cells" / "onnx__shapes" / "cell.json").read_text())
    assert record["provenance"]["sha256"] == file_sha256(Path(model["path"]))


def test_torchscript_provenance_names_the_format(tmp_path, nets):
    models = [exported(tmp_path, "torchscript"), exported(tmp_path, "pt2")]
    assert execute(suite(models, save_predictions=False), run_dir=tmp_path / "run").ok
    for name, file_format in (("torchscript", "torch.jit"), ("pt2", "torch.export")):
        record = json.loads((tmp_path / "run" / "cells" / f"{name}__shapes" / "cell.json").read_text())
        assert record["provenance"]["type"] == "torchscript"
        assert record["provenance"]["format"] == file_format


def test_the_profiler_times_the_session_run(tmp_path, nets):
    efficiency = {"warmup": 0, "iters": 2}
    outcome = execute(suite([exported(tmp_path, "onnx")], save_predictions=False, efficiency=efficiency),
                      run_dir=tmp_path / "run")
    assert outcome.ok, outcome.errors
    row = segbench.load(tmp_path / "run").summary.iloc[0]
    assert row["model_efficiency_status"] == "ok" and row["efficiency_status"] == "ok"
    assert row["model_latency_ms_p50"] > 0 and row["latency_ms_p50"] > 0
    # ONNX Runtime holds the weights: torch sees no parameter and no operator, so no figure rather than 0
    assert math.isnan(row["params"]) and math.isnan(row["gflops_per_image"])
    notes = set(segbench.load(tmp_path / "run").efficiency["note"])
    assert notes == {"the network's weights are not torch's (e.g. ONNX Runtime's): params and FLOPs not counted"}


def test_segbench_imports_no_onnxruntime():
    """Nor onnx, nor transformers: each is imported only by a suite that uses a model of its type."""
    code = ("import sys; import segbench; from segbench.registry import MODELS, load_plugins; load_plugins(); "
            "assert {'onnx', 'torchscript', 'hf'} <= set(MODELS); "
            "loaded = {'onnxruntime', 'onnx', 'transformers'} & set(sys.modules); assert not loaded, loaded")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("device, available, expected", [
    ("cuda", ["CUDAExecutionProvider", "CPUExecutionProvider"], ["CUDAExecutionProvider", "CPUExecutionProvider"]),
    ("cuda:1", ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
     ["CUDAExecutionProvider", "CPUExecutionProvider"]),
    ("cpu", ["CUDAExecutionProvider", "CPUExecutionProvider"], ["CPUExecutionProvider"]),
    ("cuda", ["CPUExecutionProvider"], ["CPUExecutionProvider"]),
])
def test_default_providers_take_cuda_only_for_a_cuda_device_that_onnxruntime_has(monkeypatch, device, available,
                                                                                 expected):
    import onnxruntime

    from segbench.models.exported import default_providers

    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: available)
    assert default_providers(torch.device(device)) == expected
