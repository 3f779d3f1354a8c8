"""Efficiency figures of a model adapter: latency, throughput, peak memory, parameters, FLOPs.

A :class:`Profiler` owns the measurement settings (a suite's ``efficiency``
section and a device) and returns flat rows, one per (scope, precision, batch
size), each carrying those settings, the device name and the torch, CUDA and
cuDNN versions. The unit of each figure is in its name.

Scopes:

- ``model``: ``module(*args)`` from ``adapter.forward_inputs``, the network's
  forward pass on a batch that is already preprocessed and on the device.
- ``end_to_end``: ``adapter.predict`` on uint8 images: preprocessing, sliding
  window and test-time augmentation, resize to the image size, argmax.

Conventions:

- Latency is the time of one call on a batch of ``batch_size`` images, in ms,
  after ``warmup`` untimed calls and one more after the memory counters'
  reset. On CUDA each call is bracketed by CUDA events after a synchronize,
  so calls never overlap; on a CPU by ``time.perf_counter`` (monotonic).
  ``latency_ms_std`` is the sample standard deviation; percentiles
  interpolate linearly (numpy's default).
- Throughput counts images, not batches: batch_size x calls / wall seconds of
  the timed loop.
- Peak memory covers the calls after warm-up (so cudnn.benchmark's search and
  compilation are not in it), the input batch included. CUDA:
  torch.cuda.max_memory_allocated and max_memory_reserved, after emptying the
  cache and resetting the counters. CPU: the process's peak resident set
  (VmHWM), reset through /proc/self/clear_refs, so exact and free; psutil has
  no peak RSS on Linux and would have to poll from a thread. Where the reset
  is refused (not Linux), the figure is ru_maxrss, the process's lifetime
  peak, and the row's note says so.
- ``weights_memory_mib``: the bytes of the parameters and buffers.
- ``gflops_per_image``: FLOPs of one image through the scope, in fp32, counted
  by torch.utils.flop_counter.FlopCounterMode: convolutions and matrix
  products, attention included, 2 FLOPs per multiply-add (a Conv2d is
  2 x Cin/groups x Cout x kh x kw x Hout x Wout per image); bias, norms,
  activations, softmax and interpolation are not counted.
"""

from __future__ import annotations

import contextlib
import gc
import math
import re
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import torch
from PIL import Image
from pydantic import Field
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from segbench.config import Strict
from segbench.environment import cpu_name, device_name
from segbench.models.base import ModelAdapter

MIB = 2**20
AUTOCAST_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}
FIGURES = ("latency_ms_p50", "latency_ms_p90", "latency_ms_p99", "latency_ms_mean", "latency_ms_std",
           "iterations", "throughput_images_per_sec", "peak_memory_allocated_mib", "peak_memory_reserved_mib",
           "peak_memory_rss_mib", "weights_memory_mib", "params", "gflops_per_image")
HEADLINE = ("latency_ms_p50", "latency_ms_p90", "latency_ms_p99", "throughput_images_per_sec",
            "gflops_per_image")


class EfficiencyConfig(Strict):
    """The profiling pass (segbench/profiling.py): what is timed, how, and at which sizes."""

    batch_sizes: list[Annotated[int, Field(ge=1)]] = Field(default_factory=lambda: [1], min_length=1)
    warmup: int = Field(10, ge=0)
    iters: int = Field(50, ge=1)
    time_budget_s: float | None = Field(None, gt=0)
    """When set, a measurement also stops once this many seconds of timed calls are spent (at least one call)."""
    precision: list[Literal["fp32", "fp16", "bf16"]] = Field(default_factory=lambda: ["fp32"], min_length=1)
    """fp16 and bf16 run the model under torch.autocast; the weights stay fp32."""
    channels_last: bool = False
    compile: bool = False
    cudnn_benchmark: bool = False
    input_size: tuple[Annotated[int, Field(ge=8)], Annotated[int, Field(ge=8)]] | None = None
    """[h, w]; by default the size of the dataset's first image."""
    scopes: list[Literal["model", "end_to_end"]] = Field(default_factory=lambda: ["model", "end_to_end"],
                                                         min_length=1)


