"""mmsegmentation models: parity with mmseg's own test loop, checkpoint rules, class checks.

These run for real in CI (`make install` builds mmcv with its ops); none is skipped.
"""

import argparse
import copy
import re
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

import segbench
from segbench.api import execute
from segbench.errors import UserError
from segbench.models.mmseg_adapter import (MMSegAdapter, load_checkpoint, model_index, require_mmseg,
                                           resolve_config)
from segbench.models.mmseg_adapter import MMSegModelConfig
from segbench.data.cityscapes import CityscapesDataset
from layouts import make_cityscapes

CONFIG = "cgnet_fcn_4xb4-60k_cityscapes-680x680"
SIZE = (48, 96)  # H, W of the generated images
# Keep the images at their size (the config resizes to 2048x1024) so the test runs in seconds.
SMALL = {"test_dataloader.dataset.pipeline.1.scale": (SIZE[1], SIZE[0])}
SLIDE = {**SMALL, "model.test_cfg": {"mode": "slide", "crop_size": (32, 48), "stride": (24, 32)}}
# What a suite file gives: YAML has lists, not tuples.
SLIDE_FROM_YAML = {"test_dataloader.dataset.pipeline.1.scale": [SIZE[1], SIZE[0]],
                   "model.test_cfg": {"mode": "slide", "crop_size": [32, 48], "stride": [24, 32]}}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """The config's model with seeded random weights, saved as an mmseg checkpoint."""
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmseg.registry import MODELS

    init_default_scope("mmseg")
    config = Config.fromfile(str(resolve_config(CONFIG)[0]))
    torch.manual_seed(0)
    model = MODELS.build(config.model)
    path = tmp_path_factory.mktemp("ckpt") / "cgnet_random.pth"
    torch.save({"state_dict": model.state_dict(), "meta": {"seed": 0}}, path)
    return path


