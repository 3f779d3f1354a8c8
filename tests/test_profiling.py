"""The profiler: sane figures, out-of-memory batches, FLOPs and parameters against hand counts, the run folder."""

import json
import time

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from segbench.api import execute
from segbench.environment import device_name
from segbench.models.predictions import PredictionsAdapter
from segbench.models.torch_adapter import TorchAdapter
from segbench.profiling import Profiler, count_flops, count_params, is_out_of_memory
from segbench.store import load
from segbench.config import IMAGENET_MEAN, IMAGENET_STD, InferenceConfig
from segbench.profiling import EfficiencyConfig

CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: on a busy machine two spinning OpenMP threads run these tiny nets 50x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def adapter_of(net: nn.Module, num_classes: int = 4, **inference) -> TorchAdapter:
    return TorchAdapter("net", net, num_classes, IMAGENET_MEAN, IMAGENET_STD, InferenceConfig(**inference), CPU, {})


def image(height: int = 32, width: int = 48) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)


def profile(net: nn.Module, config: EfficiencyConfig, img: np.ndarray | None = None) -> pd.DataFrame:
    return pd.DataFrame(Profiler(config, CPU).profile(adapter_of(net), image() if img is None else img))


def test_rows_carry_sane_figures_and_their_settings():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 4, 3, padding=1))
    rows = profile(net, EfficiencyConfig(batch_sizes=[1, 2], warmup=1, iters=6), image(48, 48))
    assert len(rows) == 4
    assert set(zip(rows["scope"], rows["batch_size"])) == {(s, b) for s in ("model", "end_to_end") for b in (1, 2)}
    assert (rows["status"] == "ok").all() and (rows["iterations"] == 6).all()
    assert (rows["latency_ms_p50"] > 0).all()
    assert (rows["latency_ms_p50"] <= rows["latency_ms_p90"]).all()
    assert (rows["latency_ms_p90"] <= rows["latency_ms_p99"]).all()
    # images, not batches: throughput over the whole timed loop against batch / mean latency
    expected = rows["batch_size"] * 1000 / rows["latency_ms_mean"]
    assert np.allclose(rows["throughput_images_per_sec"], expected, rtol=0.1)
    assert (rows["peak_memory_rss_mib"] > 0).all() and rows["peak_memory_allocated_mib"].isna().all()
    assert (rows["weights_memory_mib"] == sum(p.numel() * 4 for p in net.parameters()) / 2**20).all()
    row = rows.iloc[0].to_dict()
    assert row["precision"] == "fp32" and (row["input_height"], row["input_width"]) == (48, 48)
    assert row["device"] == "cpu" and row["torch_version"] == torch.__version__
    for setting in ("device_name", "cuda_version", "cudnn_benchmark", "channels_last", "compile", "warmup",
                    "iters", "time_budget_s", "torch_threads"):
        assert setting in row


def test_fixed_input_size_precisions_and_channels_last():
    config = EfficiencyConfig(batch_sizes=[1], warmup=0, iters=2, input_size=(16, 24),
                              precision=["fp32", "bf16"], channels_last=True, scopes=["model"])
    rows = profile(nn.Conv2d(3, 4, 1), config)
    assert list(rows["precision"]) == ["fp32", "bf16"] and (rows["status"] == "ok").all()
    assert (rows["input_height"] == 16).all() and (rows["input_width"] == 24).all()
    assert rows["channels_last"].all()


def test_time_budget_stops_early_after_at_least_one_call():
    class Slow(nn.Module):
        def forward(self, x):
            time.sleep(0.02)
            return x.new_zeros(x.shape[0], 4, *x.shape[2:])

    config = EfficiencyConfig(warmup=0, iters=1000, time_budget_s=0.05, scopes=["model"])
    rows = profile(Slow(), config)
    assert 1 <= rows["iterations"].iloc[0] < 10


