"""Exported models: an ONNX file run by ONNX Runtime (``onnx``), a TorchScript file or a torch.export
program (``torchscript``).

Both take logits like ``python`` models. The graph is wrapped in a small torch
module (:class:`ExportedNet`) whose forward takes the normalised N x 3 x H x W
float batch and returns the logits on the batch's device, so
:class:`~segbench.models.torch_adapter.TorchAdapter` normalises, runs whole or
sliding-window inference with flip and multi-scale, checks the classes and
takes the argmax exactly as for an eager net; the profiler's ``model`` scope
is that module's forward (for ``onnx``, ONNX Runtime's session run).

ONNX Runtime runs with torch's number of threads, whose idle workers sleep
rather than spin. onnxruntime is imported here only, inside functions, and
only when a suite uses a model of type ``onnx``: ``pip install 'segbench[onnx]'``.
"""

from __future__ import annotations

from collections.abc import Callable
from operator import attrgetter
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from segbench.config import IMAGENET_MEAN, IMAGENET_STD, InferenceConfig, ModelBase, SuitePath
from segbench.errors import UserError
from segbench.fingerprint import file_sha256
from segbench.models.inference import logits_of
from segbench.models.torch_adapter import TorchAdapter
from segbench.registry import register_model
from segbench.types import DatasetInfo

ONNX_HINT = "model type 'onnx' needs ONNX Runtime: pip install 'segbench[onnx]'"
Shape = list[int | None]
"""A graph input's dimensions, None where the graph leaves one dynamic."""
Side = Annotated[int, Field(ge=1)]


class ExportedModelConfig(ModelBase):
    """What both exported sources have: the file, the classes, the normalisation, inference, input size."""

    path: SuitePath
    num_classes: int = Field(ge=1)
    mean: tuple[float, float, float] = tuple(IMAGENET_MEAN)
    """RGB, in pixel units, as python models."""
    std: tuple[float, float, float] = tuple(IMAGENET_STD)
    inference: InferenceConfig = InferenceConfig()
    input_size: tuple[Side, Side] | None = None
    """[h, w] of a graph with a fixed input size: each input is resized to it, the logits back to its size."""

    def input_paths(self, dataset: str) -> list[Path]:
        return [self.path]


class OnnxModelConfig(ExportedModelConfig):
    type: Literal["onnx"]
    providers: list[str] | None = Field(None, min_length=1)
    """ONNX Runtime execution providers, in order; None: CUDA where available and the device is cuda, else CPU."""


class TorchScriptModelConfig(ExportedModelConfig):
    type: Literal["torchscript"]


# ---------------------------------------------------------------- what both share

class ExportedNet(nn.Module):
    """An exported graph as the net TorchAdapter runs.

    With ``input_size``, each input is resized to it (bilinear,
    align_corners=False; ``whole_logits`` resizes the logits back to the
    input's size). A graph whose batch size is fixed to 1 sees one image at a
    time. The graph keeps the mode it was exported in: torch.export programs
    refuse ``eval()``, and the loaders put TorchScript modules in eval mode.
    """

    def __init__(self, graph: nn.Module, input_size: tuple[int, int] | None, one_at_a_time: bool) -> None:
        super().__init__()
        self.graph = graph
        self.input_size = input_size
        self.one_at_a_time = one_at_a_time

    def train(self, mode: bool = True) -> ExportedNet:
        self.training = mode
        return self

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        if self.input_size is not None and tuple(batch.shape[-2:]) != tuple(self.input_size):
            batch = F.interpolate(batch, size=self.input_size, mode="bilinear", align_corners=False)
        if self.one_at_a_time and len(batch) > 1:
            return torch.cat([logits_of(self.graph(image[None])) for image in batch])
        return logits_of(self.graph(batch))


def _shape_text(shape: Shape) -> str:
    return " x ".join("?" if size is None else str(size) for size in shape)


def check_input_shape(shape: Shape | None, cfg: ExportedModelConfig) -> bool:
    """Whether the graph takes one image at a time (batch size fixed to 1); a UserError when its input's
    shape, where the file tells it, cannot take what segbench feeds."""
    if shape is None:
        return False
    if len(shape) != 4 or shape[1] not in (None, 3):
        raise UserError(f"the graph's input has shape {_shape_text(shape)}; segbench feeds N x 3 x H x W",
                        source=str(cfg.path), field="path")
    if shape[0] not in (None, 1):
        raise UserError(f"the graph's batch size is fixed to {shape[0]}: export it with a dynamic batch axis "
                        "or with batch size 1", source=str(cfg.path), field="path")
    fixed = shape[2:]
    if fixed != [None, None] and (cfg.input_size is None or any(
            size not in (None, wanted) for size, wanted in zip(fixed, cfg.input_size))):
        example = f": input_size: [{fixed[0]}, {fixed[1]}]" if None not in fixed else ""
        raise UserError(f"the graph's input has a fixed size ({_shape_text(shape)}); set input_size to it"
                        f"{example}", source=str(cfg.path), field="input_size")
    return shape[0] == 1