@pytest.fixture(scope="module")
def cityscapes(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cityscapes")
    make_cityscapes(root, train_ids=True, size=SIZE)
    return root


def run_segbench(tmp_path: Path, root: Path, model: dict) -> "segbench.store.RunResults":
    suite = {"name": "mm", "device": "cpu", "num_workers": 0, "batch_size": 2,
             "datasets": [{"name": "cs", "type": "cityscapes", "root": str(root)}],
             "models": [{"name": "cgnet", "type": "mmseg", "config": CONFIG, **model}]}
    outcome = execute(suite, run_dir=tmp_path / "run")
    assert outcome.ok, outcome.errors
    return segbench.load(outcome.run_dir)


def run_mmseg_test_loop(tmp_path: Path, root: Path, checkpoint: Path, cfg_options: dict,
                        tta: bool = False) -> np.ndarray:
    """mmseg's own Runner test loop with IoUMetric (as tools/test.py [--tta]); summed per-class counts (4 x K)."""
    from mmengine.config import Config
    from mmengine.runner import Runner
    from mmseg.evaluation import IoUMetric

    config = Config.fromfile(str(resolve_config(CONFIG)[0]))
    config.merge_from_dict(cfg_options, allow_list_keys=True)
    if tta:  # what tools/test.py --tta does
        config.test_dataloader.dataset.pipeline = config.tta_pipeline
        config.tta_model.module = config.model
        config.model = config.tta_model
    config.test_dataloader.dataset.data_root = str(root)
    config.test_dataloader.num_workers = 0
    config.test_dataloader.pop("persistent_workers", None)
    config.load_from = str(checkpoint)
    config.work_dir = str(tmp_path / "mmseg_work")
    config.launcher = "none"
    captured = []
    original = IoUMetric.compute_metrics

    def capture(self, results):
        captured.append(np.stack([torch.stack([r[i] for r in results]).sum(0).numpy() for i in range(4)]))
        return original(self, results)

    IoUMetric.compute_metrics = capture
    try:
        Runner.from_cfg(config).test()
    finally:
        IoUMetric.compute_metrics = original
    return captured[0]


@pytest.mark.parametrize("mode, cfg_options", [("whole", SMALL), ("slide", SLIDE)])
def test_per_class_counts_equal_mmseg_test_loop(tmp_path, cityscapes, checkpoint, mode, cfg_options):
    suite_options = SLIDE_FROM_YAML if mode == "slide" else cfg_options
    results = run_segbench(tmp_path, cityscapes, {"checkpoint": str(checkpoint), "cfg_options": suite_options})
    ours = np.stack([np.sum(np.stack(results.per_image[c].to_list()), axis=0)
                     for c in ("area_intersect", "area_union", "area_pred_label", "area_label")])
    theirs = run_mmseg_test_loop(tmp_path, cityscapes, checkpoint, cfg_options)
    assert np.array_equal(ours, theirs)
    # the comparison means something only if the random model predicts several classes
    assert np.count_nonzero(ours[2]) >= 3
    iou = theirs[0] / theirs[1]
    assert results.summary["mIoU"].iloc[0] == pytest.approx(np.nanmean(iou))
    assert results.summary["trained"].iloc[0]  # a checkpoint was given


def test_tta_counts_equal_mmseg_test_loop_with_tta(tmp_path, cityscapes, checkpoint):
    """The config's multi-scale + flip pipeline and SegTTAModel, as `tools/test.py --tta`."""
    results = run_segbench(tmp_path, cityscapes, {"checkpoint": str(checkpoint), "tta": True})
    ours = np.stack([np.sum(np.stack(results.per_image[c].to_list()), axis=0)
                     for c in ("area_intersect", "area_union", "area_pred_label", "area_label")])
    theirs = run_mmseg_test_loop(tmp_path, cityscapes, checkpoint, {}, tta=True)
    assert np.array_equal(ours, theirs)
    plain = run_segbench(tmp_path / "plain", cityscapes, {"checkpoint": str(checkpoint), "cfg_options": SMALL})
    assert not np.array_equal(np.stack(plain.per_image["area_intersect"].to_list()),
                              np.stack(results.per_image["area_intersect"].to_list()))


def test_prediction_depends_on_channel_order(cityscapes, checkpoint):
    """With random weights, swapping R and B must change the prediction: the parity test can catch it."""
    config = MMSegModelConfig(name="m", type="mmseg", config=CONFIG, checkpoint=checkpoint, cfg_options=SMALL)
    data = CityscapesDataset("cs", cityscapes)
    adapter = MMSegAdapter(config, data.info, torch.device("cpu"))
    image = data.load(0).image
    plain = adapter.predict([image], ["x"])[0]
    swapped = adapter.predict([image[..., ::-1].copy()], ["x"])[0]
    assert plain.shape == image.shape[:2]
    assert len(torch.unique(plain)) >= 3
    assert not torch.equal(plain, swapped)


def test_random_weights_are_flagged(tmp_path, cityscapes):
    results = run_segbench(tmp_path, cityscapes, {"cfg_options": SMALL})
    assert bool(results.summary["trained"].iloc[0]) is False
    assert results.summary["published_mIoU"].iloc[0] == pytest.approx(0.6563)


def test_unsafe_checkpoint_is_refused_unless_allowed(tmp_path, cityscapes, checkpoint):
    state = torch.load(checkpoint, weights_only=True)
    state["meta"]["args"] = argparse.Namespace(lr=0.1)  # an object a safe load refuses
    unsafe = tmp_path / "unsafe.pth"
    torch.save(state, unsafe)
    suite = {"name": "mm", "device": "cpu", "num_workers": 0,
             "datasets": [{"name": "cs", "type": "cityscapes", "root": str(cityscapes)}],
             "models": [{"name": "m", "type": "mmseg", "config": CONFIG, "checkpoint": str(unsafe),
                         "cfg_options": SMALL}]}
    outcome = execute(suite, run_dir=tmp_path / "refused")
    assert "allow_unsafe_checkpoint" in outcome.errors["m__cs"]
    assert "non-tensor object (argparse.Namespace)" in outcome.errors["m__cs"]
    assert "\n" not in outcome.errors["m__cs"]  # not torch's paragraphs
    suite["models"][0]["allow_unsafe_checkpoint"] = True
    assert execute(suite, run_dir=tmp_path / "allowed").ok


def runner_checkpoint(path: Path, weights: dict) -> Path:
    """A checkpoint as mmengine's Runner.save_checkpoint writes one: meta, weights, and the message hub's
    state, whose HistoryBuffers (numpy arrays) pickle their statistics methods as getattr(HistoryBuffer, name)."""
    from mmengine.logging import MessageHub

    hub = MessageHub.get_instance("segbench-test-runner-checkpoint")
    for loss in (1.5, 1.2, 0.9):
        hub.update_scalar("train/loss", np.float64(loss))
    hub.update_info("iter", np.int64(3))
    dataset_meta = {"classes": ("road", "sidewalk"), "palette": [[128, 64, 128], [244, 35, 232]]}
    hub.update_info("dataset_meta", dataset_meta)
    meta = {"epoch": 0, "iter": 3, "seed": 0, "experiment_name": "cgnet", "mmengine_version": "0.10.7",
            "dataset_meta": dataset_meta}
    torch.save({"meta": meta, "state_dict": weights, "message_hub": hub.state_dict()}, path)
    return path


def pickled(path: Path) -> bytes:
    with zipfile.ZipFile(path) as archive:
        return archive.read(next(name for name in archive.namelist() if name.endswith("data.pkl")))


def test_training_checkpoint_loads_safely(tmp_path, checkpoint):
    weights = torch.load(checkpoint, weights_only=True)["state_dict"]
    path = runner_checkpoint(tmp_path / "iter_3.pth", weights)
    assert b"c__builtin__\ngetattr\n" in pickled(path)  # what the safe load must allow, narrowly
    loaded = load_checkpoint(path, allow_unsafe=False)
    loss = loaded["message_hub"]["log_scalars"]["train/loss"]
    assert loss.statistics("min") == 0.9 and loss.mean() == pytest.approx(1.2)
    assert loaded["message_hub"]["runtime_info"]["iter"] == 3
    assert all(torch.equal(loaded["state_dict"][key], value) for key, value in weights.items())


class BuiltinsModule:
    """Unpickles as getattr(getattr, "__self__"): the builtins module."""

    def __reduce__(self):
        return getattr, (getattr, "__self__")


class Exec:
    """Unpickles as getattr(<builtins module>, "exec")."""

    def __reduce__(self):
        return getattr, (BuiltinsModule(), "exec")


class RunCode:
    """Unpickles as torch._tensor._rebuild_from_type_v2(exec, Tensor, (code,), {}): torch allows that
    function in a weights_only load, and it calls its first argument."""

    def __init__(self, code: str) -> None:
        self.code = code

    def __reduce__(self):
        return torch._tensor._rebuild_from_type_v2, (Exec(), torch.Tensor, (self.code,), {})


def test_crafted_getattr_checkpoint_cannot_run_code(tmp_path):
    marker = tmp_path / "code_ran"
    path = tmp_path / "crafted.pth"
    torch.save({"state_dict": {}, "meta": RunCode(f"open({str(marker)!r}, 'w').close()")}, path)
    with pytest.raises(UserError) as caught:
        load_checkpoint(path, allow_unsafe=False)
    assert not marker.exists()
    message = str(caught.value)
    assert "\n" not in message and "non-tensor object (getattr)" in message and "allow_unsafe_checkpoint" in message
    with pytest.raises(UserError, match="corrupt"):  # the crafted file is no bluff: loaded unsafely, it runs
        load_checkpoint(path, allow_unsafe=True)
    assert marker.exists()


def test_missing_and_corrupt_checkpoints_fail_the_cell(tmp_path, cityscapes):
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"not a checkpoint")
    for path, message in ((tmp_path / "absent.pth", "not found"), (corrupt, "cannot load")):
        suite = {"name": "mm", "device": "cpu", "num_workers": 0,
                 "datasets": [{"name": "cs", "type": "cityscapes", "root": str(cityscapes)}],
                 "models": [{"name": "m", "type": "mmseg", "config": CONFIG, "checkpoint": str(path)}]}
        outcome = execute(suite, run_dir=tmp_path / path.stem)
        assert message in outcome.errors["m__cs"] and str(path) in outcome.errors["m__cs"]
        assert "\n" not in outcome.errors["m__cs"]