# ---------------------------------------------------------------- static figures

def count_params(module: nn.Module) -> int:
    """Every parameter of the module, heads unused at inference (e.g. mmseg's auxiliary_head) included."""
    return sum(p.numel() for p in module.parameters())


def weights_mib(module: nn.Module) -> float:
    tensors = [*module.parameters(), *module.buffers()]
    return sum(t.numel() * t.element_size() for t in tensors) / MIB


def _static_figures(network: nn.Module) -> tuple[dict[str, float], str | None]:
    """Parameters and weight memory, and why params and FLOPs are NaN: a network whose weights torch does
    not hold (an ONNX Runtime session) has none that torch can count, nor operators it can see; 0 would be
    a false figure."""
    if not any(True for _ in network.parameters()) and not any(True for _ in network.buffers()):
        why = "the network's weights are not torch's (e.g. ONNX Runtime's): params and FLOPs not counted"
        return {"params": math.nan, "weights_memory_mib": math.nan}, why
    return {"params": count_params(network), "weights_memory_mib": weights_mib(network)}, None


def _attention_flops(query_shape: torch.Size, key_shape: torch.Size, value_shape: torch.Size,
                     *args: Any, out_shape: Any = None, **kwargs: Any) -> int:
    """Q K^T and A V, 2 FLOPs per multiply-add, as FlopCounterMode's own formula for the CUDA kernels."""
    heads = math.prod(query_shape[:-2])
    queries, keys = query_shape[-2], key_shape[-2]
    return 2 * heads * queries * keys * (query_shape[-1] + value_shape[-1])


# FlopCounterMode knows the CUDA attention kernels but not the one CPUs dispatch to.
_EXTRA_FORMULAS = ({torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _attention_flops}
                   if hasattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu") else {})


def count_flops(call: Callable[[], Any]) -> int:
    """FLOPs of one ``call()``, with nn.MultiheadAttention's fused fast path off so its matmuls are seen."""
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with torch.inference_mode(), FlopCounterMode(display=False, custom_mapping=_EXTRA_FORMULAS) as counter:
            call()
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
    return counter.get_total_flops()


# ---------------------------------------------------------------- clocks and memory

def latency_figures(times_ms: list[float]) -> dict[str, float]:
    p50, p90, p99 = np.percentile(times_ms, [50, 90, 99])
    return {"latency_ms_p50": float(p50), "latency_ms_p90": float(p90), "latency_ms_p99": float(p99),
            "latency_ms_mean": float(np.mean(times_ms)),
            "latency_ms_std": float(np.std(times_ms, ddof=1)) if len(times_ms) > 1 else 0.0}


def time_call(call: Callable[[], Any], device: torch.device) -> float:
    """Milliseconds of one call: CUDA events after a synchronize on CUDA, the monotonic clock elsewhere."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        call()
        end.record()
        end.synchronize()
        return start.elapsed_time(end)
    started = time.perf_counter()
    call()
    return (time.perf_counter() - started) * 1000


def _reset_rss_peak() -> bool:
    """Reset the process's VmHWM (Linux 4.0+); False where that is refused."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _rss_peak_mib() -> float:
    try:
        status = Path("/proc/self/status").read_text()
        return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) / 1024
    except (OSError, AttributeError):
        import resource  # not on Windows; there neither branch applies and this raises
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
        return peak / (MIB if sys.platform == "darwin" else 1024)