class OutOfMemoryAtFour(nn.Module):
    """Raises as the CUDA caching allocator does when a batch of 4 or more does not fit."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)

    def forward(self, x):
        if x.shape[0] >= 4:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return self.conv(x)


def test_a_batch_that_runs_out_of_memory_is_recorded_and_the_run_goes_on():
    rows = profile(OutOfMemoryAtFour(), EfficiencyConfig(batch_sizes=[1, 4, 2], warmup=1, iters=3))
    status = dict(zip(zip(rows["scope"], rows["batch_size"]), rows["status"]))
    assert status == {("model", 1): "ok", ("model", 4): "out_of_memory", ("model", 2): "ok",
                      ("end_to_end", 1): "ok", ("end_to_end", 4): "out_of_memory", ("end_to_end", 2): "ok"}
    oom = rows[rows["status"] == "out_of_memory"]
    assert oom["latency_ms_p50"].isna().all() and oom["note"].str.contains("out of memory").all()


@pytest.mark.parametrize("error, expected", [
    (torch.cuda.OutOfMemoryError("CUDA out of memory"), True),
    (RuntimeError("CUDA error: out of memory"), True),
    (RuntimeError("[enforce fail at alloc_cpu.cpp] DefaultCPUAllocator: can't allocate memory"), True),
    (RuntimeError("boom in forward"), False),
    (ValueError("out of memory"), False),
])
def test_out_of_memory_is_told_apart(error, expected):
    assert is_out_of_memory(error) is expected


def test_conv_flops_equal_the_hand_count():
    conv = nn.Conv2d(3, 8, kernel_size=3, padding=1)
    x = torch.randn(2, 3, 10, 12)
    # FlopCounterMode's convention: 2 FLOPs per multiply-add, bias not counted
    assert count_flops(lambda: conv(x)) == 2 * 3 * 8 * 3 * 3 * 10 * 12 * 2
    strided = nn.Conv2d(4, 6, kernel_size=3, stride=2, groups=2, bias=False)  # 9x11 -> 4x5
    assert count_flops(lambda: strided(torch.randn(1, 4, 9, 11))) == 2 * (4 // 2) * 6 * 3 * 3 * 4 * 5


def test_profile_reports_flops_per_image_and_the_parameter_count():
    conv = nn.Conv2d(3, 4, kernel_size=3, padding=1)
    rows = profile(conv, EfficiencyConfig(batch_sizes=[2], warmup=0, iters=1), image(16, 20))
    assert (rows["params"] == 3 * 4 * 3 * 3 + 4).all()
    assert count_params(conv) == sum(p.numel() for p in conv.parameters())
    assert (rows["gflops_per_image"] == 2 * 3 * 4 * 3 * 3 * 16 * 20 / 1e9).all()


def test_attention_matmuls_are_counted():
    batch, heads, tokens, dim = 2, 3, 16, 8
    q = torch.randn(batch, heads, tokens, dim)
    sdpa = count_flops(lambda: nn.functional.scaled_dot_product_attention(q, q, q))
    assert sdpa == 2 * (2 * batch * heads * tokens * tokens * dim)  # Q K^T and A V
    mha = nn.MultiheadAttention(heads * dim, heads, batch_first=True).eval()
    x = torch.randn(batch, tokens, heads * dim)
    projections = 4 * 2 * batch * tokens * (heads * dim) ** 2  # q, k, v and out
    assert count_flops(lambda: mha(x, x, x, need_weights=False)) == projections + sdpa


def test_slide_window_costs_more_end_to_end_than_one_forward():
    config = EfficiencyConfig(warmup=0, iters=1)
    adapter = adapter_of(nn.Conv2d(3, 4, 1), mode="slide", crop_size=(16, 16), stride=(8, 8))
    rows = pd.DataFrame(Profiler(config, CPU).profile(adapter, image(32, 32))).set_index("scope")
    windows = 3 * 3
    assert rows.loc["end_to_end", "gflops_per_image"] == pytest.approx(
        rows.loc["model", "gflops_per_image"] * windows * 16 * 16 / (32 * 32))


def test_saved_predictions_are_skipped_with_a_reason(tmp_path):
    rows = Profiler(EfficiencyConfig(), CPU).profile(PredictionsAdapter(tmp_path, 3, CPU), image())
    assert {row["status"] for row in rows} == {"skipped"}
    assert all("no network" in row["note"] for row in rows)


def run_suite(tmp_path, nets, efficiency, run="run"):
    datasets = [{"name": name, "type": "synthetic", "num_images": 2, "height": h, "width": w, "seed": seed}
                for name, h, w, seed in (("small", 24, 40, 0), ("same", 24, 40, 1), ("big", 32, 48, 0))]
    suite = {"name": "t", "device": "cpu", "batch_size": 2, "num_workers": 0, "datasets": datasets,
             "models": [{"name": "pw", "type": "python", "factory": "tiny_nets:pointwise",
                         "kwargs": {"num_classes": 6}, "num_classes": 6}],
             "efficiency": efficiency}
    return execute(suite, run_dir=tmp_path / run)


def test_a_suite_with_efficiency_writes_the_tables(tmp_path, nets):
    efficiency = {"batch_sizes": [1, 2], "warmup": 1, "iters": 3}
    outcome = run_suite(tmp_path, nets, efficiency)
    assert outcome.ok
    results = load(outcome.run_dir)
    table = results.efficiency
    # one measurement per (model, input size): "same" has the size of "small" and reuses its rows
    assert len(table) == 2 * 2 * 2  # input sizes x scopes x batch sizes
    assert sorted(set(zip(table["dataset"], table["input_height"], table["input_width"]))) == [
        ("big", 32, 48), ("small", 24, 40)]
    assert (table["status"] == "ok").all() and (table["model"] == "pw").all()
    summary = results.summary.set_index("dataset")
    for column in ("latency_ms_p50", "throughput_images_per_sec", "peak_memory_mib", "model_latency_ms_p50",
                   "gflops_per_image", "params"):
        assert summary[column].notna().all(), column
    assert summary.loc["same", "latency_ms_p50"] == summary.loc["small", "latency_ms_p50"]
    assert (summary["efficiency_batch_size"] == 1).all()
    record = json.loads((outcome.run_dir / "cells" / "pw__same" / "cell.json").read_text())
    assert record["efficiency_measured_in"] == "pw__small"
    assert record["settings"]["efficiency"]["iters"] == 3
    assert not (outcome.run_dir / "cells" / "pw__same" / "efficiency.parquet").exists()


def test_efficiency_settings_are_part_of_resume(tmp_path, nets):
    efficiency = {"batch_sizes": [1], "warmup": 0, "iters": 2, "scopes": ["model"]}
    run_suite(tmp_path, nets, efficiency)
    again = run_suite(tmp_path, nets, efficiency)
    assert set(again.statuses.values()) == {"skipped"}
    assert len(load(again.run_dir).efficiency) == 2
    changed = run_suite(tmp_path, nets, {**efficiency, "iters": 3})
    assert set(changed.statuses.values()) == {"complete"}
    assert (load(changed.run_dir).efficiency["iters"] == 3).all()


def test_efficiency_figures_of_another_device_model_are_measured_again_on_resume(tmp_path, nets):
    efficiency = {"batch_sizes": [1], "warmup": 0, "iters": 2, "scopes": ["model"]}
    first = run_suite(tmp_path, nets, efficiency)
    cell = next((first.run_dir / "cells").glob("*/cell.json"))
    record = json.loads(cell.read_text())
    assert record["summary"]["efficiency_device_name"] == device_name(CPU)
    record["summary"]["efficiency_device_name"] = "NVIDIA H100 80GB HBM3"  # as if measured there
    cell.write_text(json.dumps(record))
    again = run_suite(tmp_path, nets, efficiency)
    assert again.statuses[record["cell_id"]] == "complete"
    assert list(again.statuses.values()).count("skipped") == len(again.statuses) - 1


def test_no_efficiency_section_means_no_profiling(tmp_path, nets):
    outcome = run_suite(tmp_path, nets, None)
    results = load(outcome.run_dir)
    assert results.efficiency.empty and "latency_ms_p50" not in results.summary
    assert not (outcome.run_dir / "efficiency.parquet").exists()


def test_mmseg_model_scope_is_the_segmentor_on_the_preprocessed_batch():
    pytest.importorskip("mmseg.models")
    from segbench.types import DatasetInfo
    from segbench.models.mmseg_adapter import MMSegAdapter
    from segbench.models.mmseg_adapter import MMSegModelConfig

    # cgnet is small; keeping the images at their size (the config resizes to 2048x1024) keeps this quick
    config = MMSegModelConfig(name="cgnet", type="mmseg", config="cgnet_fcn_4xb4-60k_cityscapes-680x680",
                              cfg_options={"test_dataloader.dataset.pipeline.1.scale": (96, 48)})
    adapter = MMSegAdapter(config, DatasetInfo("cs", 19, [str(i) for i in range(19)]), CPU)
    module, (inputs,) = adapter.forward_inputs([image(48, 96)] * 2)
    assert module is adapter.model and inputs.shape == (2, 3, 48, 96)
    with torch.inference_mode():
        assert module(inputs).shape[:2] == (2, 19)  # mode "tensor": the decode head's logits
    rows = pd.DataFrame(Profiler(EfficiencyConfig(warmup=0, iters=1), CPU).profile(adapter, image(48, 96)))
    assert (rows["status"] == "ok").all() and (rows["params"] == count_params(adapter.model)).all()
    assert (rows["gflops_per_image"] > 0).all()


def test_preprocessed_batch_is_channels_last_with_the_normalised_values():
    """oneDNN's CPU convolutions are about 1.5x faster on channels-last input (benchmarks/README.md)."""
    adapter = adapter_of(nn.Conv2d(3, 4, 1))
    images = [image(), image()[::-1].copy()]
    batch = adapter.preprocess(images)
    assert batch.is_contiguous(memory_format=torch.channels_last) and batch.shape == (2, 3, 32, 48)
    mean, std = torch.tensor(IMAGENET_MEAN).view(3, 1, 1), torch.tensor(IMAGENET_STD).view(3, 1, 1)
    expected = (torch.from_numpy(images[1]).permute(2, 0, 1).float() - mean) / std
    torch.testing.assert_close(batch[1], expected, rtol=0, atol=0)