def test_class_count_is_checked_and_class_map_applies(tmp_path, checkpoint):
    root = tmp_path / "mine"
    rng = np.random.default_rng(0)
    from layouts import save_grey, save_rgb
    save_rgb(root / "images" / "a.png", rng.integers(0, 255, (*SIZE, 3)))
    save_grey(root / "labels" / "a.png", rng.integers(0, 2, SIZE))
    dataset = {"name": "mine", "type": "folder", "root": str(root), "num_classes": 2}
    model = {"name": "m", "type": "mmseg", "config": CONFIG, "checkpoint": str(checkpoint), "cfg_options": SMALL}
    suite = {"name": "mm", "device": "cpu", "num_workers": 0, "datasets": [dataset], "models": [model]}
    for class_map, message in ((None, "the model predicts 19 classes but dataset 'mine' has 2; give a class_map"),
                               ([0] * 18, "class_map must list, for each of the model's 19 classes")):
        model["class_map"] = class_map  # refused before any work, from the config: nothing written
        with pytest.raises(UserError, match=re.escape(message)) as refused:
            execute(suite, run_dir=tmp_path / "mismatch")
        assert refused.value.field == "models[0].class_map (m)" and not (tmp_path / "mismatch").exists()
    two = {"name": "m", "type": "mmseg", "config": CONFIG,
           "cfg_options": {**SMALL, "model.decode_head.num_classes": 2}}
    assert execute({**suite, "models": [two]}, run_dir=tmp_path / "two").ok  # the suite's cfg_options count
    model["class_map"] = [0] * 10 + [1] * 9  # road..sky -> 0, person..bicycle -> 1
    results = segbench.load(segbench.run(suite, run_dir=tmp_path / "mapped"))
    assert len(results.per_class) == 2 and np.isfinite(results.summary["aAcc"].iloc[0])


def test_unknown_config_name_is_a_suite_error(tmp_path, cityscapes):
    suite = {"name": "mm", "device": "cpu",
             "datasets": [{"name": "cs", "type": "cityscapes", "root": str(cityscapes)}],
             "models": [{"name": "m", "type": "mmseg", "config": "cgnet_fcn_4xb4-60k_cityscapes-680x68"}]}
    with pytest.raises(UserError, match="did you mean cgnet_fcn_4xb4-60k_cityscapes-680x680"):
        segbench.run(suite, run_dir=tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_missing_mmseg_names_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "mmseg.models", None)
    with pytest.raises(UserError, match="make install"):
        require_mmseg()


def test_model_index_has_published_figures():
    entry = model_index()[CONFIG]
    assert entry["dataset"] == "Cityscapes" and entry["mIoU"] == pytest.approx(65.63)
    assert entry["config"].is_file()