def exported_adapter(cfg: ExportedModelConfig, graph: nn.Module, shape: Shape | None, device: torch.device,
                     provenance: dict[str, Any]) -> TorchAdapter:
    """The TorchAdapter of an exported graph; ``provenance`` is the source's own part of it."""
    net = ExportedNet(graph, cfg.input_size, check_input_shape(shape, cfg))
    provenance = {"type": cfg.type, "path": str(cfg.path), "sha256": file_sha256(cfg.path), **provenance,
                  "input_size": None if cfg.input_size is None else list(cfg.input_size), "trained": True}
    return TorchAdapter(cfg.name, net, cfg.num_classes, list(cfg.mean), list(cfg.std), cfg.inference, device,
                        provenance)


def _require_file(path: Path, what: str) -> None:
    if not path.is_file():
        raise UserError(f"{what} file not found", source=str(path), field="path")


def _first_line(error: BaseException) -> str:
    """The error's type and first sentence: torch's loaders add a paragraph of guesses after it."""
    first = (str(error).strip().splitlines() or [""])[0].split(". ")[0]
    return f"{type(error).__name__}: {first}"


# ---------------------------------------------------------------- onnx

def require_onnxruntime() -> Any:
    """The onnxruntime module; a UserError naming the extra to install when it is missing or broken."""
    try:
        import onnxruntime
    except ImportError as error:
        raise UserError(f"{ONNX_HINT} ({type(error).__name__}: {error})") from None
    return onnxruntime


def open_session(path: Path, providers: list[Any], threads: int = 0, optimize: bool = True) -> Any:
    """An ONNX Runtime session of the file; a UserError naming it when it is missing or no model."""
    ort = require_onnxruntime()
    _require_file(path, "ONNX")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads  # 0: ONNX Runtime's default
    # Idle workers sleep instead of spinning: they would take the cores from torch's resize and argmax,
    # and from the metric workers, that follow each run.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if not optimize:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    try:
        return ort.InferenceSession(str(path), options, providers=providers)
    except Exception as error:  # an unreadable file fails in ONNX Runtime's own error types
        raise UserError(f"ONNX Runtime cannot load it as a model ({_first_line(error)})",
                        source=str(path), field="path") from None


def onnx_input_shape(session: Any, path: Path) -> Shape:
    inputs = session.get_inputs()
    if len(inputs) != 1:
        raise UserError(f"the graph takes {len(inputs)} inputs ({', '.join(i.name for i in inputs)}); segbench "
                        "feeds one, the N x 3 x H x W image batch", source=str(path), field="path")
    if inputs[0].type not in ("tensor(float)", "tensor(float16)"):
        raise UserError(f"the graph's input is a {inputs[0].type}; segbench feeds float images",
                        source=str(path), field="path")
    return [size if isinstance(size, int) else None for size in inputs[0].shape]


class OnnxSession(nn.Module):
    """An ONNX Runtime session as a torch module: the float batch in, its first output back as a float
    tensor on the batch's device."""

    def __init__(self, session: Any) -> None:
        super().__init__()
        self.session = session
        self.input_name = session.get_inputs()[0].name
        self.input_dtype = np.float16 if session.get_inputs()[0].type == "tensor(float16)" else np.float32
        self.output_name = session.get_outputs()[0].name

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        feed = {self.input_name: batch.detach().contiguous().cpu().numpy().astype(self.input_dtype, copy=False)}
        (logits,) = self.session.run([self.output_name], feed)
        return torch.from_numpy(logits).float().to(batch.device)


def default_providers(device: torch.device) -> list[str]:
    """CUDA where ONNX Runtime has it and the device is cuda (CPU for what CUDA lacks), else the CPU."""
    if device.type == "cuda" and "CUDAExecutionProvider" in require_onnxruntime().get_available_providers():
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def _with_device(provider: str, device: torch.device) -> Any:
    """CUDA's provider on the device's GPU (ranks of a distributed run each have their own)."""
    if provider == "CUDAExecutionProvider" and device.type == "cuda":
        index = torch.cuda.current_device() if device.index is None else device.index
        return provider, {"device_id": index}
    return provider