class PeakMemory:
    """Peak memory between ``reset()`` and ``read()``: the CUDA allocator's, or the process's RSS."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.note: str | None = None

    def reset(self) -> None:
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.empty_cache()  # else reserved memory cached by earlier measurements counts here
            torch.cuda.reset_peak_memory_stats(self.device)
        elif not _reset_rss_peak():
            self.note = "peak_memory_rss_mib is the process's lifetime peak (ru_maxrss): no VmHWM reset here"

    def read(self) -> dict[str, float]:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            return {"peak_memory_allocated_mib": torch.cuda.max_memory_allocated(self.device) / MIB,
                    "peak_memory_reserved_mib": torch.cuda.max_memory_reserved(self.device) / MIB}
        return {"peak_memory_rss_mib": _rss_peak_mib()}


def is_out_of_memory(error: BaseException) -> bool:
    if isinstance(error, torch.cuda.OutOfMemoryError):
        return True
    text = str(error).lower()
    return isinstance(error, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)


def _one_line(error: BaseException) -> str:
    return f"{type(error).__name__}: {(str(error).strip().splitlines() or [''])[0]}"


def _release(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


# ---------------------------------------------------------------- the profiler

def sized_image(image: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    """``image`` (HxWx3 uint8) resized bilinearly to ``size`` [h, w]; unchanged when size is None."""
    if size is None or tuple(size) == image.shape[:2]:
        return image
    return np.asarray(Image.fromarray(image).resize((size[1], size[0]), Image.BILINEAR))


class Profiler:
    """Times an adapter under one set of settings; every row it returns carries them."""

    def __init__(self, config: EfficiencyConfig, device: torch.device) -> None:
        self.config = config
        self.device = torch.device(device)

    def profile(self, adapter: ModelAdapter, image: np.ndarray) -> list[dict[str, Any]]:
        """One row per (precision, scope, batch size), on copies of ``image`` at the configured size.

        The adapter's network is changed in place by channels_last (undone at
        the end) and by compile (not undone: ``nn.Module.compile``).
        """
        image = sized_image(image, self.config.input_size)
        combos = [(scope, precision, batch) for precision in self.config.precision
                  for scope in self.config.scopes for batch in self.config.batch_sizes]
        try:
            network, _ = adapter.forward_inputs([image])
        except NotImplementedError as error:
            return [self._row(image, *combo) | {"status": "skipped", "note": str(error)} for combo in combos]
        static, unseen = _static_figures(network)
        flops = {scope: (math.nan, unseen) if unseen else self._gflops(adapter, scope, image)
                 for scope in self.config.scopes}
        rows = []
        with self._settings_applied(network):
            for scope, precision, batch in combos:
                row = self._row(image, scope, precision, batch) | static
                measured = self._measure(adapter, scope, precision, batch, image)
                notes = [flops[scope][1], measured.pop("note", None)]
                rows.append(row | measured | {"gflops_per_image": flops[scope][0],
                                              "note": "; ".join(filter(None, notes)) or None})
        return rows

    def _gflops(self, adapter: ModelAdapter, scope: str, image: np.ndarray) -> tuple[float, str | None]:
        """GFLOPs of one image through ``scope``, or NaN and why: a model FlopCounterMode cannot run."""
        try:
            return count_flops(self._call(adapter, scope, [image])) / 1e9, None
        except Exception as error:  # noqa: BLE001  (the timings are still worth having)
            return math.nan, f"FLOPs not counted: {_one_line(error)}"

    def _row(self, image: np.ndarray, scope: str, precision: str, batch_size: int) -> dict[str, Any]:
        config = self.config
        return {"scope": scope, "precision": precision, "batch_size": batch_size,
                "input_height": image.shape[0], "input_width": image.shape[1], "status": "ok", "note": None,
                **dict.fromkeys(FIGURES, math.nan),
                "device": str(self.device), "device_name": device_name(self.device),
                "torch_version": torch.__version__, "cuda_version": torch.version.cuda,
                "cudnn_version": torch.backends.cudnn.version() if self.device.type == "cuda" else None,
                "torch_threads": torch.get_num_threads(), "cpu": cpu_name(),
                "cudnn_benchmark": config.cudnn_benchmark, "channels_last": config.channels_last,
                "compile": config.compile, "warmup": config.warmup, "iters": config.iters,
                "time_budget_s": config.time_budget_s}

    def _call(self, adapter: ModelAdapter, scope: str, images: list[np.ndarray]) -> Callable[[], Any]:
        """What one timed call of ``scope`` runs; the model scope's preprocessing happens here, untimed."""
        if scope == "end_to_end":
            ids = [f"profile_{i}" for i in range(len(images))]
            return lambda: adapter.predict(images, ids)
        network, args = adapter.forward_inputs(images)
        if self.config.channels_last:
            args = tuple(a.contiguous(memory_format=torch.channels_last)
                         if isinstance(a, torch.Tensor) and a.dim() == 4 else a for a in args)

        def forward() -> Any:
            with torch.inference_mode():
                return network(*args)
        return forward

    @contextlib.contextmanager
    def _settings_applied(self, network: nn.Module) -> Iterator[None]:
        previous = torch.backends.cudnn.benchmark
        torch.backends.cudnn.benchmark = self.config.cudnn_benchmark
        if self.config.channels_last:
            network.to(memory_format=torch.channels_last)
        if self.config.compile:
            network.compile()
        device = torch.cuda.device(self.device) if self.device.type == "cuda" else contextlib.nullcontext()
        try:
            with device:
                yield
        finally:
            torch.backends.cudnn.benchmark = previous
            if self.config.channels_last:
                network.to(memory_format=torch.contiguous_format)

    def _measure(self, adapter: ModelAdapter, scope: str, precision: str, batch_size: int,
                 image: np.ndarray) -> dict[str, Any]:
        """The figures of one measurement, or its status: a batch that runs out of memory is recorded."""
        try:
            return self._timed(adapter, scope, precision, [image] * batch_size)
        except Exception as error:  # noqa: BLE001  (recorded in the row; the other measurements go on)
            outcome = {"status": "out_of_memory" if is_out_of_memory(error) else "failed",
                       "note": _one_line(error)}
        _release(self.device)  # after the except block, whose traceback held the batch's tensors
        return outcome

    def _timed(self, adapter: ModelAdapter, scope: str, precision: str,
               images: list[np.ndarray]) -> dict[str, Any]:
        call = self._call(adapter, scope, images)
        autocast = (torch.autocast(self.device.type, dtype=AUTOCAST_DTYPES[precision])
                    if precision in AUTOCAST_DTYPES else contextlib.nullcontext())
        with autocast:
            for _ in range(self.config.warmup):
                call()
            memory = PeakMemory(self.device)
            memory.reset()
            call()  # refills the CUDA allocator's cache that reset() emptied: no timed call pays cudaMalloc
            times, seconds = self._timed_loop(call)
            figures = memory.read()
        return {**latency_figures(times), "iterations": len(times), **figures, "note": memory.note,
                "throughput_images_per_sec": len(images) * len(times) / seconds}

    def _timed_loop(self, call: Callable[[], Any]) -> tuple[list[float], float]:
        """``iters`` calls, or fewer once ``time_budget_s`` is spent (at least one); and the loop's seconds."""
        budget = self.config.time_budget_s
        times: list[float] = []
        started = time.perf_counter()
        while len(times) < self.config.iters and (
                budget is None or not times or time.perf_counter() - started < budget):
            times.append(time_call(call, self.device))
        return times, time.perf_counter() - started


# ---------------------------------------------------------------- summary columns

def headline(rows: list[dict[str, Any]], config: EfficiencyConfig) -> dict[str, Any]:
    """The summary's efficiency columns, from the rows at the first configured batch size and precision.

    end_to_end figures are unprefixed, model figures prefixed ``model_``;
    ``peak_memory_mib`` is the CUDA max allocated, or the CPU peak RSS.
    """
    batch, precision = config.batch_sizes[0], config.precision[0]
    summary: dict[str, Any] = {}
    for scope, prefix in (("end_to_end", ""), ("model", "model_")):
        for row in rows:
            if (row["scope"], row["batch_size"], row["precision"]) == (scope, batch, precision):
                summary |= {prefix + name: row[name] for name in HEADLINE}
                summary[prefix + "peak_memory_mib"] = (row["peak_memory_allocated_mib"]
                                                       if row["device"].startswith("cuda")
                                                       else row["peak_memory_rss_mib"])
                summary |= {prefix + "efficiency_status": row["status"], "params": row["params"],
                            "efficiency_device_name": row["device_name"]}
    return summary | {"efficiency_batch_size": batch, "efficiency_precision": precision}