def check_onnx_classes(session: Any, cfg: OnnxModelConfig) -> None:
    """The graph's logits have num_classes channels, where the file fixes their number (N x K x H x W)."""
    shape = [size if isinstance(size, int) else None for size in session.get_outputs()[0].shape]
    channels = shape[1] if len(shape) == 4 else None
    if channels is not None and channels != cfg.num_classes:
        raise UserError(f"the graph's output has {channels} channels ({_shape_text(shape)}), but num_classes "
                        f"is {cfg.num_classes}", source=str(cfg.path), field="num_classes")


def check_onnx(cfg: OnnxModelConfig) -> None:
    """Before any work: onnxruntime importable, the file an ONNX model, its input and output fit, the providers
    there."""
    ort = require_onnxruntime()
    session = open_session(cfg.path, ["CPUExecutionProvider"], threads=1, optimize=False)
    check_input_shape(onnx_input_shape(session, cfg.path), cfg)
    check_onnx_classes(session, cfg)
    available = ort.get_available_providers()
    missing = [name for name in cfg.providers or [] if name not in available]
    if missing:
        raise UserError(f"ONNX Runtime {ort.__version__} has no {', '.join(missing)}; available: "
                        f"{', '.join(available)}", field="providers")


@register_model("onnx", config=OnnxModelConfig, check=check_onnx, eval_ref="path",
                classes=attrgetter("num_classes"),
                describe="an ONNX file run by ONNX Runtime (pip install 'segbench[onnx]')")
def build_onnx(cfg: OnnxModelConfig, info: DatasetInfo, device: torch.device) -> TorchAdapter:
    providers = cfg.providers or default_providers(device)
    session = open_session(cfg.path, [_with_device(name, device) for name in providers],
                           threads=torch.get_num_threads())
    unstarted = [name for name in providers if name not in session.get_providers()]
    if unstarted:  # ONNX Runtime falls back to the CPU with a warning when CUDA's libraries fail to load
        raise UserError(f"ONNX Runtime could not start {', '.join(unstarted)} (see its warning above)",
                        field="providers")
    return exported_adapter(cfg, OnnxSession(session), onnx_input_shape(session, cfg.path), device,
                            {"providers": session.get_providers(),
                             "onnxruntime": require_onnxruntime().__version__})


# ---------------------------------------------------------------- torchscript and torch.export

def _program_input_shape(program: Any, path: Path) -> Shape:
    names = program.graph_signature.user_inputs
    if len(names) != 1:
        raise UserError(f"the program takes {len(names)} inputs; segbench feeds one, the N x 3 x H x W image "
                        "batch", source=str(path), field="path")
    node = next(node for node in program.graph.nodes if node.name == names[0])
    return [size if isinstance(size, int) else None for size in node.meta["val"].shape]


def _loaded(load: Callable[[], Any], path: Path, what: str) -> Any:
    try:
        return load()
    except Exception as error:  # a corrupt or foreign file fails in many ways; all mean the same here
        raise UserError(f"cannot load it as {what}: {_first_line(error)}", source=str(path), field="path") from None


def load_torchscript(path: Path, device: torch.device) -> tuple[nn.Module, Shape | None, str]:
    """The network of a torch.export program (``.pt2``) or a torch.jit.save file on ``device``, its input's
    shape where the file tells it, and the file's format."""
    _require_file(path, "model")
    if path.suffix == ".pt2":
        from torch.export.passes import move_to_device_pass
        program = _loaded(lambda: move_to_device_pass(torch.export.load(path), device), path,
                          "a torch.export program (torch.export.load; a torch.jit.save file is not named *.pt2)")
        return program.module(), _program_input_shape(program, path), "torch.export"
    module = _loaded(lambda: torch.jit.load(path, map_location=device), path,
                     "a TorchScript file (torch.jit.load; a torch.export program is named *.pt2)")
    return module.eval(), None, "torch.jit"


def check_torchscript(cfg: TorchScriptModelConfig) -> None:
    """Before any work: the file loads, and its input fits where it says."""
    _, shape, _ = load_torchscript(cfg.path, torch.device("cpu"))
    check_input_shape(shape, cfg)


@register_model("torchscript", config=TorchScriptModelConfig, check=check_torchscript, eval_ref="path",
                classes=attrgetter("num_classes"),
                describe="a torch.jit.save file, or a torch.export program (.pt2)")
def build_torchscript(cfg: TorchScriptModelConfig, info: DatasetInfo, device: torch.device) -> TorchAdapter:
    graph, shape, file_format = load_torchscript(cfg.path, device)
    return exported_adapter(cfg, graph, shape, device, {"format": file_format})
